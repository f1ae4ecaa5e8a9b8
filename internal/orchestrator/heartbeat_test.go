package orchestrator_test

import (
	"context"
	"fmt"
	"slices"
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
		VerifyTimeout: 200 * time.Millisecond, VisibilityWindow: 50 * time.Millisecond,
		// A process that died mid-step may have sent its request until
		// StepTimeout after the step began: recovery waits that long.
		StepTimeout: time.Second,
		CrashPoint:  crash,
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
// worker blocks at the next step boundary until released.
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

// pauseProvider makes every call to f wait until the returned func runs.
func pauseProvider(f *orchestratortest.Fake) (release func()) {
	var gates []*orchestratortest.Gate
	for _, m := range []string{orchestratortest.MethodLocate, orchestratortest.MethodHold, orchestratortest.MethodUnhold,
		orchestratortest.MethodDial, orchestratortest.MethodObserve, orchestratortest.MethodComplete, orchestratortest.MethodHangupConsult} {
		gates = append(gates, f.Block(m))
	}
	return func() {
		for _, g := range gates {
			g.Release()
		}
	}
}

// A replica whose heartbeat expired has its open transfers claimed by
// another, which then also receives the signals clients send through any
// replica.
func TestExpiredHeartbeatTransfersAreClaimedAndGetSignals(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	fake := orchestratortest.NewFake("fake")
	dead := &freeze{release: make(chan struct{})}
	// a is never Opened: its heartbeat is written below by hand, so the
	// test decides when it expires.
	a := replica(t, "a", store, fake, dead.point)
	b := replica(t, "b", store, fake, nil)
	// Cleanups run last-registered first: release the frozen worker
	// before the engines shut down.
	t.Cleanup(func() { close(dead.release) })
	if _, err := store.Heartbeat(ctx, "a", time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}

	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	tr, err := a.Start(ctx, r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, a, tr.ID, answered)
	dead.arm()
	if err := b.Open(ctx); err != nil {
		t.Fatal(err)
	}
	// a's heartbeat is live: b's Open left its transfer alone.
	if got, err := store.Get(ctx, tr.ID); err != nil || got.Owner != "a" {
		t.Fatalf("owner %q (%v) while a's heartbeat is live, want a", got.Owner, err)
	}
	if _, err := store.Heartbeat(ctx, "a", time.Now().Add(-time.Hour), time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	tr = waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "b" })
	if tr.State != orchestrator.StateConsulting {
		t.Fatalf("after the claim the transfer is %s", tr.State)
	}
	// The client's complete lands on the dead replica's API; the owner
	// acts on it.
	if _, err := a.Complete(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	tr = waitFor(t, b, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if tr.State != orchestrator.StateCompleted || tr.Outcome.Reason != orchestrator.ReasonTransferred || tr.Owner != "b" {
		t.Fatalf("state %s outcome %+v owner %s", tr.State, tr.Outcome, tr.Owner)
	}
	if c, _ := fake.State(tr.ID); c.Caller != orchestrator.CallerTransferred {
		t.Errorf("provider shows caller %v", c.Caller)
	}
	if n := countActions(fake.ActionsFor(tr.ID), orchestratortest.MethodComplete); n != 1 {
		t.Errorf("%d joins, want 1", n)
	}
	if !hasStep(tr, orchestrator.StepReconcile) {
		t.Error("the new owner did not record that it resumed the transfer")
	}
}

// A replica restarted under the same name reclaims its open transfers at
// once, although its heartbeat is still live; whatever step boundary the
// old process died at, the transfer ends with the caller either with the
// target or back with the agent, and the consult is dialled at most once.
func TestRestartedReplicaReclaimsItsTransfers(t *testing.T) {
	for _, point := range []string{"hold:intent", "hold:effect", "hold:result", "dial:intent", "dial:effect", "dial:result",
		"state:consulting", "transfer:intent", "transfer:effect", "transfer:result"} {
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
			if err := first.Open(context.Background()); err != nil { // a live heartbeat
				t.Fatal(err)
			}
			t.Cleanup(func() { close(release) }) // before first shuts down
			tr, err := first.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			<-hit
			// Past transfer:effect a resumed transfer may end within
			// milliseconds of Open (one reading shows the join): hold every
			// provider call until it has been counted.
			resume := pauseProvider(fake)
			second := replica(t, "x", store, fake, nil)
			if err := second.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			running := second.Running()
			resume()
			if !slices.Contains(running, tr.ID) {
				t.Fatalf("the restarted replica did not reclaim %s at once (running %q)", tr.ID, running)
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
			// A dial or join sent by the dead process is never sent again.
			for _, m := range []string{orchestratortest.MethodDial, orchestratortest.MethodComplete} {
				if got := countActions(fake.ActionsFor(tr.ID), m); got > 1 {
					t.Errorf("%s sent %d times", m, got)
				}
			}
		})
	}
}

// A transfer claimed from a replica in the middle of a step is driven by
// its new owner only: the old owner's next save fails, and it drops the
// transfer without another provider call.
func TestClaimedTransferOldOwnerStopsOnNextSave(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	fake := orchestratortest.NewFake("fake")
	release, hit := make(chan struct{}), make(chan struct{})
	var once sync.Once
	a := replica(t, "a", store, fake, func(_ *orchestrator.Transfer, p string) {
		if p == "hold:effect" {
			once.Do(func() { close(hit) })
			<-release // the hold was made; its result is not saved yet
		}
	})
	b := replica(t, "b", store, fake, nil)
	tr, err := a.Start(ctx, request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-hit
	// a never wrote a heartbeat: b claims its transfer on Open.
	if err := b.Open(ctx); err != nil {
		t.Fatal(err)
	}
	tr = waitFor(t, b, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if tr.State != orchestrator.StateCompleted || tr.Owner != "b" {
		t.Fatalf("state %s owner %s, want completed by b", tr.State, tr.Owner)
	}
	before := fake.ActionsFor(tr.ID)
	close(release)
	// Shutdown waits for a's unfinished entry: it returns once a's save
	// failed and a dropped the transfer.
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown of the old owner: %v", err)
	}
	if after := fake.ActionsFor(tr.ID); !slices.Equal(after, before) {
		t.Errorf("the old owner acted after losing the transfer: %q, then %q", before, after)
	}
	if got, _ := store.Get(ctx, tr.ID); got.State != orchestrator.StateCompleted || got.Version != tr.Version {
		t.Errorf("stored %s v%d, want completed v%d: the old owner overwrote it", got.State, got.Version, tr.Version)
	}
	want := []string{locate, hold, hold, dial, complete} // the hold is repeated: it may not have been applied
	if got := fake.ActionsFor(tr.ID); !slices.Equal(got, want) {
		t.Errorf("actions %q, want %q", got, want)
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

func hasStep(tr *orchestrator.Transfer, name string) bool {
	return slices.ContainsFunc(tr.Steps, func(s orchestrator.Step) bool { return s.Name == name })
}

// A replica restarted with more open transfers of its own than one claim
// batch takes them all back once: claiming its own again (they stay
// claimable by it) would bump the versions of those already adopted and
// make each lose the one it had just resumed, over and over (the webhook
// storm's restart with a hundred transfers open hung in Open that way).
func TestRestartWithManyOwnTransfersResumesEachOnce(t *testing.T) {
	store := memory.New()
	ctx := context.Background()
	const n = 250 // more than two claim batches
	now := time.Now().UTC()
	ids := make([]string, n)
	for i := range n {
		tr := &orchestrator.Transfer{ID: orchestrator.NewID(now), State: orchestrator.StatePending, Owner: "x",
			Request:   request("fake", fmt.Sprint(3000+i)),
			CreatedAt: now, UpdatedAt: now}
		// Saved as the engine's Validate leaves a request.
		tr.Request.ConsultTimeout, tr.Request.Completion, tr.Request.Mode = 30*time.Second, orchestrator.CompletionAuto, orchestrator.ModeAttended
		if err := store.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
		ids[i] = tr.ID
	}
	fake := orchestratortest.NewFake("fake")
	gate := fake.Block(orchestratortest.MethodLocate) // nothing ends before it is counted
	second := replica(t, "x", store, fake, nil)
	if err := second.Open(ctx); err != nil {
		t.Fatal(err)
	}
	got := len(second.Running())
	gate.Release()
	if got != n {
		t.Fatalf("resumed %d of %d transfers", got, n)
	}
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		tr, err := second.Wait(ctx, id, func(*orchestrator.Transfer) bool { return false })
		cancel()
		if err != nil || tr.State != orchestrator.StateCompleted {
			var steps []string
			for _, s := range tr.Steps {
				steps = append(steps, s.StartedAt.Format("05.000")+" "+s.Name+" "+string(s.Status)+" "+s.Detail)
			}
			c, _ := fake.State(id)
			t.Fatalf("%s ended %s (%+v, %v): steps %q; provider %+v; calls %q", id, tr.State, tr.Outcome, err, steps, c, fake.CallsFor(id))
		}
	}
	if calls := countActions(fake.Actions(), orchestratortest.MethodLocate); calls != n {
		t.Errorf("%d locates for %d transfers: each resumed exactly once", calls, n)
	}
}
