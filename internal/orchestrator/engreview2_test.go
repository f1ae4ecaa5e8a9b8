package orchestrator_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// manualClock is an engine clock (Config.Clock) that moves only when the
// test moves it.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func newManualClock() *manualClock { return &manualClock{now: time.Now()} }

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Found by the engine review (sixty-first pass): the consult's visibility
// window was counted from Sent.Dial, the moment the dial was decided,
// before its intent was saved and its request sent. A dial whose request
// took longer than the window to be answered (a slow or retried create,
// a slow save of its intent) left the provider no time at all to list the
// call it had just created: the first reading after the dial was
// answered, taken before the PBX listed the new call, failed the
// transfer consult_failed, and the recovery hung up the consult the
// target was being rung on. Unknown (not listed yet) was taken for gone.
// The window runs from when the dial's request was answered (its step's
// end), as every other action's does (stepSettledAt).
func TestTheConsultsVisibilityWindowRunsFromTheDialsAnswer(t *testing.T) {
	const window = 50 * time.Millisecond
	clock := newManualClock()
	cfg := orchestrator.Config{
		// The watcher reads when a transfer asks it to, never on its own.
		PollInterval: time.Hour, PollMaxInterval: time.Hour,
		StepTimeout: 5 * time.Second, VerifyTimeout: time.Second,
		VisibilityWindow: window, TombstoneTTL: time.Second, Clock: clock.Now,
	}
	f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings)
	var dialled atomic.Bool
	f.Before(orchestratortest.MethodDial, func(r orchestratortest.Record) {
		// The dial's request takes a window and a bit to be answered,
		// and the PBX lists the new call only a moment after it answered:
		// the first reading after it does not show it yet.
		clock.Advance(window + time.Millisecond)
		f.HideConsult(r.TransferID, 1)
		dialled.Store(true)
	})
	var moved atomic.Bool
	f.Before(orchestratortest.MethodObserve, func(r orchestratortest.Record) {
		// The first reading after the dial was stamped before this: the
		// clock moves on past the window, so that the next reading, which
		// lists the consult, can judge it.
		if dialled.Load() && !moved.Swap(true) {
			clock.Advance(window + time.Millisecond)
		}
	})
	h := newHarness(t, cfg, f)
	// Run before the harness's shutdown: time passes, so that what is
	// left can end.
	t.Cleanup(func() { clock.Advance(time.Hour) })
	tr := h.start(t, request("fake", "1000"))
	end := h.store.waitSaved(t, tr, func(x *orchestrator.Transfer) bool { return x.Failure != nil || x.Seen.Consult })
	if end.Failure != nil {
		t.Errorf("the transfer gave up (%s: %s) on a reading taken a moment after the dial was answered, while its consult rang",
			end.Failure.Reason, end.Failure.Detail)
	}
	if c, _ := f.State(tr); c.Consult != orchestrator.ConsultRinging {
		t.Errorf("the provider shows the consult %v, want ringing (not hung up)", c.Consult)
	}
}
