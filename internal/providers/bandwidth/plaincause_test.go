package bandwidth_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// An announced transfer's leg rings out while it cannot be read yet
// (bwsim ListingDelay with UnlistedNotFound); the platform hangs it up
// with ORIGINATOR_CANCEL (TimeoutHangupCause, a guess), its timeout
// callback is lost, and it ends the caller's call as the transfer failed
// (TransferFailure "hangup"). The hangup callback's plain end, taken
// alone while the leg could not be read, blamed the caller: caller_hung_up,
// verified. A plain end is what a caller's hang-up gives the leg too; the
// history, read once the leg can be read, says no_answer. So a plain end
// told for a leg not read yet is no cause: within the visibility window
// the leg is waited for (and tells), past it the outcome says it cannot
// be verified.
func TestAPlainEndToldOfALegNotReadableYetIsNotTheCallerHangingUp(t *testing.T) {
	for _, readable := range []bool{true, false} {
		name := "readable within the window"
		if !readable {
			name = "never readable"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			seen := make(chan struct{})
			var once sync.Once
			engine := func(c *orchestrator.Config) { c.TombstoneTTL = 6 * time.Second }
			if !readable {
				engine = func(c *orchestrator.Config) {
					c.VisibilityWindow, c.VerifyTimeout, c.TombstoneTTL = time.Second, time.Second, 2*time.Second
				}
			}
			h := setup(t, options{callbacks: true, engine: engine,
				sim:          bwsim.Config{TimeoutHangupCause: bwsim.CauseOriginatorCancel, ListingDelay: time.Hour, UnlistedNotFound: true},
				dropCallback: func(body []byte) bool { return bytes.Contains(body, []byte(`"eventType":"timeout"`)) },
				onCallback: func(eventType string) {
					if eventType == "hangup" {
						once.Do(func() { close(seen) })
					}
				}})
			h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
			a := h.placeCall(t)
			req := announcedReq(a, target)
			req.ConsultTimeout = time.Minute
			tr := h.wait(t, h.start(t, req).ID, func(x *orchestrator.Transfer) bool { return x.Legs.Consult.CallID != "" })
			if err := h.sim.Timeout(tr.Legs.Consult.CallID); err != nil {
				t.Fatal(err)
			}
			select {
			case <-seen:
			case <-time.After(10 * time.Second):
				t.Fatal("no hangup callback")
			}
			if readable {
				h.sim.Settle()
			}
			tr = h.end(t, tr.ID)
			tr = h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
			h.idle(t)
			if !mustCall(t, h, a.ID).Ended() {
				t.Fatalf("setup: the caller's call should have ended: %+v", h.sim.Calls())
			}
			o := tr.Outcome
			if readable {
				if tr.State != orchestrator.StateFailed || o.Reason != orchestrator.ReasonNoAnswer || !o.Verified {
					t.Fatalf("the leg, read within the window, says no answer: state %s outcome %+v", tr.State, o)
				}
				return
			}
			if tr.State != orchestrator.StateFailed || o.Reason == orchestrator.ReasonCallerHungUp || o.Verified || o.CallerRestored ||
				!strings.Contains(o.Detail, "cannot be verified") {
				t.Fatalf("nothing showed why the caller's call ended: state %s outcome %+v, want failed, unverified and final, not caller_hung_up", tr.State, o)
			}
			if n := strings.Count(o.Detail, "has not been readable"); n != 1 {
				t.Errorf("the detail says %d times why: %s", n, o.Detail)
			}
		})
	}
}
