package bandwidth_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// transferd answers a callback 503 when what it told is not saved with its
// transfer in time (api.NoteKeeper: the process driving the transfer
// stopped before its save), for Catapult to send it again. Catapult
// documents one more attempt only, on the call's fallbackUrl, and the
// consult calls were made without one: a refused callback was never sent
// again. An attended consult to a busy target whose create answer is lost,
// on a platform that never indexes a failed leg (VanishFailedLegs): only
// its hangup callback names the leg and says busy. Its first delivery is
// refused; the consult's fallbackUrl is its callbackUrl, where the second
// reaches the process, and the transfer reports busy. Before, the leg was
// judged one that never appeared.
func TestARefusedCallbackIsSentAgainToTheFallbackURL(t *testing.T) {
	seen := make(chan struct{})
	var once, refused sync.Once
	o := options{callbacks: true, sim: bwsim.Config{VanishFailedLegs: true},
		refuseCallback: func(body []byte) bool {
			first := false
			if eventOf(body) == "hangup" {
				refused.Do(func() { first = true })
			}
			return first
		},
		onCallback: func(eventType string) {
			if eventType == "hangup" {
				once.Do(func() { close(seen) })
			}
		},
		engine: shortWindows,
		// The consult's create is applied and its answer lost once the
		// leg's hangup callback was handled, sent again.
		wrap: func(_ *bwsim.Sim, api http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost && r.URL.Path == "/users/"+userID+"/calls" {
					defer func() {
						if p := recover(); p != nil {
							select {
							case <-seen:
							case <-time.After(10 * time.Second):
								t.Error("the refused hangup callback was not sent again")
							}
							panic(p)
						}
					}()
				}
				api.ServeHTTP(w, r)
			})
		},
	}
	h := setup(t, o)
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeBusy})
	a, g, _ := h.placeBridged(t)
	h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpCreateCall, Drop: true, Apply: true, Count: 1})
	req := attendedReq(a, g, orchestrator.CompletionAuto)
	req.ConsultTimeout = time.Minute
	tr := h.start(t, req)
	end := h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if end.State != orchestrator.StateFailed || end.Outcome.Reason != orchestrator.ReasonBusy || !end.Outcome.CallerRestored {
		t.Fatalf("ended %s %+v; want failed, busy, the caller restored", end.State, end.Outcome)
	}
	var fallbacks int
	for _, cb := range h.sim.Callbacks() {
		if cb.Fallback {
			fallbacks++
		}
	}
	if fallbacks != 1 {
		t.Errorf("callbacks sent to the fallbackUrl: %d, want 1", fallbacks)
	}
}
