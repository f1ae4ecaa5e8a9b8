package netsapiens_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
	"github.com/transferd/transferd/internal/store/memory"
)

// placeOthers places n calls of other users before the agent's, so that
// the agent's call, and the consult after it, come on a later page. It
// returns a func that hangs them up (before assertJoined, which wants the
// caller's call alone up).
func placeOthers(t *testing.T, sim *nssim.Sim, n int) (hangup func()) {
	t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		ac, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: fmt.Sprintf("20%02d", i),
			From: fmt.Sprintf("155555500%02d", i), To: "11111111111"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ac.SessionID)
	}
	return func() {
		for _, id := range ids {
			if err := sim.Hangup(id, "orig"); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// listings counts the listings of the domain nssim answered, and how many
// of them named a start.
func listings(sim *nssim.Sim) (n, paged int) {
	for _, r := range sim.Requests() {
		if r.Operation == nssim.OpList {
			n++
			if strings.Contains(r.Query, "start=") {
				paged++
			}
		}
	}
	return n, paged
}

// A PBX that pages its listings: the agent's call, its caller and the
// consult are all on the third page of two calls. Read on its first page
// only, the agent's call was not listed, and the transfer ended
// call_not_found; read on, it completes.
//
// A PBX that keeps a page size of its own, longer than the limit asked
// for, and honours start is read on alike.
func TestAListingIsReadPastItsFirstPage(t *testing.T) {
	for name, cfg := range map[string]nssim.Config{
		"limit and start honoured":         {ListPageSize: 2},
		"start honoured, pages of its own": {ListPageSize: 3, ListParams: nssim.ListParamsStartOnly},
	} {
		t.Run(name, func(t *testing.T) {
			sim, srv := newSimServer(t, cfg, nil)
			store := orchestratortest.NewSaved(memory.New())
			h := newHarnessWith(t, sim, srv, store, store, "", netsapiens.Config{ListLimit: 2})
			others := placeOthers(t, sim, 4)
			orig := h.placeCall(t)
			tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
			assertCompleted(t, tr)
			others()
			assertJoined(t, h, orig, "1010")
			if _, paged := listings(sim); paged == 0 {
				t.Error("no listing read on past its first page")
			}
		})
	}
}

// A PBX that ignores limit and start and answers every call each time
// (the other side of the guess): a listing longer than the limit is read
// twice, the second answer brings nothing new, and the domain's count
// says the listing was whole. The transfer completes; the listing does
// not go on for ever.
func TestAListingOfAPBXThatDoesNotPageIsWhole(t *testing.T) {
	sim, srv := newSimServer(t, nssim.Config{ListParams: nssim.ListParamsIgnored}, nil)
	store := orchestratortest.NewSaved(memory.New())
	h := newHarnessWith(t, sim, srv, store, store, "", netsapiens.Config{ListLimit: 2})
	others := placeOthers(t, sim, 4)
	orig := h.placeCall(t)
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
	assertCompleted(t, tr)
	others()
	assertJoined(t, h, orig, "1010")
	// A call that starts between two pages (the consult) makes the second
	// bring something new, and a third is read; the page answered again
	// is read once more after the count: at most three more, then.
	n, paged := listings(sim)
	if first := n - paged; paged < first || paged > 3*first {
		t.Errorf("%d listings, %d of them naming a start: want each first page followed by one to three more", n, paged)
	}
	counts := 0
	for _, r := range sim.Requests() {
		if r.Operation == nssim.OpCount {
			counts++
		}
	}
	if counts == 0 {
		t.Error("the listings were taken for whole without the domain's count")
	}
}

// A PBX that pages and ignores start answers its first page again and
// again: what the pages not read hold cannot be known. The adapter stops
// at the first page answered again, and the count shows calls it did not
// list: the agent's call not shown is unknown (provider unavailable), not
// call_not_found; the caller's and the consult's rows not shown are
// unknown readings, not gone (or rows read by their ids). A listing cut
// at ListPages pages is unknown alike. (Since the sixty-fourth pass, a
// PBX that ignores start has the agent's calls read from the agent's own
// listing: the locate finds the call there, and the join the consult:
// see TestAPBXThatIgnoresStartIsReadByTheAgentsOwnListing.)
func TestACallPastTheListingReadIsUnknown(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sim     nssim.Config
		nc      netsapiens.Config
		byAgent bool // the agent's own listing is read whole
	}{
		{"start ignored", nssim.Config{ListPageSize: 2, ListParams: nssim.ListParamsIgnored}, netsapiens.Config{ListLimit: 2}, true},
		{"pages left unread", nssim.Config{ListPageSize: 2}, netsapiens.Config{ListLimit: 2, ListPages: 2}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, srv := newSimServer(t, tc.sim, nil)
			placeOthers(t, sim, 4)
			orig, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"})
			if err != nil {
				t.Fatal(err)
			}
			nc := tc.nc
			nc.BaseURL, nc.APIKey, nc.Attempts = srv.URL+basePath, apiKey, 1
			c, err := netsapiens.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			const trID = "tr_01JAPAGENOTREADXXXXXXXXXX0"
			located := &orchestrator.Transfer{ID: trID, Request: orchestrator.Request{Provider: netsapiens.Name,
				Call: orchestrator.CallRef{Domain: domain, User: "1000"}, Target: "1010"}}
			before, _ := listings(sim)
			_, err = c.Locate(context.Background(), located)
			if tc.byAgent {
				if err != nil {
					t.Fatalf("locate: %v, want the call found in the agent's own listing", err)
				}
			} else if orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
				t.Fatalf("locate: %v (kind %v), want an unknown reading (provider unavailable), not call_not_found",
					err, orchestrator.KindOf(err))
			}
			if n, _ := listings(sim); n-before > 3 && !tc.byAgent {
				t.Fatalf("%d listings for one locate", n-before)
			}

			tr := transferOf(trID, orig)
			dialConsult(t, sim, c, tr)
			// Dialled and joined long ago (a join sent: the caller is not
			// read one by one).
			tr.Sent.Dial = time.Unix(1_700_000_000, 0)
			tr.Sent.Join = tr.Sent.Dial
			v, err := c.Read(context.Background(), "k", []*orchestrator.Transfer{tr})
			if err != nil {
				t.Fatal(err)
			}
			// The caller's call and the consult are read by their ids,
			// which show them: a reading of them, or unknown.
			if obs, err := v.Observe(tr); orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable &&
				(err != nil || obs.Caller == orchestrator.CallerGone || obs.Consult == orchestrator.ConsultAbsent) {
				t.Fatalf("observation %+v, %v: want an unknown reading, not the caller or the consult gone", obs, err)
			}

			// The join looks the consult's session up in the listing: not
			// shown there is unknown, and nothing is sent. (The agent's own
			// listing, read whole, shows it.)
			if err := c.Complete(context.Background(), transferOf(trID, orig)); tc.byAgent != (err == nil) ||
				(!tc.byAgent && orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable) {
				t.Fatalf("join: %v, want an unknown reading unless the agent's own listing shows the consult: %v", err, tc.byAgent)
			}
			for _, r := range sim.Requests() {
				if r.Operation == nssim.OpTransfer && tc.byAgent {
					continue
				}
				if r.Operation == nssim.OpDisconnect || r.Operation == nssim.OpTransfer || r.Operation == nssim.OpReject {
					t.Errorf("%s %s sent on a listing cut short", r.Method, r.Path)
				}
			}

			// After a join, the consult is hung up only once no session with
			// our call-id can carry the caller: on a listing cut short, one
			// on a page not read might, and the hang-up was unknown for
			// good. Since the sixty-fifth pass the caller's own call, read
			// by its id, shows the session the caller is in: with the
			// target (the join taken, the consult's session ended: nothing
			// to disconnect) or with the agent (the join not sent: the
			// consult is disconnected). The caller's call stays up either
			// way. (Where no read shows the caller, it is still unknown:
			// TestTheHangupAfterAJoinOnACutListingReadsTheCallersCall.)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := sim.WaitApplied(ctx); err != nil {
				t.Fatal(err)
			}
			if err := c.HangupConsult(ctx, tr); err != nil {
				t.Fatalf("hang-up after a join: %v, want it done", err)
			}
			if err := sim.WaitApplied(ctx); err != nil {
				t.Fatal(err)
			}
			callerUp, consultUp := false, false
			for _, ss := range sim.Truth().Sessions {
				callerUp = callerUp || ss.Orig.CallID == orig.OrigCallID || ss.Term.CallID == orig.OrigCallID
				consultUp = consultUp || ss.ByCallID == netsapiens.ConsultCallID(trID)
			}
			if !callerUp || consultUp {
				t.Errorf("after the hang-up the caller's call is up %v, the consult %v: want the caller's call up, the consult ended", callerUp, consultUp)
			}
		})
	}
}

