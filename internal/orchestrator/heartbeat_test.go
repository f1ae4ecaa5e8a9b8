package orchestrator_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// replica builds an engine named owner on a shared store and provider.
func replica(t *testing.T, owner string, store orchestrator.Store, f *orchestratortest.Fake, crash func(*orchestrator.Transfer, string)) *orchestrator.Engine {
	t.Helper()
	e, err := orchestrator.New(orchestrator.Config{
		Owner: owner, LeaseTTL: 150 * time.Millisecond,
		PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond,
		VerifyTimeout: 5 * time.Second,
		CrashPoint: crash,
	}, store, []orchestrator.Provider{f}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
	})
	return e
}

func waitFor(t *testing.T, e *orchestrator.Engine, id string, cond func(*orchestrator.Transfer) bool) *orchestrator.Transfer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr, err := e.Wait(ctx, id, cond)
	if err != nil {
		t.Fatal(err)
	}
	if !cond(tr) && !tr.State.Terminal() {
		t.Fatalf("condition never held; transfer is %s", tr.State)
	}
	return tr
}

// freeze simulates a replica that stops (a killed pod): once armed, its
// runner blocks at the next boundary until the test ends, and it never
// renews a lease (it was never Opened).
type freeze struct {
	mu      sync.Mutex
	armed   bool
	release chan struct{}
}

func (f *freeze) point(_ *orchestrator.Transfer, _ string) {
	f.mu.Lock()
	armed := f.armed
	f.mu.Unlock()
	if armed {
		<-f.release
	}
}

func (f *freeze) arm() {
	f.mu.Lock()
	f.armed = true
	f.mu.Unlock()
}

func TestReplicaTakesOverExpiredLeaseAndGetsSignals(t *testing.T) {
	store := memory.New()
	fake := orchestratortest.NewFake("fake")
	dead := &freeze{release: make(chan struct{})}
	a := replica(t, "a", store, fake, dead.point) // not opened: never renews
	b := replica(t, "b", store, fake, nil)
	// Cleanups run last-registered first: release the frozen runner
	// before the engines shut down.
	t.Cleanup(func() { close(dead.release) })

	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	tr, err := a.Start(context.Background(), r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, a, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	dead.arm()
	if err := b.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr = waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "b" })
	if tr.State != orchestrator.StateConsulting {
		t.Fatalf("after takeover the transfer is %s", tr.State)
	}
	// The client's complete lands on the dead replica's API; the owner
	// acts on it.
	if _, err := a.Complete(context.Background(), tr.ID); err != nil {
		t.Fatal(err)
	}
	tr = waitFor(t, b, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if tr.State != orchestrator.StateCompleted || tr.Outcome.Reason != orchestrator.ReasonTransferred {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	if c, _ := fake.State(tr.ID); c.Caller != orchestrator.CallerTransferred {
		t.Errorf("provider shows caller %v", c.Caller)
	}
	var resumed bool
	for _, s := range tr.Steps {
		resumed = resumed || s.Name == orchestrator.StepReconcile
	}
	if !resumed {
		t.Error("the new owner did not reconcile before resuming")
	}
}

func TestRestartedReplicaReclaimsItsTransfers(t *testing.T) {
	for _, point := range []string{"hold:intent", "hold:effect", "dial:intent", "dial:effect", "dial:result",
		"state:consulting", "transfer:intent", "transfer:effect", "verify:intent"} {
		t.Run(point, func(t *testing.T) {
			store := memory.New()
			fake := orchestratortest.NewFake("fake")
			release := make(chan struct{})
			hit := make(chan struct{})
			var once sync.Once
			crash := func(_ *orchestrator.Transfer, p string) {
				if p == point {
					once.Do(func() { close(hit) })
					<-release // the process is "dead" from here on
				}
			}
			first := replica(t, "x", store, fake, crash)
			t.Cleanup(func() { close(release) }) // before first shuts down
			tr, err := first.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			<-hit
			// The same replica restarts: it resumes at once, without
			// waiting for the lease to expire.
			second := replica(t, "x", store, fake, nil)
			if err := second.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			tr = waitFor(t, second, tr.ID, func(*orchestrator.Transfer) bool { return false })
			c, _ := fake.State(tr.ID)
			switch tr.State {
			case orchestrator.StateCompleted:
				if c.Caller != orchestrator.CallerTransferred {
					t.Fatalf("completed but the provider shows caller %v", c.Caller)
				}
			case orchestrator.StateFailed:
				if !tr.Outcome.CallerRestored || c.Caller != orchestrator.CallerConnected {
					t.Fatalf("failed without restoring the caller: %+v, provider %v", tr.Outcome, c.Caller)
				}
			default:
				t.Fatalf("ended %s", tr.State)
			}
			if got := countActions(fake.ActionsFor(tr.ID), orchestratortest.MethodDial); got > 2 {
				t.Errorf("dialled %d times", got)
			}
		})
	}
}

func countActions(actions []string, name string) int {
	n := 0
	for _, a := range actions {
		if a == name {
			n++
		}
	}
	return n
}

// TestSavesExtendTheLease: a save proves the owner alive, so it must not
// write back the lease it read when the transfer started. Here the owner
// has no renew loop at all; only its saves keep the lease.
func TestSavesExtendTheLease(t *testing.T) {
	store := memory.New()
	fake := orchestratortest.NewFake("fake")
	a := replica(t, "a", store, fake, nil) // never opened: no renewals
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	tr, err := a.Start(context.Background(), r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first := tr.LeaseExpires
	waitFor(t, a, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	gate := fake.Block(orchestratortest.MethodComplete)
	// Let the first lease run out (a clock-based condition: nothing to
	// wait on but the clock).
	<-time.After(time.Until(first) + 10*time.Millisecond)
	if _, err := a.Complete(context.Background(), tr.ID); err != nil {
		t.Fatal(err)
	}
	<-gate.Entered() // the runner saved "completing" and is joining
	claimed, err := store.Acquire(context.Background(), "b", time.Now(), time.Second, 10)
	if err != nil {
		t.Fatal(err)
	}
	gate.Release()
	if len(claimed) != 0 {
		t.Fatalf("a peer took over a transfer its owner had just saved (lease %v)", claimed[0].LeaseExpires)
	}
	if tr = waitFor(t, a, tr.ID, func(*orchestrator.Transfer) bool { return false }); tr.State != orchestrator.StateCompleted {
		t.Fatalf("state %s", tr.State)
	}
}
