package orchestrator_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// Found by the review of what transferd reports (sixty-second pass): the
// caller's time on hold (transferd_caller_hold_duration_seconds) ran from
// Sent.Hold, which each hold attempt stamps anew. A hold whose answer was
// lost (it applied: the caller was held) and that was sent again after
// its back-off, or again by the process that resumed a transfer a stopped
// one left in holding, measured the caller's time on hold from the last
// attempt: the minute the caller had been held already was not in it. It
// runs from the first hold step's start, saved with the record.
func TestTheTimeOnHoldRunsFromTheFirstHold(t *testing.T) {
	const gap = time.Minute
	clock := newManualClock()
	cfg := testConfig()
	// The transient failure is tried again past the gap.
	cfg.StepTimeout, cfg.Clock = 10*time.Minute, clock.Now
	f := orchestratortest.NewFake("fake")
	f.LoseResponse(hold, fakeErr(hold, orchestrator.KindProviderUnavailable), 1)
	var holds atomic.Int32
	f.Before(hold, func(orchestratortest.Record) {
		if holds.Add(1) == 1 {
			// The first hold takes effect and its answer is lost a minute
			// later; from then on time passes as it does.
			clock.Advance(gap)
			clock.Run()
		}
	})
	h := newHarness(t, cfg, f)
	t.Cleanup(clock.Run)
	tr := h.done(t, h.start(t, request("fake", "1000")))
	if tr.State != orchestrator.StateCompleted || holds.Load() < 2 {
		t.Fatalf("state %s after %d holds: set-up wants a hold sent again, then completed", tr.State, holds.Load())
	}
	s := series(t, h.reg, "transferd_caller_hold_duration_seconds", map[string]string{"provider": "fake"}).GetHistogram()
	if s.GetSampleCount() != 1 || s.GetSampleSum() < gap.Seconds() {
		t.Errorf("time on hold observed %d times, %.3f s in all; want once, at least %s: the caller was held from the first hold",
			s.GetSampleCount(), s.GetSampleSum(), gap)
	}
}