// A PBX that pages by a size of its own below the limit transferd asks
// for (a misconfigured TRANSFERD_NETSAPIENS_LIST_LIMIT): its first page is
// shorter than asked, the end of a listing as far as a client can tell,
// and the agent's call is on a later page. Before, the transfer failed
// call_not_found, of a call that was up all along. The domain's count,
// read once the locate misses, shows more calls than the page; read on,
// a PBX that ignores start answers its first page again, and a warning
// says so. Since the sixty-fourth pass the agent's own listing is read
// then, and shows the call (TestAPBXThatIgnoresStartIsReadByTheAgentsOwnListing);
// where it shows none, the call is unknown (provider_unavailable, with
// the caller untouched), not call_not_found: the domain could not be
// read whole, and that a user's listing shows all of the user's calls is
// inferred. (One that honours start is read on: see
// TestAPageSizeOfThePBXsOwnIsLearned.) The other side: a call that is not
// there, in a domain whose one short page is whole (the count agrees), is
// still call_not_found.
func TestAShortPageWhileTheDomainCountsMoreIsUnknown(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sim     nssim.Config
		agent   bool
		reason  orchestrator.Reason
		warning string
	}{
		{"pages of its own below the limit, start ignored", nssim.Config{ListPageSize: 3, ListParams: nssim.ListParamsIgnored}, false,
			orchestrator.ReasonProviderUnavailable, "ignores start"},
		{"one short page, whole", nssim.Config{}, false, orchestrator.ReasonCallNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, srv := newSimServer(t, tc.sim, nil)
			store := orchestratortest.NewSaved(memory.New())
			h := newHarnessWith(t, sim, srv, store, store, "", netsapiens.Config{}, func(c *orchestrator.Config) {
				c.StepTimeout = 500 * time.Millisecond
			})
			placeOthers(t, sim, 4)
			if tc.agent {
				h.placeCall(t) // after the others: on the second page
			}
			tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
			if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != tc.reason || !tr.Outcome.CallerRestored {
				t.Fatalf("state %s outcome %+v, want failed %s with the caller untouched", tr.State, tr.Outcome, tc.reason)
			}
			counts := 0
			for _, r := range sim.Requests() {
				if r.Method != http.MethodGet {
					t.Errorf("a transfer whose call was not found sent %s %s", r.Method, r.Path)
				}
				if r.Operation == nssim.OpCount {
					counts++
				}
			}
			if counts == 0 {
				t.Error("the domain's count was not read")
			}
			warned := strings.Contains(h.logs.String(), "TRANSFERD_NETSAPIENS_LIST_LIMIT") || strings.Contains(h.logs.String(), "ignores start")
			if want := tc.warning != ""; warned != want || (want && !strings.Contains(h.logs.String(), tc.warning)) {
				t.Errorf("a warning about the paging logged: %v, want %q", warned, tc.warning)
			}
		})
	}
}

