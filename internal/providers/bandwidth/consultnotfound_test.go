package bandwidth_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// Found by the engine review (fiftieth pass), the attended side of
// TestACallReadNotFoundAfterItWasSeenIsNotTakenForGone: a consult leg T
// seen ringing and then read "not found" (Catapult reads an ended call
// completed, so the 404 says nothing) was reported absent, and the engine
// takes a consult it has seen and no longer sees for ended: the transfer
// gave up and hung up a target about to answer. Such a read is now an
// unknown reading; here T reads 404 three times, then its true state
// again, the target answers and the transfer completes.
func TestAConsultLegReadNotFoundAfterItWasSeenIsNotTakenForEnded(t *testing.T) {
	h := setup(t, options{engine: func(c *orchestrator.Config) {
		c.VerifyTimeout = 300 * time.Millisecond
		c.VisibilityWindow = 100 * time.Millisecond
		c.TombstoneTTL = time.Second
	}})
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
	a, g, _ := h.placeBridged(t)
	req := attendedReq(a, g, orchestrator.CompletionAuto)
	req.ConsultTimeout = time.Minute
	tr := h.start(t, req)
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Seen.Consult && x.Legs.Consult.CallID != "" })
	leg := tr.Legs.Consult.CallID
	var mu sync.Mutex
	left := 3
	served := make(chan struct{})
	h.mu.Lock()
	h.hooks = append(h.hooks, &hook{every: true,
		match: func(method, path, _ string) bool {
			return method == http.MethodGet && path == "/users/"+userID+"/calls/"+leg
		},
		run: func() {
			mu.Lock()
			defer mu.Unlock()
			if left == 0 {
				return
			}
			h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpGetCall, Status: 404, Code: "call-not-found", Count: 1})
			if left--; left == 0 {
				close(served)
			}
		}})
	h.mu.Unlock()
	select {
	case <-served:
	case <-time.After(30 * time.Second):
		t.Fatal("the consult leg was never read")
	}
	h.idle(t)
	if c := mustCall(t, h, leg); c.Ended() {
		x, _ := h.eng.Get(context.Background(), tr.ID)
		t.Fatalf("the consult leg %s, which rang, was ended (%s) after reads answered 404: %s %+v %+v", leg, c.State, x.State, x.Failure, len(x.Steps))
	}
	if err := h.sim.Answer(target); err != nil {
		t.Fatal(err)
	}
	tr = h.end(t, tr.ID)
	if tr.State != orchestrator.StateCompleted {
		t.Errorf("state %s outcome %+v, want completed", tr.State, tr.Outcome)
	}
}
