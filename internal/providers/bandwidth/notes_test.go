package bandwidth_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// An attended consult to a busy target whose create answer is lost, on a
// platform that never indexes a failed leg (VanishFailedLegs): only its
// hangup callback names the leg and says busy. The process that heard it
// stops right after saving the dial's result, and another process resumes
// the transfer, the callback's notes gone with the first process's memory.
// It found no leg, judged it by the visibility window as a consult that
// never appeared and reported consult_failed, where the target was busy.
// The notes are now saved with the record and read back by the resumer.
func TestCallbackNotesOutliveTheProcessThatHeardThem(t *testing.T) {
	seen := make(chan struct{})
	var once sync.Once
	release, stopped := make(chan struct{}), make(chan struct{})
	var stop sync.Once
	o := options{callbacks: true, sim: bwsim.Config{VanishFailedLegs: true},
		onCallback: func(eventType string) {
			if eventType == "hangup" {
				once.Do(func() { close(seen) })
			}
		},
		engine: func(c *orchestrator.Config) {
			shortWindows(c)
			c.Owner = "replica-1"
			c.CrashPoint = func(_ *orchestrator.Transfer, p string) {
				if p == "dial:result" {
					stop.Do(func() { close(stopped) })
					<-release // stopped from here on
				}
			}
		},
		// The consult's create is applied and its answer lost once the
		// leg's hangup callback was handled: the callback is heard before
		// the dial's result is saved, and never by the resumer.
		wrap: func(_ *bwsim.Sim, api http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost && r.URL.Path == "/users/"+userID+"/calls" {
					defer func() {
						if p := recover(); p != nil {
							select {
							case <-seen:
							case <-time.After(10 * time.Second):
								t.Error("no hangup callback")
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
	t.Cleanup(func() { close(release) })
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeBusy})
	a, g, _ := h.placeBridged(t)
	h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpCreateCall, Drop: true, Apply: true, Count: 1})
	req := attendedReq(a, g, orchestrator.CompletionAuto)
	req.ConsultTimeout = time.Minute
	tr := h.start(t, req)
	<-stopped

	h.restart(t, bandwidth.Config{PublicURL: h.public})
	end := h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if end.State != orchestrator.StateFailed || end.Outcome.Reason != orchestrator.ReasonBusy || !end.Outcome.CallerRestored {
		t.Fatalf("ended %s %+v; want failed, busy, the caller restored", end.State, end.Outcome)
	}
	h.idle(t)
	if c := mustCall(t, h, a.ID); c.Ended() || !h.sim.Connected(a.ID, g.ID) {
		t.Errorf("the caller's call is %s, with the agent %v", c.State, h.sim.Connected(a.ID, g.ID))
	}
}
