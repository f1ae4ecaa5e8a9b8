package netsapiens_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// hiddenIDs is a set of ids (call-ids, session ids) whose rows a domain
// listing leaves out.
type hiddenIDs struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (h *hiddenIDs) set(ids ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ids = map[string]bool{}
	for _, id := range ids {
		h.ids[id] = true
	}
}

func (h *hiddenIDs) hides(row map[string]any) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, v := range row {
		if s, ok := v.(string); ok && h.ids[s] {
			return true
		}
	}
	return false
}

// hidingRows is a middleware that leaves out of the domain's listing the
// rows that carry an id of hidden, and serves everything else as is.
func hidingRows(hidden *hiddenIDs) func(*nssim.Sim, http.Handler) http.Handler {
	return func(_ *nssim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || r.URL.Path != "/domains/"+domain+"/calls" {
				api.ServeHTTP(w, r)
				return
			}
			filterListing(w, r, api, func(rows []map[string]any) []map[string]any {
				kept := rows[:0]
				for _, row := range rows {
					if !hidden.hides(row) {
						kept = append(kept, row)
					}
				}
				return kept
			})
		})
	}
}

// readBody is what nssim answers to a read of call id by user.
func readBody(t *testing.T, base, user, id string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+basePath+"/domains/"+domain+"/users/"+user+"/calls/"+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("reading call %s: %d %s %v", id, resp.StatusCode, b, err)
	}
	return string(b)
}

func reads(sim *nssim.Sim) int {
	n := 0
	for _, r := range sim.Requests() {
		if r.Operation == nssim.OpRead {
			n++
		}
	}
	return n
}

func ptr(s string) *string { return &s }

// transferOf is a record of transfer id of orig, the caller's call on
// user 1000, to 1010, located.
func transferOf(id string, orig nssim.ActiveCall) *orchestrator.Transfer {
	tr := &orchestrator.Transfer{ID: id, Request: orchestrator.Request{Provider: netsapiens.Name,
		Call: orchestrator.CallRef{Domain: domain, User: "1000"}, Target: "1010"}}
	tr.Legs.Caller = orchestrator.LegRef{CallID: orig.OrigCallID, SessionID: orig.SessionID, Server: orig.CoreServer}
	tr.Legs.Agent = orchestrator.LegRef{CallID: orig.TermCallID}
	return tr
}

