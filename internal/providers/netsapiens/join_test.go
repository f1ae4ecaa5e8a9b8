package netsapiens_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
	"github.com/transferd/transferd/internal/store/memory"
)

// pstnTarget is an external number, as in the spec's example of a
// CallRequest to the PSTN.
const pstnTarget = "18587645200"

// assertJoined checks the simulator's ground truth once every accepted
// action has been applied: the caller's call is the only call up, it
// connects the caller to target, neither of them held, and no leg of
// ours (the agent's, the consult's) is left up: with
// nssim.JoinKeepsConsult the caller's call is the session our call-id
// created, and no other session may be up.
func assertJoined(t *testing.T, h *harness, orig nssim.ActiveCall, target string) nssim.SessionTruth {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.sim.WaitApplied(ctx); err != nil {
		t.Fatal(err)
	}
	truth := h.sim.Truth()
	var caller *nssim.SessionTruth
	for i, s := range truth.Sessions {
		if s.Orig.CallID == orig.OrigCallID || s.Term.CallID == orig.OrigCallID {
			caller = &truth.Sessions[i]
			continue
		}
		t.Errorf("a call other than the caller's is up: %+v", s)
	}
	if caller == nil {
		t.Fatalf("the caller's call ended: %+v", truth.Ended)
	}
	me, other := caller.Orig, caller.Term
	if me.CallID != orig.OrigCallID {
		me, other = other, me
	}
	if me.State != nssim.InfoActive || other.State != nssim.InfoActive {
		t.Errorf("the caller is held: %+v", caller)
	}
	if (other.User != target && other.Number != target) || other.CallID == orig.TermCallID {
		t.Errorf("the caller is not connected to %s: %+v", target, caller)
	}
	for _, e := range truth.Ended {
		if e.Reason == nssim.EndDisconnected && (e.Call.OrigCallID == orig.OrigCallID || e.Call.TermCallID == orig.OrigCallID) {
			t.Errorf("transferd disconnected the caller's call: %+v", e)
		}
	}
	return *caller
}

func assertCompleted(t *testing.T, tr *orchestrator.Transfer) {
	t.Helper()
	if tr.State != orchestrator.StateCompleted || tr.Outcome.Reason != orchestrator.ReasonTransferred || !tr.Outcome.Verified {
		t.Errorf("state %s outcome %+v; want completed, transferred, verified", tr.State, tr.Outcome)
	}
}

// A transfer to a number (PSTN or gateway) is seen joined however the PBX
// shows the number (both sides of nssim.Config.ExternalNumbers: the
// spec's example leg has no user, the number in its URI and the dialed
// number; or the number as a user) and whichever session survives the
// join (both sides of nssim.Config.JoinKeeps). Before the fix the PSTN
// rendering read as neither agent nor target after the join, and the
// transfer ended failed, target_hung_up, caller_restored false while the
// caller talked to the target; with the consult's session kept the joined
// call read as the consult and the caller as gone (caller_hung_up), and
// the recovery hung up our call-id: the joined call.
func TestNumberTargetIsSeenJoined(t *testing.T) {
	for _, numbers := range []string{nssim.NumbersPSTN, nssim.NumbersAsUsers} {
		for _, keeps := range []string{nssim.JoinKeepsCaller, nssim.JoinKeepsConsult} {
			t.Run(numbers+"/keeps "+keeps, func(t *testing.T) {
				h := setup(t, nssim.Config{ExternalNumbers: numbers, JoinKeeps: keeps})
				orig := h.placeCall(t)
				tr := h.end(t, h.startTo(t, pstnTarget, orchestrator.CompletionAuto, 0).ID)
				assertCompleted(t, tr)
				caller := assertJoined(t, h, orig, pstnTarget)
				// The simulator shows the number as this side of the guess says.
				c := caller.Call
				switch numbers {
				case nssim.NumbersPSTN:
					if c.TermUser != "" || c.TermDomain != "*" || c.TermURI != "sip:"+pstnTarget+"@192.0.2.10" {
						t.Errorf("the target's leg is not shown as a PSTN leg: %+v", c)
					}
				default:
					if c.TermUser != pstnTarget {
						t.Errorf("the target's leg is not shown as a user: %+v", c)
					}
				}
				if keeps == nssim.JoinKeepsConsult && (c.SessionID != tr.Legs.Consult.SessionID || c.ByCallID != netsapiens.ConsultCallID(tr.ID)) {
					t.Errorf("the joined call is not the consult's session: %+v", c)
				}
			})
		}
	}
}

