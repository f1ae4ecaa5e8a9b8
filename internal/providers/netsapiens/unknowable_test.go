package netsapiens_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// hasVerifyStep reports whether the sweeper recorded the end of an
// obligation.
func hasVerifyStep(tr *orchestrator.Transfer) bool {
	return slices.ContainsFunc(tr.Steps, func(s orchestrator.Step) bool { return s.Name == orchestrator.StepVerify })
}

// callerSession returns the live session that carries the caller's
// Call-ID, and which party of it the caller is.
func callerSession(sim *nssim.Sim, callerID string) (nssim.SessionTruth, string, bool) {
	for _, s := range sim.Truth().Sessions {
		switch callerID {
		case s.Orig.CallID:
			return s, "orig", true
		case s.Term.CallID:
			return s, "term", true
		}
	}
	return nssim.SessionTruth{}, "", false
}

// hangupAroundJoin is a middleware that makes the caller hang up once, as
// the join is sent: after the PBX has applied it (after), or before the
// PBX gets it. It records the party the caller was with when the call
// ended. No other request is served while the join and the hang-up are
// under way, so no reading can fall between them: the watcher polls every
// millisecond, and a reading that showed the caller with the target would
// be a true sighting of the join, not the moment the tests are about.
func hangupAroundJoin(t *testing.T, orig *nssim.ActiveCall, after bool, with *string) func(*nssim.Sim, http.Handler) http.Handler {
	var once sync.Once
	var gate sync.RWMutex
	return func(sim *nssim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			join := r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/transfer")
			if join {
				gate.Lock()
				defer gate.Unlock()
			} else {
				gate.RLock()
				defer gate.RUnlock()
			}
			hangup := func() {
				once.Do(func() {
					ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
					defer cancel()
					if err := sim.WaitApplied(ctx); err != nil {
						t.Error(err)
						return
					}
					s, party, ok := callerSession(sim, orig.OrigCallID)
					if !ok {
						t.Error("the caller's call is not up as the join is sent")
						return
					}
					*with = s.Orig.User + "/" + s.Term.User
					if err := sim.Hangup(s.SessionID, party); err != nil {
						t.Error(err)
					}
				})
			}
			if join && !after {
				hangup()
			}
			api.ServeHTTP(w, r)
			if join && after {
				hangup()
			}
		})
	}
}

// A caller who hangs up right after the join connected them to the target,
// before any reading showed the join: every reading from then on shows the
// caller's call ended, as it would for a caller who hung up before the
// join. The transfer reports what is known (failed, the caller's call
// ended, not given back) and says it cannot be verified: not verified, and
// no obligation left, since nothing the provider shows can tell. Before,
// it reported failed, verified — a claim that the provider showed the
// caller was not transferred, when the simulator's truth shows the caller
// was with the target. Both sides of the guess of which session survives
// the join (nssim.Config.JoinKeeps).
func TestCallerGoneRightAfterTheJoinCannotBeVerified(t *testing.T) {
	for _, keeps := range []string{nssim.JoinKeepsCaller, nssim.JoinKeepsConsult} {
		t.Run(keeps, func(t *testing.T) {
			var orig nssim.ActiveCall
			var with string
			h := setupWrapped(t, nssim.Config{JoinKeeps: keeps}, hangupAroundJoin(t, &orig, true, &with),
				func(c *orchestrator.Config) { c.VerifyTimeout = 300 * time.Millisecond })
			orig = h.placeCall(t)
			tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
			if !strings.Contains(with, "1010") {
				t.Fatalf("the caller hung up with %q, not with the target: the join had not applied", with)
			}
			tr = h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
			o := tr.Outcome
			if tr.State != orchestrator.StateFailed || o.Reason != orchestrator.ReasonCallerHungUp || o.CallerRestored || o.Verified {
				t.Fatalf("state %s outcome %+v; want failed, caller_hung_up, not restored, not verified", tr.State, o)
			}
			if !strings.Contains(o.Detail, "cannot be verified") {
				t.Errorf("detail %q does not say the outcome cannot be verified", o.Detail)
			}
			if _, _, up := callerSession(h.sim, orig.OrigCallID); up {
				t.Error("the caller's call is up")
			}
			for _, s := range h.sim.Truth().Sessions {
				t.Errorf("a call is left up: %+v", s)
			}
		})
	}
}

// The other side: the caller hangs up before the PBX gets the join, which
// it refuses (the call is gone). Nothing was joined, and the reading that
// shows the caller's call ended is the whole truth: failed, verified.
//
// Both sides of nssim.Config.ReadOtherLeg: the caller's call, no longer
// listed, is read by its id under the agent's user, which a PBX may answer
// 404 however the caller is; the agent's own leg, ended with the call,
// corroborates it.
func TestCallerGoneBeforeTheJoinIsVerified(t *testing.T) {
	for _, other := range []string{nssim.OtherLegFound, nssim.OtherLegNotFound} {
		t.Run("read other leg "+other, func(t *testing.T) { callerGoneBeforeTheJoin(t, other) })
	}
}

func callerGoneBeforeTheJoin(t *testing.T, readOtherLeg string) {
	var orig nssim.ActiveCall
	var with string
	h := setupWrapped(t, nssim.Config{ReadOtherLeg: readOtherLeg}, hangupAroundJoin(t, &orig, false, &with),
		func(c *orchestrator.Config) { c.VerifyTimeout = 300 * time.Millisecond })
	orig = h.placeCall(t)
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
	if strings.Contains(with, "1010") {
		t.Fatalf("the caller was with the target (%q) before the join was sent", with)
	}
	tr = h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	o := tr.Outcome
	if tr.State != orchestrator.StateFailed || o.Reason != orchestrator.ReasonCallerHungUp || o.CallerRestored || !o.Verified {
		t.Fatalf("state %s outcome %+v; want failed, caller_hung_up, not restored, verified", tr.State, o)
	}
	for _, s := range h.sim.Truth().Sessions {
		t.Errorf("a call is left up: %+v", s)
	}
}
