package orchestrator_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// manualClock is an engine clock (Config.Clock) that moves only when the
// test moves it, until Run lets it go on with real time.
type manualClock struct {
	mu      sync.Mutex
	now     time.Time
	running time.Time // when Run was called; zero before
}

func newManualClock() *manualClock { return &manualClock{now: time.Now()} }

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running.IsZero() {
		return c.now.Add(time.Since(c.running))
	}
	return c.now
}

// Run lets the clock go on with real time from now.
func (c *manualClock) Run() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.running = time.Now()
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
	t.Cleanup(clock.Run)
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

// failingUpdates is a memory store whose saves (Update) fail while
// failing is set, as a full disk's do.
type failingUpdates struct {
	*memory.Store
	failing atomic.Bool
}

func (s *failingUpdates) Update(ctx context.Context, t *orchestrator.Transfer) error {
	if s.failing.Load() {
		return errors.New("failingUpdates: no space left on device")
	}
	return s.Store.Update(ctx, t)
}

// Found by the engine review (sixty-first pass): a client's complete,
// accepted, was dropped by the process that resumed the transfer. The
// owner saw the target answer while its store refused saves, and
// published its working record (answered) all the same; the client's
// complete, checked against that record, was accepted and put at the
// stored version, which the failed saves had not moved. The process died
// before it could save anything. The next one resumed the last saved
// record, in which the target had not answered, took the pending complete
// for one the engine never accepts ("the target has not answered"), and
// cleared it; a reading then showed the target answered, and the transfer
// waited for a complete that had come already, until its consult
// deadline: the target hung up on, the outcome timeout. A complete found
// pending is the client's accepted request: it waits for the answer to
// show, and is honoured then.
func TestACompleteAcceptedOnAnAnswerNotSavedIsHonouredAfterARestart(t *testing.T) {
	ctx := context.Background()
	st := &failingUpdates{Store: memory.New()}
	f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings)
	release, hit := make(chan struct{}), make(chan struct{})
	var once sync.Once
	first := replica(t, "x", st, f, func(_ *orchestrator.Transfer, p string) {
		if p == "state:completing" {
			once.Do(func() { close(hit) })
			<-release // the process is dead from here on
		}
	})
	t.Cleanup(func() { close(release) }) // before first shuts down
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	r.ConsultTimeout = 3 * time.Second
	tr, err := first.Start(ctx, r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, first, tr.ID, inState(orchestrator.StateConsulting))
	// The store refuses saves from here on; the target answers.
	st.failing.Store(true)
	f.Answer(tr.ID)
	// The client completes once the transfer shows the answer; refused
	// ("the target has not answered yet") until then.
	eventually(t, "the complete accepted", func() bool {
		_, err := first.Complete(ctx, tr.ID)
		return err == nil
	})
	<-hit // it decided to join, could not save that, and died
	st.failing.Store(false)

	second := replica(t, "x", st, f, nil)
	if err := second.Open(ctx); err != nil {
		t.Fatal(err)
	}
	end := waitFor(t, second, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if end.State != orchestrator.StateCompleted {
		t.Errorf("%s %+v; want completed: the client's complete was accepted", end.State, end.Outcome)
	}
	if c, _ := f.State(tr.ID); c.Caller != orchestrator.CallerTransferred {
		t.Errorf("the provider shows the caller %v, want with the target", c.Caller)
	}
}