// dialConsult dials tr's consult through c and waits until the simulator
// has applied it.
func dialConsult(t *testing.T, sim *nssim.Sim, c *netsapiens.Client, tr *orchestrator.Transfer) {
	t.Helper()
	if _, err := c.Dial(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sim.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

// A call read by its id (the caller's, and a consult seen before, that a
// listing left out) whose read answers 200 without the call asked for —
// an empty object, an empty list, null, no body, the API's success body,
// another call's row, alone or in a list — is an unknown reading, as a
// 5xx is: never the call gone. Before, any 200 that did not carry the id
// was taken for a 404: the caller (or the target) had hung up, and the
// call was never read again. A 404 is still the call gone, not read
// again (the caller's, once the agent's own leg, read next, shows a call
// without the caller or a 404 too: the caller's leg may be unreadable
// under the agent's user, nssim.Config.ReadOtherLeg); the call's own
// row, as the spec's single object or in a list, shows it.
func TestReadByIDWithoutTheCallIsUnknown(t *testing.T) {
	const trID = "tr_01JREADBYIDWITHOUTTHECALL0"
	type want int
	const (
		unknown want = iota
		shown
		gone
	)
	for _, consult := range []bool{false, true} {
		var hidden hiddenIDs
		sim, srv := newSimServer(t, nssim.Config{}, hidingRows(&hidden))
		orig, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"})
		if err != nil {
			t.Fatal(err)
		}
		other, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1020", From: "15555555556", To: "11111111111"})
		if err != nil {
			t.Fatal(err)
		}
		transfer := func() *orchestrator.Transfer { return transferOf(trID, orig) }
		id := orig.OrigCallID
		if consult {
			c, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + basePath, APIKey: apiKey})
			if err != nil {
				t.Fatal(err)
			}
			dialConsult(t, sim, c, transfer())
			id = netsapiens.ConsultCallID(trID)
		}
		hidden.set(id)
		own, another := readBody(t, srv.URL, "1000", id), readBody(t, srv.URL, "1020", other.OrigCallID)
		// The agent's leg in a call without the caller: the caller's row
		// with the caller's ids replaced.
		agentAlone := strings.NewReplacer(orig.OrigCallID, "another-leg", orig.SessionID, "another-session").Replace(own)
		notFound := &nssim.Fault{Status: 404, Message: "Call not found"}

		type readCase struct {
			name  string
			fault *nssim.Fault // on the read; nil: nssim answers it
			want  want
			// then is on the read of the agent's own leg that follows a
			// caller's read answered 404; nil: nssim answers it.
			then *nssim.Fault
		}
		cases := []readCase{
			{"an empty object", &nssim.Fault{Status: 200, Body: ptr(`{}`)}, unknown, nil},
			{"an empty list", &nssim.Fault{Status: 200, Body: ptr(`[]`)}, unknown, nil},
			{"null", &nssim.Fault{Status: 200, Body: ptr(`null`)}, unknown, nil},
			{"no body", &nssim.Fault{Status: 200, Body: ptr(``)}, unknown, nil},
			{"the success body", &nssim.Fault{Status: 200}, unknown, nil},
			{"another call's row", &nssim.Fault{Status: 200, Body: ptr(another)}, unknown, nil},
			{"another call's row in a list", &nssim.Fault{Status: 200, Body: ptr(`[` + another + `]`)}, unknown, nil},
			{"a string", &nssim.Fault{Status: 200, Body: ptr(`"ok"`)}, unknown, nil},
			{"a 503", &nssim.Fault{Status: 503}, unknown, nil},
			{"the call's row", nil, shown, nil},
			{"the call's row in a list", &nssim.Fault{Status: 200, Body: ptr(`[` + own + `]`)}, shown, nil},
			{"the call's row among others", &nssim.Fault{Status: 200, Body: ptr(`[` + another + `,` + own + `]`)}, shown, nil},
		}
		if consult {
			cases = append(cases, readCase{"a 404", notFound, gone, nil})
		} else {
			// A 404 of the caller's leg under the agent's user may be a
			// PBX that reads only the user's own leg there
			// (nssim.Config.ReadOtherLeg): the agent's own leg is read,
			// and says.
			cases = append(cases,
				readCase{"a 404, the agent's call showing the caller", notFound, shown, nil},
				readCase{"a 404, the agent's call a 404 too", notFound, gone, notFound},
				readCase{"a 404, the agent's call without the caller", notFound, gone, &nssim.Fault{Status: 200, Body: ptr(agentAlone)}},
				readCase{"a 404, the agent's call read 503", notFound, unknown, &nssim.Fault{Status: 503}},
				readCase{"a 404, the agent's call read as an empty object", notFound, unknown, &nssim.Fault{Status: 200, Body: ptr(`{}`)}},
				readCase{"a 404, the agent's call read as another call's row", notFound, unknown, &nssim.Fault{Status: 200, Body: ptr(another)}},
			)
		}
		for _, tc := range cases {
			name := "caller/"
			if consult {
				name = "consult/"
			}
			t.Run(name+tc.name, func(t *testing.T) {
				// A client of its own: one that read a call gone does not
				// read it again.
				c, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + basePath, APIKey: apiKey,
					Attempts: 1, RetryBase: time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				tr := transfer()
				tr.Seen.Consult = consult
				for _, f := range []*nssim.Fault{tc.fault, tc.then} { // in the order of the reads
					if f != nil {
						f := *f
						f.Operation, f.Count = nssim.OpRead, 1
						sim.InjectFault(f)
					}
				}
				wantReads := 1
				if !consult && tc.fault == notFound {
					wantReads = 2 // the agent's own leg too
				}
				t.Cleanup(sim.ClearFaults)
				before := reads(sim)
				v, err := c.Read(context.Background(), "k", []*orchestrator.Transfer{tr})
				if err != nil {
					t.Fatal(err)
				}
				if n := reads(sim) - before; n != wantReads {
					t.Fatalf("%d reads by id, want %d", n, wantReads)
				}
				obs, err := v.Observe(tr)
				switch tc.want {
				case unknown:
					if orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
						t.Fatalf("observation %+v, %v: want an unknown reading (provider unavailable), not the call gone", obs, err)
					}
				case shown:
					switch {
					case err != nil:
						t.Fatalf("observation: %v", err)
					case !consult && obs.Caller != orchestrator.CallerConnected:
						t.Fatalf("caller %v, want connected: the read shows the call", obs.Caller)
					case consult && obs.Consult != orchestrator.ConsultAnswered:
						t.Fatalf("consult %v, want answered: the read shows the call", obs.Consult)
					}
				case gone:
					switch {
					case err != nil:
						t.Fatalf("observation: %v", err)
					case !consult && obs.Caller != orchestrator.CallerGone:
						t.Fatalf("caller %v, want gone after a 404", obs.Caller)
					case consult && obs.Consult != orchestrator.ConsultAbsent:
						t.Fatalf("consult %v, want absent after a 404", obs.Consult)
					}
				}

				// The next reading reads the call again, unless a 404
				// said it ended.
				before = reads(sim)
				if _, err := c.Read(context.Background(), "k", []*orchestrator.Transfer{tr}); err != nil {
					t.Fatal(err)
				}
				again := reads(sim) - before
				if tc.want == gone && again != 0 {
					t.Errorf("a call read 404 was read again")
				}
				if tc.want != gone && again != 1 {
					t.Errorf("the next reading read the call %d times, want once: it was not known to have ended", again)
				}
			})
		}
	}
}

