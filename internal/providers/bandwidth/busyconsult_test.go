package bandwidth_test

import (
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// Found by the demo-mode review: an attended consult that is busy or
// rejected ends at once, shown ended, and the recovery re-bridges caller
// and agent within milliseconds; the transfer then stayed recovering and
// reported failed two visibility windows after the hold, where one is what
// it waits for (a reading started once a late hold can no longer land).
// Polled as in demo mode (PollInterval a twenty-fifth of the window), the
// wake a window after the hold found the latest reading taken just before,
// and nothing asked for the next one: the recovery slept a window more.
// This test plays it against bwsim and checks the outcome and that it
// waited for readings to settle; it logs how long it took, which no test
// here bounds (a slow machine is not a failure). The engine's test,
// TestBusyOrRejectedConsultRecoversOneWindowAfterTheHold, fails without
// the fix without a timing threshold.
func TestAttendedBusyOrRejectedConsultReportedOneWindowAfterTheHold(t *testing.T) {
	for _, tc := range []struct {
		mode   string
		reason orchestrator.Reason
	}{
		{bwsim.ModeBusy, orchestrator.ReasonBusy},
		{bwsim.ModeReject, orchestrator.ReasonRejected},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			const window = time.Second
			h := setup(t, options{engine: func(c *orchestrator.Config) {
				c.VisibilityWindow = window
				c.PollInterval, c.PollMaxInterval = window/25, 2*window/5
			}})
			h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: tc.mode})
			a, g, b1 := h.placeBridged(t)
			tr := h.start(t, attendedReq(a, g, orchestrator.CompletionManual))
			end := h.end(t, tr.ID)
			o := end.Outcome
			if end.State != orchestrator.StateFailed || o.Reason != tc.reason || !o.CallerRestored || !o.Verified {
				t.Fatalf("%s %+v; want failed, %s, the caller restored, verified", end.State, o, tc.reason)
			}
			if b, ok := h.sim.Bridge(b1.ID); !ok || !b.BridgeAudio || len(b.CallIDs) != 2 {
				t.Errorf("the caller's bridge is %+v, want caller and agent with audio on", b)
			}
			var holdEnd, unholdEnd time.Time
			for _, s := range end.Steps {
				switch s.Name {
				case orchestrator.StepHold:
					holdEnd = s.EndedAt
				case orchestrator.StepUnhold:
					unholdEnd = s.EndedAt
				}
			}
			if holdEnd.IsZero() || unholdEnd.IsZero() {
				t.Fatalf("steps %+v: want a hold and an unhold", end.Steps)
			}
			took := end.UpdatedAt.Sub(holdEnd)
			t.Logf("unhold %v after the hold, failed %v after it", unholdEnd.Sub(holdEnd), took)
			if took < window {
				t.Errorf("reported %v after the hold, before readings settled (%v): a late hold could still land", took, window)
			}
		})
	}
}
