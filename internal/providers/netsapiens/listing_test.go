package netsapiens_test

// A PBX's listing need not be complete: these tests play, with a
// middleware around nssim's API handler, what nssim has no setting for.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// record runs h and returns what it answered.
func record(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func replay(w http.ResponseWriter, rec *httptest.ResponseRecorder, body []byte) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.Code)
	w.Write(body)
}

// filterListing serves r, a listing of the domain's calls, through api,
// with its rows passed through filter.
func filterListing(w http.ResponseWriter, r *http.Request, api http.Handler, filter func(rows []map[string]any) []map[string]any) {
	rec := record(api, r)
	var rows []map[string]any
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &rows) != nil {
		replay(w, rec, rec.Body.Bytes())
		return
	}
	body, _ := json.Marshal(filter(rows))
	replay(w, rec, body)
}

// withoutSession leaves out the rows of one session.
func withoutSession(rows []map[string]any, session any) []map[string]any {
	kept := rows[:0]
	for _, row := range rows {
		if row["call-session-id"] != session {
			kept = append(kept, row)
		}
	}
	return kept
}

// callerHeldAfter waits, at most within, until the caller's session is
// gone or not held, and reports whether it is still held and what the PBX
// shows of it.
func callerHeldAfter(t *testing.T, h *harness, callerCallID string, within time.Duration) (held bool, s *nssim.SessionTruth) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	find := func() *nssim.SessionTruth {
		for _, s := range h.sim.Truth().Sessions {
			if s.Orig.CallID == callerCallID || s.Term.CallID == callerCallID {
				return &s
			}
		}
		return nil
	}
	isHeld := func(s *nssim.SessionTruth) bool {
		return s != nil && (s.Orig.State == nssim.InfoHeld || s.Term.State == nssim.InfoHeld)
	}
	_ = h.sim.Wait(ctx, func() bool { return !isHeld(find()) })
	s = find()
	return isHeld(s), s
}

// One listing that lacks the caller's row ended the transfer as
// caller_hung_up, and then the caller was never taken off hold, though
// every later listing showed them held (found by review).
//
// The guess: that "Read Active Calls in Domain" lists every live session
// every time. nssim does (only a new CallRequest session is listed late,
// Chaos.ListingDelay); a real PBX need not: the notes say list endpoints
// honour limit/start/sort in many controllers [C-code] with no default
// documented (a default page would leave rows out persistently in a busy
// domain), and the ListingDelay guess itself is that the API reads a table
// that lags the switch, which may also lag a session's update (a hold
// re-INVITE rewriting the row). The knob that would express it:
// Chaos.RowOmitRate (a fraction of listings leave out one live session
// drawn at random), or, for the paging side, Config.ListingPageSize (rows a
// listing returns without ?limit, newest first, with limit/start honoured).
// Here a middleware leaves the caller's row out of exactly one listing:
// the first one that shows the consult answered.
//
// What happened: the adapter's observe reports CallerGone (no row carries
// the caller), consulting fails the transfer as caller_hung_up, and from
// then on compensate was called with callerDone = (reason ==
// caller_hung_up), in recovering and in the sweep alike: the consult was
// hung up, the unhold never sent, and the caller waited on hold with
// nobody, while the outcome said they hung up. Now a reading that shows
// the caller's call up takes the "gone" back: the caller is unheld and
// the reason says the provider was wrong (provider_error).
//
// Both sides of nssim.Config.ReadOtherLeg (the caller's row left out is
// read by id under the agent's user: TestCallerNoLongerListedIsReadByItsID).
func TestCallerRowMissingFromOneListingStillGetsTheCallerBack(t *testing.T) {
	for _, other := range []string{nssim.OtherLegFound, nssim.OtherLegNotFound} {
		t.Run("read other leg "+other, func(t *testing.T) { callerRowMissingFromOneListing(t, other) })
	}
}

