package orchestrator_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
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

// manualLeaseTimer is the lease's timer of an engine (SetLeaseTimer) that
// fires only when the test fires it: as the runtime would once the
// duration it was set for has passed, whatever the engine's clock says.
type manualLeaseTimer struct {
	mu    sync.Mutex
	f     func()
	armed bool
	d     time.Duration // what it was last set for
}

func (m *manualLeaseTimer) start(d time.Duration, f func()) orchestrator.LeaseTimer {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.f, m.armed, m.d = f, true, d
	return m
}

func (m *manualLeaseTimer) Reset(d time.Duration) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	was := m.armed
	m.armed, m.d = true, d
	return was
}

func (m *manualLeaseTimer) Stop() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	was := m.armed
	m.armed = false
	return was
}

// set reports whether the timer is set, and for how long.
func (m *manualLeaseTimer) set() (bool, time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.armed, m.d
}

// fire runs the timer's function if it is set, and reports whether it was.
func (m *manualLeaseTimer) fire() bool {
	m.mu.Lock()
	if !m.armed {
		m.mu.Unlock()
		return false
	}
	m.armed = false
	f := m.f
	m.mu.Unlock()
	f()
	return true
}

// cutCounted is a partitionedStore that counts the heartbeats it refused
// while cut.
type cutCounted struct {
	*partitionedStore
	refusedBeats atomic.Int32
}

func (s *cutCounted) Heartbeat(ctx context.Context, owner, token string, now time.Time, ttl time.Duration, take bool) (bool, error) {
	if s.cut.Load() {
		s.refusedBeats.Add(1)
	}
	return s.partitionedStore.Heartbeat(ctx, owner, token, now, ttl, take)
}

// Found by the engine review (sixty-third pass): the lease's timer, set
// for the time left of the heartbeat when it was renewed, cancels the
// context of the requests in flight once the heartbeat has ended. Fired
// while the engine's clock still said it ran (a reading of the server's
// clock that moved the engine's time back since), it did nothing and was
// not set again: with the store cut off, no renewal set it again either,
// and a request in flight (an adapter's retries) ran until the step's
// own timeout, past the moment other replicas may claim the transfer.
// It is now set again for what is left. (Made deterministic in the
// sixty-fourth pass: a manual clock, and a lease timer the test fires.)
func TestTheLeasesTimerFiredEarlyIsSetAgain(t *testing.T) {
	ctx := context.Background()
	const ttl = 400 * time.Millisecond // a heartbeat runs ttl/2 past its renewal
	clock := newManualClock()
	store := &cutCounted{partitionedStore: &partitionedStore{Store: memory.New()}}
	prov := &holdUntilDone{Fake: orchestratortest.NewFake("fake"), started: make(chan struct{}), ended: make(chan error, 1)}
	e := testEngine(t, orchestrator.Config{Owner: "a", LeaseTTL: ttl, StepTimeout: time.Hour,
		VisibilityWindow: 50 * time.Millisecond, PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond,
		Clock: clock.Now}, store, prov, nil)
	timer := &manualLeaseTimer{}
	orchestrator.SetLeaseTimer(e, timer.start)
	t.Cleanup(func() { // before the Shutdown: the heartbeat is renewed again, and the recovery's time passes
		store.cut.Store(false)
		clock.Run()
	})
	if err := e.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Start(ctx, request("fake", "1000"), orchestrator.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	<-prov.started
	store.cut.Store(true) // no heartbeat from now on
	// Once one heartbeat was refused, none that began before the cut can
	// still renew the lease (they run one after another): the timer is
	// the test's alone.
	eventually(t, "a heartbeat refused", func() bool { return store.refusedBeats.Load() > 0 })
	if set, _ := timer.set(); !set {
		t.Fatal("the lease's timer is not set while the heartbeat runs")
	}
	// The timer fires while the engine's clock says a quarter of the
	// heartbeat is left: its time has passed on the durations timers run
	// on, not on the engine's clock (moved back by a new reading of the
	// server's).
	clock.Advance(ttl/2 - ttl/8)
	timer.fire()
	select {
	case err := <-prov.ended:
		t.Fatalf("the hold ended (%v) while the heartbeat still ran on the engine's clock", err)
	default:
	}
	set, d := timer.set()
	if !set {
		t.Fatal("the lease's timer, fired while the heartbeat still ran on the engine's clock, was not set again: nothing cancels the hold once it ends")
	}
	if d != ttl/8 {
		t.Errorf("the lease's timer was set again for %s, want what is left of the heartbeat, %s", d, ttl/8)
	}
	clock.Advance(d)
	timer.fire()
	select {
	case err := <-prov.ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the hold ended with %v, want cancelled by the lease", err)
		}
	case <-time.After(10 * time.Second): // a bound on a hang, not a measure: the cancel is made by fire
		t.Fatal("the hold was not cancelled once the heartbeat had ended on the engine's clock")
	}
}