// Whichever session survives a join (nssim.Config.JoinKeeps), a transfer
// to an extension ends completed with the caller connected to the target,
// in auto and manual completion. Before the fix a PBX that keeps the
// consult's session showed the joined call as our consult, the engine
// reported caller_hung_up, and its recovery hung up our call-id, which
// ended the caller's call with the target.
func TestJoinKeepingEitherSession(t *testing.T) {
	for _, keeps := range []string{nssim.JoinKeepsCaller, nssim.JoinKeepsConsult} {
		for _, completion := range []orchestrator.Completion{orchestrator.CompletionAuto, orchestrator.CompletionManual} {
			t.Run("keeps "+keeps+"/"+string(completion), func(t *testing.T) {
				h := setup(t, nssim.Config{JoinKeeps: keeps})
				orig := h.placeCall(t)
				tr := h.start(t, completion, 0)
				if completion == orchestrator.CompletionManual {
					h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
					if _, err := h.eng.Complete(context.Background(), tr.ID); err != nil {
						t.Fatal(err)
					}
				}
				tr = h.end(t, tr.ID)
				assertCompleted(t, tr)
				assertJoined(t, h, orig, "1010")
			})
		}
	}
}

// HangupConsult never ends a joined call, whichever session survives the
// join (nssim.Config.JoinKeeps): with the consult's session kept, our
// call-id still addresses it and it is the caller's call with the target.
// When the join was sent but did not happen, the consult is hung up as
// before; when the listing that tells cannot be read, nothing is hung up
// and the hang-up fails, to be sent again. Before the fix HangupConsult
// disconnected our call-id blind, ending the joined call.
func TestHangupConsultNeverEndsAJoinedCall(t *testing.T) {
	ctx := context.Background()
	// consultJoined drives the client through the guide's steps, the join
	// included when join is set, and returns the transfer as the engine
	// would hold it once the join was sent.
	consultJoined := func(t *testing.T, h *harness, join bool) *orchestrator.Transfer {
		t.Helper()
		tr := &orchestrator.Transfer{ID: orchestrator.NewID(time.Now()), Request: orchestrator.Request{Provider: netsapiens.Name,
			Call: orchestrator.CallRef{Domain: domain, User: "1000"}, Target: "1010"}}
		legs, err := h.client.Locate(ctx, tr)
		if err != nil {
			t.Fatal(err)
		}
		tr.Legs = legs
		if err := h.client.Hold(ctx, tr); err != nil {
			t.Fatal(err)
		}
		if tr.Legs.Consult, err = h.client.Dial(ctx, tr); err != nil {
			t.Fatal(err)
		}
		// The target answers at once: once every due action has run, the
		// consult is answered and the caller held.
		if err := h.sim.WaitIdle(ctx); err != nil {
			t.Fatal(err)
		}
		if join {
			if err := h.client.Complete(ctx, tr); err != nil {
				t.Fatal(err)
			}
			if err := h.sim.WaitApplied(ctx); err != nil {
				t.Fatal(err)
			}
		}
		tr.Sent.Join = time.Now()
		return tr
	}
	for _, keeps := range []string{nssim.JoinKeepsCaller, nssim.JoinKeepsConsult} {
		t.Run("joined/keeps "+keeps, func(t *testing.T) {
			h := setup(t, nssim.Config{JoinKeeps: keeps})
			orig := h.placeCall(t)
			tr := consultJoined(t, h, true)
			if err := h.client.HangupConsult(ctx, tr); err != nil {
				t.Fatal(err)
			}
			assertJoined(t, h, orig, "1010")
		})
		t.Run("join sent, not applied/keeps "+keeps, func(t *testing.T) {
			h := setup(t, nssim.Config{JoinKeeps: keeps})
			orig := h.placeCall(t)
			tr := consultJoined(t, h, false)
			if err := h.client.HangupConsult(ctx, tr); err != nil {
				t.Fatal(err)
			}
			for _, s := range h.sim.Truth().Sessions {
				if s.SessionID != orig.SessionID {
					t.Errorf("the consult is still up: %+v", s)
				}
			}
		})
		t.Run("join sent, listing unreadable/keeps "+keeps, func(t *testing.T) {
			h := setup(t, nssim.Config{JoinKeeps: keeps})
			orig := h.placeCall(t)
			tr := consultJoined(t, h, true)
			h.sim.InjectFault(nssim.Fault{Operation: nssim.OpList, Status: http.StatusServiceUnavailable})
			if err := h.client.HangupConsult(ctx, tr); orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
				t.Errorf("hang-up with the listing unreadable: %v; want it unavailable", err)
			}
			h.sim.ClearFaults()
			for _, r := range h.sim.Requests() {
				if r.Method == http.MethodDelete {
					t.Errorf("sent %s %s without knowing whether the call is joined", r.Method, r.Path)
				}
			}
			assertJoined(t, h, orig, "1010")
		})
	}
}