func callerRowMissingFromOneListing(t *testing.T, readOtherLeg string) {
	var callerSession atomic.Value
	callerSession.Store("")
	var dropped atomic.Bool
	wrap := func(sim *nssim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || r.URL.Path != "/domains/"+domain+"/calls" || dropped.Load() {
				api.ServeHTTP(w, r)
				return
			}
			filterListing(w, r, api, func(rows []map[string]any) []map[string]any {
				answered := false
				for _, row := range rows {
					if by, _ := row["call-by-call-id"].(string); strings.HasPrefix(by, "transferd-") &&
						row["call-orig-info"] == "active" && row["call-term-info"] == "active" {
						answered = true
					}
				}
				if !answered || dropped.Swap(true) {
					return rows
				}
				return withoutSession(rows, callerSession.Load())
			})
		})
	}
	h := setupWrapped(t, nssim.Config{ReadOtherLeg: readOtherLeg}, wrap, func(c *orchestrator.Config) { c.VerifyTimeout = 300 * time.Millisecond })
	orig := h.placeCall(t)
	callerSession.Store(orig.SessionID)
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
	if !dropped.Load() {
		t.Fatal("the middleware never left the caller's row out")
	}
	held, s := callerHeldAfter(t, h, orig.OrigCallID, 3*time.Second)
	unholds := 0
	for _, r := range h.sim.Requests() {
		if strings.HasSuffix(r.Path, "/unhold") {
			unholds++
		}
	}
	if s != nil && held {
		t.Errorf("the caller is left on hold with nobody (%d unhold sent) after one listing lacked their row: %+v; "+
			"transfer %s, outcome %+v", unholds, s.Call, tr.State, tr.Outcome)
	}
	if s != nil && tr.Outcome != nil && tr.Outcome.Reason == orchestrator.ReasonCallerHungUp {
		t.Errorf("outcome %+v says the caller hung up; the PBX shows their call up: %+v", tr.Outcome, s.Call)
	}
	// The caller's call read by its id shows them up, on both sides: the
	// listing that left them out changes nothing.
	assertCompleted(t, tr)
}

// A domain listing that leaves the caller's call out while the caller is
// held (a PBX that pages the listing by default and cuts a busy domain
// short: list endpoints honour limit and start, and no default page size
// is documented). The caller's call is read by its id instead, and the
// transfer completes with the caller connected to the target. Before, the
// caller was taken for gone at the first such reading: the transfer failed
// as caller_hung_up and the caller stayed held. (After the join the agent
// no longer addresses the caller's call, so it cannot be read that way: a
// caller's call left out then reads as ended, and the outcome says that
// whether the caller reached the target is not known; nothing is sent to
// the caller's call after the join without a reading that shows it.)
//
// Both sides of nssim.Config.ReadOtherLeg: the caller's leg is not the
// agent's, and a PBX that scopes a read by id under the agent's user to
// the agent's own leg answers 404 to the caller's id however the caller
// is. That 404 was taken for the caller gone: the transfer failed as
// caller_hung_up at the first reading that left the caller out, and the
// caller stayed held. Now the agent's own leg is read too, and shows the
// caller.
func TestCallerNoLongerListedIsReadByItsID(t *testing.T) {
	for _, other := range []string{nssim.OtherLegFound, nssim.OtherLegNotFound} {
		t.Run("read other leg "+other, func(t *testing.T) { callerNoLongerListed(t, other) })
	}
}

func callerNoLongerListed(t *testing.T, readOtherLeg string) {
	var callerSess atomic.Value
	callerSess.Store("")
	var held atomic.Bool
	wrap := func(sim *nssim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/hold"):
				held.Store(true)
			case r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/transfer"):
				held.Store(false)
			}
			if r.Method != http.MethodGet || r.URL.Path != "/domains/"+domain+"/calls" || !held.Load() {
				api.ServeHTTP(w, r)
				return
			}
			filterListing(w, r, api, func(rows []map[string]any) []map[string]any {
				return withoutSession(rows, callerSess.Load())
			})
		})
	}
	h := setupWrapped(t, nssim.Config{ReadOtherLeg: readOtherLeg}, wrap)
	orig := h.placeCall(t)
	callerSess.Store(orig.SessionID)
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
	if tr.Outcome != nil && tr.Outcome.Reason == orchestrator.ReasonCallerHungUp {
		s, _, up := callerSession(h.sim, orig.OrigCallID)
		t.Fatalf("outcome %+v: the caller taken for gone; their call is up %v: %+v", tr.Outcome, up, s)
	}
	assertCompleted(t, tr)
	assertJoined(t, h, orig, "1010")
	reads := 0
	for _, r := range h.sim.Requests() {
		if r.Operation == nssim.OpRead {
			reads++
		}
	}
	if reads == 0 {
		t.Error("the caller's call was never read by its id")
	}
}

