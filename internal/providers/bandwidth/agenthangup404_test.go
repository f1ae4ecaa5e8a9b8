package bandwidth_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// A join applied late, seen by the recovery (as in
// TestAttendedJoinLandingDuringTheRecoveryStands): the engine hangs up the
// agent's call G, alone in b2, on the late path of HangupAgent, which
// reads G first. G reads 404 once. Locate read G, and Catapult reads an
// ended call "completed": the 404 says nothing (getKnownCall). Taken for
// G gone, nothing was hung up, and the engine, which sends that step once,
// reported the transfer completed: the agent stayed alone in b2 on a
// silent call.
func TestAnAgentReadNotFoundOnceAfterALateJoinIsHungUp(t *testing.T) {
	h := setup(t, options{engine: func(c *orchestrator.Config) {
		c.VisibilityWindow = 200 * time.Millisecond
		c.VerifyTimeout = time.Second
	}})
	a, g, b1 := h.placeBridged(t)
	var id atomic.Pointer[string]
	var joinSent, landed atomic.Bool
	h.before(func(method, path, body string) bool {
		return method == http.MethodPost && path == "/users/"+userID+"/bridges/"+b1.ID &&
			strings.Contains(body, a.ID) && !strings.Contains(body, g.ID) && strings.Contains(body, `"bridgeAudio":true`)
	}, func() {
		if err := h.sim.SetAdversity(bwsim.Config{ActionDelay: time.Hour}); err != nil {
			t.Error(err)
		}
		joinSent.Store(true)
	})
	// The recovery's hang-up reads b1: the pending join lands now.
	h.before(func(method, path, _ string) bool {
		p := id.Load()
		if p == nil || !joinSent.Load() || method != http.MethodGet || path != "/users/"+userID+"/bridges/"+b1.ID {
			return false
		}
		tr, err := h.eng.Get(context.Background(), *p)
		if err != nil || tr.State != orchestrator.StateRecovering || len(tr.Steps) == 0 {
			return false
		}
		s := tr.Steps[len(tr.Steps)-1]
		return s.Name == orchestrator.StepHangup && s.Status == orchestrator.StepStarted
	}, func() {
		if err := h.sim.SetAdversity(bwsim.Config{}); err != nil {
			t.Error(err)
		}
		h.sim.Settle()
		landed.Store(true)
	})
	// The next read of G, the late HangupAgent's, answers 404.
	h.faultAt(func(method, path, _ string) bool {
		return landed.Load() && method == http.MethodGet && path == "/users/"+userID+"/calls/"+g.ID
	}, bwsim.Fault{Operation: bwsim.OpGetCall, Status: http.StatusNotFound, Code: "call-not-found", Count: 1})
	tr := h.start(t, attendedReq(a, g, orchestrator.CompletionAuto))
	id.Store(&tr.ID)
	tr = h.end(t, tr.ID)
	h.idle(t)
	if !landed.Load() || !slices.ContainsFunc(h.sim.Requests(), func(r bwsim.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.Path, "/calls/"+g.ID) && r.Status == http.StatusNotFound
	}) {
		t.Fatalf("setup: the join landed %t; no read of the agent's call was answered 404", landed.Load())
	}
	if tr.State != orchestrator.StateCompleted || !h.sim.Connected(a.ID, tr.Legs.Consult.CallID) {
		t.Fatalf("steps %v: state %s outcome %+v, want completed with the caller and the target", stepNames(tr), tr.State, tr.Outcome)
	}
	if c := mustCall(t, h, g.ID); c.State != bwsim.StateCompleted {
		t.Errorf("the agent's call is %s in bridge %q after the join showed (outcome %+v), want hung up", c.State, c.BridgeID, tr.Outcome)
	}
}