// A target who passes the call on before any reading showed the join:
// the listing cannot be read from the join on, and by the time it can,
// the caller's call goes on with a third party (1020), neither the agent
// nor the target. Nothing is hung up, held or unheld after the join. Where
// the PBX keeps the caller's session (nssim.JoinKeepsCaller), whether the
// join happened cannot be read from that, and the transfer does not stay
// completing for as long as that call lasts: it ends unverified with a
// cleanup obligation, which the caller hanging up discharges. Before the
// fix it stayed completing until the call ended. Where the PBX keeps the
// consult's session, the caller's call is the one our call-id created,
// which only the join can have done: completed, verified.
func TestJoinPassedOnBeforeItWasSeenEndsUnverified(t *testing.T) {
	for _, keeps := range []string{nssim.JoinKeepsCaller, nssim.JoinKeepsConsult} {
		t.Run("keeps "+keeps, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			h := setup(t, nssim.Config{JoinKeeps: keeps}, func(c *orchestrator.Config) { c.VerifyTimeout = 200 * time.Millisecond })
			orig := h.placeCall(t)
			tr := h.start(t, orchestrator.CompletionManual, 0)
			h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered && x.Seen.Held })
			for _, op := range []string{nssim.OpList, nssim.OpRead, nssim.OpCount} {
				h.sim.InjectFault(nssim.Fault{Operation: op, Status: http.StatusServiceUnavailable})
			}
			if _, err := h.eng.Complete(ctx, tr.ID); err != nil {
				t.Fatal(err)
			}
			if err := h.sim.Wait(ctx, func() bool {
				return slices.ContainsFunc(h.sim.Requests(), func(r nssim.Request) bool {
					return r.Operation == nssim.OpTransfer && r.Status == http.StatusAccepted
				})
			}); err != nil {
				t.Fatal(err)
			}
			caller := assertJoined(t, h, orig, "1010")

			// The target passes the call on to 1020, as the target.
			targetCallID := caller.Term.CallID
			if caller.Term.CallID == orig.OrigCallID {
				targetCallID = caller.Orig.CallID
			}
			req := httptest.NewRequest(http.MethodPatch, "/domains/"+domain+"/users/1010/calls/"+targetCallID+"/transferPeer",
				strings.NewReader(`{"destination":"1020"}`))
			req.Header.Set("Authorization", "Bearer "+apiKey)
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.sim.APIHandler().ServeHTTP(rec, req)
			if rec.Code != http.StatusAccepted {
				t.Fatalf("transferPeer: %d %s", rec.Code, rec.Body)
			}
			if err := h.sim.WaitApplied(ctx); err != nil {
				t.Fatal(err)
			}
			h.sim.ClearFaults()

			tr = h.end(t, tr.ID)
			if keeps == nssim.JoinKeepsConsult {
				// The caller's call is the session our call-id created: only
				// the join can have put the caller there.
				assertCompleted(t, tr)
			} else if tr.State != orchestrator.StateFailed || tr.Outcome.Verified || tr.Cleanup == nil {
				t.Fatalf("state %s outcome %+v cleanup %+v: want failed, unverified, with an obligation", tr.State, tr.Outcome, tr.Cleanup)
			}
			// Nothing of the caller's call was touched after the join.
			var passedOn *nssim.SessionTruth
			for i, s := range h.sim.Truth().Sessions {
				if s.Orig.CallID == orig.OrigCallID || s.Term.CallID == orig.OrigCallID {
					passedOn = &h.sim.Truth().Sessions[i]
					continue
				}
				t.Errorf("a call other than the caller's is up: %+v", s)
			}
			if passedOn == nil || (passedOn.Orig.User != "1020" && passedOn.Term.User != "1020") ||
				passedOn.Orig.State != nssim.InfoActive || passedOn.Term.State != nssim.InfoActive {
				t.Fatalf("the caller's call is not up with 1020, neither held: %+v (ended %+v)", passedOn, h.sim.Truth().Ended)
			}
			joined := false
			for _, r := range h.sim.Requests() {
				if joined && (r.Method == http.MethodDelete || strings.HasSuffix(r.Path, "hold")) {
					t.Errorf("sent %s %s after the join, whose effect was unknown", r.Method, r.Path)
				}
				joined = joined || r.Operation == nssim.OpTransfer
			}

			if keeps == nssim.JoinKeepsConsult {
				return
			}
			// The caller hangs up: the obligation is discharged, and the
			// outcome stays unverified for good: the join did connect the
			// caller to the target (who passed the call on), and no
			// reading can show that any more.
			party := "orig"
			if passedOn.Term.CallID == orig.OrigCallID {
				party = "term"
			}
			if err := h.sim.Hangup(passedOn.SessionID, party); err != nil {
				t.Fatal(err)
			}
			got := h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Cleanup == nil })
			if got.Outcome.Verified || got.State != orchestrator.StateFailed || !hasVerifyStep(got) {
				t.Errorf("state %s outcome %+v once the obligation was discharged: want failed, unverified, a verify step", got.State, got.Outcome)
			}
		})
	}
}

