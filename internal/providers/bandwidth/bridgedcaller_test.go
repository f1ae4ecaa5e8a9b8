package bandwidth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// An announced transfer of a caller bridged with an agent, on the side of
// the guess that gives the caller back when the transfer fails
// (TransferFailure restore): the platform takes the caller out of its
// bridge (bwsim's side of that guess) and gives it back alone. It was
// left there, connected to no one, and reported not restored. The caller
// is now put back into its bridge with the agent's call, still in it, and
// reported restored, verified, once a reading shows it there.
//
// The agent hangs up while the target rings: the bridge has completed,
// and the caller is never put into it nor into any other; the outcome
// says the caller was not given back, and why.
func TestACallerGivenBackOutOfItsBridgeIsPutBackWithTheAgent(t *testing.T) {
	for _, agentStays := range []bool{true, false} {
		name := "the agent stays"
		if !agentStays {
			name = "the agent hangs up"
		}
		t.Run(name, func(t *testing.T) {
			h := setup(t, options{engine: shortWindows, sim: bwsim.Config{TransferFailure: bwsim.TransferFailureRestore}})
			h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
			a, g, b1 := h.placeBridged(t)
			id := h.start(t, announcedReq(a, target)).ID
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var leg bwsim.Call
			if err := h.sim.WaitFor(ctx, func() bool {
				for _, c := range h.sim.Calls() {
					if c.ParentCallID == a.ID && c.State == bwsim.StateStarted {
						leg = c
						return true
					}
				}
				return false
			}); err != nil {
				t.Fatal(err)
			}
			if !agentStays {
				if err := h.sim.Hangup(g.ID); err != nil {
					t.Fatal(err)
				}
			}
			if err := h.sim.Timeout(leg.ID); err != nil {
				t.Fatal(err)
			}
			end := h.waitSaved(t, id, func(x *orchestrator.Transfer) bool {
				return x.State.Terminal() && x.Cleanup == nil
			})
			h.idle(t)
			c := mustCall(t, h, a.ID)
			if c.Ended() {
				t.Fatalf("the caller's call is %s", c.State)
			}
			if end.State != orchestrator.StateFailed || end.Outcome.Reason != orchestrator.ReasonNoAnswer || !end.Outcome.Verified {
				t.Errorf("ended %s %+v; want failed, no_answer, verified", end.State, end.Outcome)
			}
			if agentStays {
				if strings.Contains(end.Outcome.Detail, "connected to no one") {
					t.Errorf("detail %q of a caller restored says it is with no one", end.Outcome.Detail)
				}
				if !end.Outcome.CallerRestored || c.BridgeID != b1.ID || !h.sim.Connected(a.ID, g.ID) {
					t.Errorf("outcome %+v, the caller in bridge %q, connected to the agent %v; want restored, back in %s with the agent",
						end.Outcome, c.BridgeID, h.sim.Connected(a.ID, g.ID), b1.ID)
				}
				return
			}
			if end.Outcome.CallerRestored || c.BridgeID != "" {
				t.Errorf("outcome %+v, the caller in bridge %q; want not restored, in no bridge", end.Outcome, c.BridgeID)
			}
			if !strings.Contains(end.Outcome.Detail, "not put back with the agent") || !strings.Contains(end.Outcome.Detail, "no longer in bridge") {
				t.Errorf("detail %q should say why the caller was not given back", end.Outcome.Detail)
			}
			for _, r := range h.requestsOf(bwsim.OpUpdateBridge) {
				if strings.Contains(r.Body, a.ID) {
					t.Errorf("the caller was put into a bridge the agent had left: %s %s", r.Path, r.Body)
				}
			}
		})
	}
}

// The same, and the agent hangs up the moment the caller is put back, or,
// on a platform that keeps a transferred call in its bridge (the other
// side of that guess), while the target rings: the caller is up, alone in
// its bridge. A caller read active in its bridge was taken for with the
// agent, and reported restored, verified; it is with the agent only when
// the bridge shows the agent's call in it, audio on.
func TestACallerAloneInItsBridgeIsNotReportedRestored(t *testing.T) {
	var mu sync.Mutex
	var a, g, b1 string
	wrap := func(sim *bwsim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			restore := r.Method == http.MethodPost && b1 != "" && r.URL.Path == "/users/"+userID+"/bridges/"+b1
			ag := g
			mu.Unlock()
			if !restore {
				api.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			api.ServeHTTP(rec, r)
			// The agent hangs up as the caller is put back: the bridge
			// holds the caller alone.
			if err := sim.Hangup(ag); err != nil {
				t.Error(err)
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
		})
	}
	h := setup(t, options{engine: shortWindows, sim: bwsim.Config{TransferFailure: bwsim.TransferFailureRestore}, wrap: wrap})
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeBusy})
	ca, cg, br := h.placeBridged(t)
	mu.Lock()
	a, g, b1 = ca.ID, cg.ID, br.ID
	mu.Unlock()
	end := h.waitSaved(t, h.start(t, announcedReq(ca, target)).ID, func(x *orchestrator.Transfer) bool {
		return x.State.Terminal() && x.Cleanup == nil
	})
	h.idle(t)
	c := mustCall(t, h, a)
	if c.Ended() || c.BridgeID != b1 || !mustCall(t, h, g).Ended() {
		t.Fatalf("setup: the caller's call is %s in bridge %q, the agent's %s; want the caller alone in %s",
			c.State, c.BridgeID, mustCall(t, h, g).State, b1)
	}
	if end.State != orchestrator.StateFailed || end.Outcome.Reason != orchestrator.ReasonBusy || end.Outcome.CallerRestored {
		t.Errorf("ended %s %+v; want failed, busy, the caller not restored", end.State, end.Outcome)
	}
	if !strings.Contains(end.Outcome.Detail, "without the agent's call") {
		t.Errorf("detail %q should say the caller is in its bridge without the agent", end.Outcome.Detail)
	}
}
