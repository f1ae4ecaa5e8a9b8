package orchestrator_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// slowIntent is a memory store whose save of the first intent of a step
// named step takes long: the engine's clock moves on by slow while it
// saves (a database under load, a commit waiting on a lock).
type slowIntent struct {
	*memory.Store
	step  string
	slow  time.Duration
	clock *manualClock
	once  sync.Once
}

func (s *slowIntent) Update(ctx context.Context, t *orchestrator.Transfer) error {
	if n := len(t.Steps); n > 0 && t.Steps[n-1].Name == s.step && t.Steps[n-1].Status == orchestrator.StepStarted {
		s.once.Do(func() { s.clock.Advance(s.slow) })
	}
	return s.Store.Update(ctx, t)
}

// boundedSends is a Fake that records every write request sent later than
// its step's start plus the step timeout, on the engine's clock: later
// than a process resuming the transfer after this one stopped takes as
// the last moment a request of the step went out (Transfer.StepEnd).
type boundedSends struct {
	*orchestratortest.Fake
	clock *manualClock
	step  time.Duration
	mu    sync.Mutex
	late  []string
}

func (b *boundedSends) check(method string, t *orchestrator.Transfer) {
	s := t.Steps[len(t.Steps)-1]
	if end := s.StartedAt.Add(b.step); !b.clock.Now().Before(end) {
		b.mu.Lock()
		b.late = append(b.late, method)
		b.mu.Unlock()
	}
}

func (b *boundedSends) lateSends() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.late)
}

func (b *boundedSends) Hold(ctx context.Context, t *orchestrator.Transfer) error {
	b.check(hold, t)
	return b.Fake.Hold(ctx, t)
}

func (b *boundedSends) Dial(ctx context.Context, t *orchestrator.Transfer) (orchestrator.LegRef, error) {
	b.check(dial, t)
	return b.Fake.Dial(ctx, t)
}

func (b *boundedSends) Complete(ctx context.Context, t *orchestrator.Transfer) error {
	b.check(complete, t)
	return b.Fake.Complete(ctx, t)
}

// Found by the engine review (sixty-third pass): a step's requests were
// given StepTimeout from the moment its intent had been saved, while its
// record (StartedAt, saved with the intent) says it began before that
// save. A process that resumes a transfer whose owner stopped mid-step
// bounds the step by StartedAt plus the step timeout (Transfer.StepEnd)
// and rules a late hold, dial or join out on readings a visibility window
// after that; a slow save of the intent let the request go out as much
// later, to be applied after those readings (a hold that lands after the
// recovery's unhold holds the caller again; a Bandwidth dial that moves
// the agent after the caller was judged back leaves the caller alone). A
// step's requests now go out within StepTimeout of its start, and a step
// whose intent took longer than that to save is not sent (tried again,
// as a step whose intent could not be saved).
func TestAStepsRequestsGoOutWithinTheStepTimeoutOfItsStart(t *testing.T) {
	for _, step := range []string{orchestrator.StepHold, orchestrator.StepDial, orchestrator.StepTransfer} {
		t.Run(step, func(t *testing.T) {
			const stepTimeout = time.Minute
			clock := newManualClock()
			clock.Run() // a step tried again waits its back-off
			f := orchestratortest.NewFake("fake")
			p := &boundedSends{Fake: f, clock: clock, step: stepTimeout}
			st := &slowIntent{Store: memory.New(), step: step, slow: stepTimeout + time.Second, clock: clock}
			e := testEngine(t, orchestrator.Config{
				PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
				StepTimeout: stepTimeout, VerifyTimeout: time.Second, VisibilityWindow: 50 * time.Millisecond,
				TombstoneTTL: 100 * time.Millisecond, Clock: clock.Now,
			}, st, p, nil)
			tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			end := waitFor(t, e, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
			if late := p.lateSends(); len(late) > 0 {
				t.Errorf("requests %q went out later than their step's start plus the step timeout", late)
			}
			if end.State != orchestrator.StateCompleted {
				t.Errorf("%s %+v; want completed (the step tried again)", end.State, end.Outcome)
			}
		})
	}
}

// The same bound at the moment of writing: a step's send gate, which the
// provider clients check right before each write, shuts at the step's
// start plus the step timeout, on the engine's clock. A process stopped
// in the middle of a step (an adapter's retries) past that moment, whose
// heartbeat still runs when it wakes (a lease longer than the step
// timeout, or one process and no lease at all), wrote its next request:
// the context's deadline and the write run in no set order on waking.
func TestAStepsSendGateShutsAtTheStepTimeout(t *testing.T) {
	const stepTimeout = time.Minute
	clock := newManualClock()
	prov := &gateOfHold{Fake: orchestratortest.NewFake("fake"), gate: make(chan func() bool, 1), release: make(chan struct{})}
	e := testEngine(t, orchestrator.Config{
		PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		StepTimeout: stepTimeout, VerifyTimeout: time.Second, VisibilityWindow: 50 * time.Millisecond,
		TombstoneTTL: 100 * time.Millisecond, Clock: clock.Now,
	}, memory.New(), prov, nil)
	t.Cleanup(clock.Run) // before the engine's shutdown: the transfer ends as time passes
	if _, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	gate := <-prov.gate
	defer close(prov.release)
	if gate == nil {
		t.Fatal("the hold's context carries no send gate")
	}
	if !gate() {
		t.Fatal("the send gate is shut within the step timeout")
	}
	clock.Advance(stepTimeout)
	if gate() {
		t.Error("the send gate is open a step timeout after the step began: a request written now goes out later than a process resuming the transfer takes it to have")
	}
}

// slowClock is a wall clock that runs at half the speed of real time from
// its start: the engine's clock falling behind the durations its timers
// run on, as a new reading of the database server's clock moves it back.
type slowClock struct{ start time.Time }

func (c slowClock) Now() time.Time { return c.start.Add(time.Since(c.start) / 2) }

// Found by the engine review (sixty-third pass): the lease's timer, set
// for the time left of the heartbeat when it was renewed, cancels the
// context of the requests in flight once the heartbeat has ended. Fired
// while the engine's clock still said it ran (a reading of the server's
// clock that moved the engine's time back since), it did nothing and was
// not set again: with the store cut off, no renewal set it again either,
// and a request in flight (an adapter's retries) ran until the step's
// own timeout, past the moment other replicas may claim the transfer.
// It is now set again for what is left.
func TestTheLeasesTimerFiredEarlyIsSetAgain(t *testing.T) {
	ctx := context.Background()
	store := &partitionedStore{Store: memory.New()}
	prov := &holdUntilDone{Fake: orchestratortest.NewFake("fake"), started: make(chan struct{}), ended: make(chan error, 1)}
	e := testEngine(t, orchestrator.Config{Owner: "a", LeaseTTL: 400 * time.Millisecond, StepTimeout: time.Minute,
		VisibilityWindow: 50 * time.Millisecond, PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond,
		Clock: slowClock{start: time.Now()}.Now}, store, prov, nil)
	t.Cleanup(func() { store.cut.Store(false) }) // before the Shutdown
	if err := e.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Start(ctx, request("fake", "1000"), orchestrator.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	<-prov.started
	store.cut.Store(true) // no heartbeat from now on
	select {
	case err := <-prov.ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the hold ended with %v, want cancelled by the lease", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the hold was not cancelled once the heartbeat had ended on the engine's clock")
	}
}