// A target who hangs up just as the join is sent: on one side of the
// guess of what an attended transfer to an unknown
// call-destination-session-id does (nssim.Config.UnknownDestination), the
// PBX answers 202 and nothing happens; on the other, 404. Either way the
// transfer reports target_hung_up with the caller back: the caller's call
// was there all along. Before the fix the 404 side reported call_not_found
// ("the provider had no such call"). A middleware makes the target hang up
// on the consult as the transfer request arrives (found by review).
func TestTargetGoneAsTheJoinIsSentIsTargetHungUp(t *testing.T) {
	for _, dest := range []string{nssim.DestinationIgnore, nssim.DestinationNotFound} {
		t.Run(dest, func(t *testing.T) {
			var once sync.Once
			wrap := func(sim *nssim.Sim, api http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if isJoin(r) {
						once.Do(func() { hangUpConsults(t, sim) })
					}
					api.ServeHTTP(w, r)
				})
			}
			h := setupWrapped(t, nssim.Config{UnknownDestination: dest}, wrap,
				func(c *orchestrator.Config) { c.VerifyTimeout = 300 * time.Millisecond })
			orig := h.placeCall(t)
			tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
			assertRestored(t, h, orig)
			if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonTargetHungUp || !tr.Outcome.CallerRestored {
				t.Errorf("state %s outcome %+v; want failed, target_hung_up, caller restored", tr.State, tr.Outcome)
			}
		})
	}
}

// TestRefusedJoinIsJudgedOnAReadingMadeForTheRefusal plays the order that
// made TestTargetGoneAsTheJoinIsSentIsTargetHungUp fail now and then. The
// target hangs up as the join is sent, and the PBX refuses it with a 404.
// A reading started after the refusal but before the refusal's record was
// saved was read for the record that said a join went out: a listing
// does not confirm one by one a consult it does not show once a join was
// sent (its absence is expected then), so that reading cannot tell
// whether the consult is up. Taken as a failed reading, it left the
// recovery to hang the consult up blind, and the refusal was blamed on
// the call (call_not_found) although the target had hung up. The save of
// the refusal is held here until two listings have arrived, so that the
// reading made for the old record is the one the recovery finds.
func TestRefusedJoinIsJudgedOnAReadingMadeForTheRefusal(t *testing.T) {
	var hungUp sync.Once
	store := newRefusalSavedLate(t)
	wrap := func(sim *nssim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			store.count(r)
			if isJoin(r) {
				hungUp.Do(func() { hangUpConsults(t, sim) })
			}
			api.ServeHTTP(w, r)
		})
	}
	sim, srv := newSimServer(t, nssim.Config{UnknownDestination: nssim.DestinationNotFound}, wrap)
	store.transfer(t, sim, srv, nil, orchestrator.ReasonTargetHungUp)
}