// The count refused (a PBX without it, a key not allowed it: 404, 403)
// tells nothing, and the short page stands for the whole listing as
// before: call_not_found, not unknown for ever. Unavailable (503) is
// unknown.
func TestAShortPageWhoseCountIsRefusedStands(t *testing.T) {
	for _, tc := range []struct {
		status int
		reason orchestrator.Reason
	}{
		{http.StatusNotFound, orchestrator.ReasonCallNotFound},
		{http.StatusForbidden, orchestrator.ReasonCallNotFound},
		{http.StatusServiceUnavailable, orchestrator.ReasonProviderUnavailable},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			wrap := func(_ *nssim.Sim, api http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if strings.HasSuffix(r.URL.Path, "/calls/count") {
						writeError(w, tc.status, http.StatusText(tc.status))
						return
					}
					api.ServeHTTP(w, r)
				})
			}
			sim, srv := newSimServer(t, nssim.Config{}, wrap)
			store := orchestratortest.NewSaved(memory.New())
			h := newHarnessWith(t, sim, srv, store, store, "", netsapiens.Config{}, func(c *orchestrator.Config) {
				c.StepTimeout = 500 * time.Millisecond
			})
			placeOthers(t, sim, 4)
			tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
			if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != tc.reason {
				t.Fatalf("state %s outcome %+v, want failed %s", tr.State, tr.Outcome, tc.reason)
			}
		})
	}
}