// The engine, against nssim: the listing leaves the caller's call out
// once the agent holds it, and every read of that call by its id answers
// 200 without it ({}, or [], which was unknown already, being no object:
// nssim's fault with a body). The caller is
// unknown, not gone: the transfer gives up at its deadline, gives the
// caller back blind, ends unverified with an obligation, and once the
// call can be read again the sweeper verifies the caller back. Before,
// such a read was taken for a 404: the transfer failed caller_hung_up,
// verified, and the caller stayed held.
func TestCallerReadWithoutTheCallIsNotGone(t *testing.T) {
	for _, body := range []string{`{}`, `[]`} {
		t.Run(body, func(t *testing.T) {
			var hidden hiddenIDs
			var hiding atomic.Bool
			wrap := func(sim *nssim.Sim, api http.Handler) http.Handler {
				hide := hidingRows(&hidden)(sim, api)
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/hold") && !hiding.Swap(true) {
						sim.InjectFault(nssim.Fault{Operation: nssim.OpRead, Status: http.StatusOK, Body: ptr(body)})
					}
					if hiding.Load() {
						hide.ServeHTTP(w, r)
						return
					}
					api.ServeHTTP(w, r)
				})
			}
			h := setupWrapped(t, nssim.Config{}, wrap, func(c *orchestrator.Config) {
				c.VerifyTimeout, c.TombstoneTTL = 300*time.Millisecond, time.Second
			})
			orig := h.placeCall(t)
			hidden.set(orig.SessionID)
			tr := h.end(t, h.start(t, orchestrator.CompletionAuto, time.Second).ID)
			if reads(h.sim) == 0 {
				t.Fatal("the caller's call was never read by its id")
			}
			if tr.Outcome.Reason == orchestrator.ReasonCallerHungUp || tr.Outcome.Verified || tr.Cleanup == nil {
				t.Fatalf("state %s outcome %+v cleanup %+v: want an unverified outcome with an obligation, not the caller gone",
					tr.State, tr.Outcome, tr.Cleanup)
			}
			h.sim.ClearFaults()
			hidden.set()
			got := h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Cleanup == nil })
			if !got.Outcome.Verified || !got.Outcome.CallerRestored {
				t.Errorf("outcome %+v once the caller's call can be read: want verified, caller restored", got.Outcome)
			}
			assertRestored(t, h, orig)
		})
	}
}