// The same listing that leaves the caller's call out, and a read of that
// call by its id that fails too: the caller is unknown, not gone. The
// transfer gives up at its deadline and gives the caller back blind
// (compensations need no reading), ends unverified, and once the caller's
// call can be read again the sweeper verifies the caller back. Never
// caller_hung_up, never a caller left held.
func TestCallerNeitherListedNorReadableIsUnknown(t *testing.T) {
	var callerSession atomic.Value
	callerSession.Store("")
	var hiding atomic.Bool
	wrap := func(sim *nssim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/hold") {
				hiding.Store(true)
			}
			switch {
			case !hiding.Load() || r.Method != http.MethodGet:
				api.ServeHTTP(w, r)
			case r.URL.Path != "/domains/"+domain+"/calls":
				http.Error(w, `{"code":503,"message":"Service Unavailable"}`, http.StatusServiceUnavailable)
			default:
				filterListing(w, r, api, func(rows []map[string]any) []map[string]any {
					return withoutSession(rows, callerSession.Load())
				})
			}
		})
	}
	h := setupWrapped(t, nssim.Config{}, wrap, func(c *orchestrator.Config) {
		c.VerifyTimeout, c.TombstoneTTL = 300*time.Millisecond, time.Second
	})
	orig := h.placeCall(t)
	callerSession.Store(orig.SessionID)
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, time.Second).ID)
	if tr.Outcome.Reason == orchestrator.ReasonCallerHungUp || tr.Outcome.Verified || tr.Cleanup == nil {
		t.Fatalf("state %s outcome %+v cleanup %+v: want an unverified outcome with an obligation, not the caller gone",
			tr.State, tr.Outcome, tr.Cleanup)
	}
	hiding.Store(false)
	got := h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Cleanup == nil })
	if !got.Outcome.Verified || !got.Outcome.CallerRestored {
		t.Errorf("outcome %+v once the caller's call can be read: want verified, caller restored", got.Outcome)
	}
	assertRestored(t, h, orig)
}

// A listing that leaves a consult call out once, while the agent talks
// to the target (a row being rewritten, a page cut short: what
// TestCallerRowMissingFromOneListingStillGetsTheCallerBack plays for the
// caller's row). The engine takes a consult seen and then not listed for
// the target gone: before the consult was read by its call-id, the
// transfer failed as target_hung_up and the consult the agent was talking
// on was hung up (found by review, fiftieth pass). Now the consult is
// read by our call-id, found up, and the agent completes the transfer.
//
// The consult's call-id is the agent's own leg (a CallRequest of the
// agent's user): read under the agent's user, it is found on both sides of
// nssim.Config.ReadOtherLeg.
func TestConsultMissingFromOneListingIsReadByItsID(t *testing.T) {
	for _, other := range []string{nssim.OtherLegFound, nssim.OtherLegNotFound} {
		t.Run("read other leg "+other, func(t *testing.T) {
			consultLeftOutOfOneListing(t, nssim.Config{ReadOtherLeg: other}, func(*harness) {}, func(*harness) {})
		})
	}
}

// consultLeftOutOfOneListing plays an answered consult left out of one
// listing of the domain's calls, on a simulator made with cfg: before runs before that listing, judged
// once three listings have followed it (the engine has judged the
// absence); then the agent completes the transfer, which must join the
// caller to the target.
func consultLeftOutOfOneListing(t *testing.T, cfg nssim.Config, before, judged func(*harness)) {
	t.Helper()
	var dropped atomic.Bool
	var listings atomic.Int32 // listings of the domain begun
	var from atomic.Int32     // the first listing that may leave the consult out; 0: none
	var after atomic.Int32    // listings served since the one that left the consult out
	wrap := func(sim *nssim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || r.URL.Path != "/domains/"+domain+"/calls" {
				api.ServeHTTP(w, r)
				return
			}
			n := listings.Add(1)
			if dropped.Load() {
				defer after.Add(1)
			}
			if f := from.Load(); f == 0 || n < f || dropped.Load() {
				api.ServeHTTP(w, r)
				return
			}
			filterListing(w, r, api, func(rows []map[string]any) []map[string]any {
				kept := rows[:0]
				for _, row := range rows {
					if by, _ := row["call-by-call-id"].(string); !strings.HasPrefix(by, "transferd-") {
						kept = append(kept, row)
					}
				}
				if len(kept) < len(rows) {
					dropped.Store(true)
				}
				return kept
			})
		})
	}
	h := setupWrapped(t, cfg, wrap)
	orig := h.placeCall(t)
	tr := h.start(t, orchestrator.CompletionManual, time.Minute)
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	before(h)
	// The watcher reads for the records as last reconciled, taken before
	// each reading: the next listing may still be made for a record that
	// had not seen the consult (the engine then holds the absence for
	// unknown, and nothing is read by id). The one after it is made for a
	// record that has. Leaving the next one out made
	// TestConsultReadWithoutTheCallIsNotGone fail in CI (the read it checks
	// for is made only for a record that has seen the consult).
	from.Store(listings.Load() + 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Readings after the one without the consult: the engine has judged it.
	if err := h.sim.Wait(ctx, func() bool { return after.Load() >= 3 }); err != nil {
		t.Fatal(err)
	}
	judged(h)
	if _, err := h.eng.Complete(context.Background(), tr.ID); err != nil {
		x, _ := h.eng.Get(context.Background(), tr.ID)
		t.Fatalf("complete: %v; transfer %s outcome %+v", err, x.State, x.Outcome)
	}
	tr = h.end(t, tr.ID)
	assertCompleted(t, tr)
	assertJoined(t, h, orig, "1010")
}