// TestCallerLeftOutAsTheJoinIsRefusedIsGivenBack is the same order with
// the caller's row left out of the listings made while the refusal's save
// is held (a row being rewritten), and the join refused with a 404 while
// both parties stay (every join: one answered 404 within the visibility
// window of the dial is sent again, as a lagging API node may have
// answered it, and only the last is the refusal). The reading made for the record that sent the join
// had not read the unlisted caller by its id, and took the caller for
// gone: the refusal was blamed on the caller's hang-up until a later
// reading showed the caller held, and the transfer reported a provider
// that contradicted itself (provider_error). Now that reading is unknown,
// and the recovery's reading made for the refusal shows the caller held:
// call_not_found, as the PBX said, and the caller given back.
func TestCallerLeftOutAsTheJoinIsRefusedIsGivenBack(t *testing.T) {
	var hidden hiddenIDs
	var caller atomic.Pointer[nssim.ActiveCall]
	store := newRefusalSavedLate(t)
	store.released = func() { hidden.set() }
	wrap := func(sim *nssim.Sim, api http.Handler) http.Handler {
		hiding := hidingRows(&hidden)(sim, api)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			store.count(r)
			if c := caller.Load(); c != nil && isJoin(r) {
				hidden.set(c.OrigCallID, c.SessionID)
			}
			hiding.ServeHTTP(w, r)
		})
	}
	sim, srv := newSimServer(t, nssim.Config{}, wrap)
	sim.InjectFault(nssim.Fault{Operation: nssim.OpTransfer, Status: http.StatusNotFound, Message: "Call not found"})
	store.transfer(t, sim, srv, func(orig nssim.ActiveCall) { caller.Store(&orig) }, orchestrator.ReasonCallNotFound)
}

// isJoin reports whether r is an attended transfer's join.
func isJoin(r *http.Request) bool {
	return r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/transfer")
}

// hangUpConsults makes the target hang up on every consult call of ours.
func hangUpConsults(t *testing.T, sim *nssim.Sim) {
	for _, s := range sim.Truth().Sessions {
		if strings.HasPrefix(s.ByCallID, "transferd-") {
			if err := sim.Hangup(s.SessionID, "term"); err != nil {
				t.Error(err)
			}
		}
	}
}

// refusalSavedLate is a store that holds the first save of a refused join
// (call_not_found: not a 404 within the window of the dial, which is
// unknown and sent again) until two listings of the domain (count) have arrived since it began:
// the second was read after the refusal, for the record saved before it.
// Then it calls released, if set, and saves.
type refusalSavedLate struct {
	orchestrator.Store
	saved    *savedStore
	listings atomic.Int64
	listed   chan struct{}
	released func()
	held     atomic.Bool
	t        *testing.T
}

func newRefusalSavedLate(t *testing.T) *refusalSavedLate {
	saved := orchestratortest.NewSaved(memory.New())
	return &refusalSavedLate{Store: saved, saved: saved, listed: make(chan struct{}, 1), t: t}
}

// transfer runs an auto transfer on an engine over s against sim, served
// by srv, to its end (placed, if set, is told of the caller's call first),
// and checks that s held the refusal's save and that the transfer failed
// for want, verified, with the caller back (the simulator's word).
func (s *refusalSavedLate) transfer(t *testing.T, sim *nssim.Sim, srv *httptest.Server,
	placed func(nssim.ActiveCall), want orchestrator.Reason) {
	t.Helper()
	h := newHarness(t, sim, srv, s, s.saved, "", func(c *orchestrator.Config) { c.VerifyTimeout = 300 * time.Millisecond })
	orig := h.placeCall(t)
	if placed != nil {
		placed(orig)
	}
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
	if !s.held.Load() {
		t.Fatal("the refusal's save was never held: the test did not play its order")
	}
	assertRestored(t, h, orig)
	if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != want ||
		!tr.Outcome.CallerRestored || !tr.Outcome.Verified {
		t.Errorf("state %s outcome %+v; want failed, %s, caller restored, verified", tr.State, tr.Outcome, want)
	}
}

// count notes r if it lists the domain's calls.
func (s *refusalSavedLate) count(r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/domains/"+domain+"/calls" {
		return
	}
	s.listings.Add(1)
	select {
	case s.listed <- struct{}{}:
	default:
	}
}

func (s *refusalSavedLate) Update(ctx context.Context, tr *orchestrator.Transfer) error {
	n := len(tr.Steps)
	if n > 0 && tr.Steps[n-1].Name == orchestrator.StepTransfer && tr.Steps[n-1].Status == orchestrator.StepFailed &&
		tr.Steps[n-1].ErrKind == orchestrator.KindCallNotFound.String() && s.held.CompareAndSwap(false, true) {
		// Liveness only: the watcher lists the domain every millisecond.
		giveUp := time.NewTimer(10 * time.Second)
		defer giveUp.Stop()
		for from := s.listings.Load(); s.listings.Load() < from+2; {
			select {
			case <-s.listed:
			case <-giveUp.C:
				s.t.Error("no listing came while the refusal's save was held")
				return s.Store.Update(ctx, tr)
			}
		}
		if s.released != nil {
			s.released()
		}
	}
	return s.Store.Update(ctx, tr)
}