// The engine, against nssim: a listing leaves the answered consult out
// once, and the read of the consult by our call-id answers 200 with an
// empty object. Before, that read was taken for a 404: the target had hung
// up, the transfer failed target_hung_up and the consult the agent was
// talking on was hung up. Now the reading is unknown, the next listing
// shows the consult, and the agent completes the transfer.
func TestConsultReadWithoutTheCallIsNotGone(t *testing.T) {
	consultLeftOutOfOneListing(t, nssim.Config{}, func(h *harness) {
		h.sim.InjectFault(nssim.Fault{Operation: nssim.OpRead, Status: http.StatusOK, Body: ptr(`{}`)})
	}, func(h *harness) {
		if reads(h.sim) == 0 {
			t.Fatal("the consult was never read by its call-id")
		}
	})
}

// A watcher reads for the records as last saved, and the engine judges a
// reading with the record as it is now. A listing that leaves a call out
// (a row being rewritten) reads the caller's call, and a consult seen
// before, by its id only while no join was sent: after one, their absence
// is expected. So a reading made for a record that sent the join, judged
// after the join was refused (the record cleared the join: nothing was
// joined), had never read the unlisted call. The consult was unknown
// already; the caller was taken for gone, and a recovery that takes the
// caller for gone never gives them back. Both were made unknown; since a
// caller's call, and a consult after a join a listing shows not taken,
// are read by their ids after a join too, such a reading shows them, and
// so does a reading made for the refusal.
func TestAReadingMadeBeforeARefusedJoinDoesNotEndItsCalls(t *testing.T) {
	const trID = "tr_01JREADINGBEFOREAREFUSAL00"
	for _, consult := range []bool{false, true} {
		name := "caller"
		if consult {
			name = "consult"
		}
		t.Run(name, func(t *testing.T) {
			var hidden hiddenIDs
			sim, srv := newSimServer(t, nssim.Config{}, hidingRows(&hidden))
			orig, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"})
			if err != nil {
				t.Fatal(err)
			}
			c, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + basePath, APIKey: apiKey,
				Attempts: 1, RetryBase: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			refused := transferOf(trID, orig)
			hidden.set(orig.OrigCallID, orig.SessionID)
			if consult {
				dialConsult(t, sim, c, refused)
				refused.Seen.Consult = true
				hidden.set(netsapiens.ConsultCallID(trID))
			}
			sent := refused.Clone()
			sent.Sent.Join = time.Unix(1, 0)

			// The reading made for the record that sent the join reads the
			// call too: the caller's call after a join
			// (TestACallerLeftOutOfOneListingAfterTheJoinIsReadByItsID), the
			// consult after a join the listing shows not taken
			// (TestAConsultLeftOutAfterAJoinThatDidNotTakeIsReadByItsID).
			// Judged for the refusal, it shows the call.
			before := reads(sim)
			v, err := c.Read(context.Background(), "k", []*orchestrator.Transfer{sent})
			if err != nil {
				t.Fatal(err)
			}
			if n := reads(sim) - before; n != 1 {
				t.Fatalf("%d reads by id for a record that sent its join, want 1", n)
			}
			obs, err := v.Observe(refused)
			switch {
			case err != nil:
				t.Fatalf("the reading made for the join, judged for its refusal: %v", err)
			case !consult && obs.Caller != orchestrator.CallerConnected:
				t.Fatalf("the reading made for the join, judged for its refusal, shows the caller %s, want connected", obs.Caller)
			case consult && obs.Consult != orchestrator.ConsultAnswered:
				t.Fatalf("the reading made for the join, judged for its refusal, shows the consult %s, want answered", obs.Consult)
			}

			v, err = c.Read(context.Background(), "k", []*orchestrator.Transfer{refused})
			if err != nil {
				t.Fatal(err)
			}
			obs, err = v.Observe(refused)
			switch {
			case err != nil:
				t.Fatalf("a reading made for the refusal: %v", err)
			case !consult && obs.Caller != orchestrator.CallerConnected:
				t.Errorf("a reading made for the refusal shows the caller %s, want connected", obs.Caller)
			case consult && obs.Consult != orchestrator.ConsultAnswered:
				t.Errorf("a reading made for the refusal shows the consult %s, want answered", obs.Consult)
			}
		})
	}
}
