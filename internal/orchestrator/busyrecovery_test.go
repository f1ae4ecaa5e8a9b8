package orchestrator_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// Found by the demo-mode review: a Bandwidth attended consult that is busy
// or rejected is shown ended at once, and the caller was re-bridged with
// the agent within milliseconds, but the transfer stayed recovering and
// reported failed two visibility windows after the hold (10 s with the
// default 5 s window), where one is what the recovery waits for: a reading
// started once a late hold can no longer land (settledAt: a window after
// the hold's step ended). The first look at the caller back came from a
// reading taken a moment after the unhold, too early; the recovery then
// slept a whole window, since readings that show nothing new do not wake
// a transfer, and the wake for the unhold's own settling (a moment after
// settledAt) found that reading still the latest (polls come every
// PollInterval). A NetSapiens target that rejects is dropped from the
// listing instead, so its transfer fails a window after the dial, readings
// settled already, and was not late.
//
// Here polling never fires: the only readings are those the transfer asks
// for and one the test pokes right after the unhold, which shows the caller
// back before readings settle. The transfer must end on a reading it asks
// for at settledAt: failed, the caller restored, verified, and not before a
// window after the hold (a late hold could still land). It used to wait
// for a reading nothing asked for, and would have ended only at the verify
// timeout (a minute here), unverified: the test's wait, far shorter than
// that and far longer than a window, fails it without a timing threshold.
func TestBusyOrRejectedConsultRecoversOneWindowAfterTheHold(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target orchestratortest.Target
		reason orchestrator.Reason
	}{
		{"busy", orchestratortest.TargetBusy, orchestrator.ReasonBusy},
		{"rejected", orchestratortest.TargetRejects, orchestrator.ReasonRejected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const window = 400 * time.Millisecond
			cfg := testConfig()
			cfg.PollInterval, cfg.PollMaxInterval = time.Hour, time.Hour
			cfg.VisibilityWindow, cfg.VerifyTimeout = window, time.Minute
			h := newHarness(t, cfg)
			h.f.SetTarget(tc.target)
			id := h.start(t, request("fake", "1000"))

			// The caller is back (the Fake applies the unhold as it is
			// sent); a reading now shows it, well before readings settle.
			eventually(t, "the unhold", func() bool {
				return slices.Contains(h.f.ActionsFor(id), orchestratortest.MethodUnhold)
			})
			h.e.PokeView(h.f, h.f.WatchKey(nil))

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			end, err := h.e.Wait(ctx, id, func(*orchestrator.Transfer) bool { return false })
			if err != nil {
				t.Fatal(err)
			}
			if !end.State.Terminal() {
				t.Fatalf("%s 20 s after the start (outcome %+v): the caller was back within milliseconds, "+
					"and a reading started a window after the hold could say so; nothing asked for one", end.State, end.Outcome)
			}
			o := end.Outcome
			if end.State != orchestrator.StateFailed || o.Reason != tc.reason || !o.CallerRestored || !o.Verified {
				t.Fatalf("%s %+v; want failed, %s, the caller restored, verified", end.State, o, tc.reason)
			}
			if c, _ := h.f.State(id); c.Caller != orchestrator.CallerConnected {
				t.Errorf("the Fake shows the caller %v, want connected", c.Caller)
			}
			var hold *orchestrator.Step
			for i := range end.Steps {
				if end.Steps[i].Name == orchestrator.StepHold {
					hold = &end.Steps[i]
				}
			}
			if hold == nil {
				t.Fatalf("no hold step: %+v", end.Steps)
			}
			settled := hold.EndedAt.Add(window)
			if end.UpdatedAt.Before(settled) {
				t.Errorf("ended %v after the hold, before readings settled (%v): a late hold could still land",
					end.UpdatedAt.Sub(hold.EndedAt), window)
			}
		})
	}
}
