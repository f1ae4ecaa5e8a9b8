package orchestrator_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// deadable wraps the Fake for one replica: once killed, every provider
// call of that replica blocks (a process that died), while the Fake itself
// (the provider's truth) goes on for the other replica. kill waits for the
// calls in flight to finish first, so none of them can see later changes.
type deadable struct {
	*orchestratortest.Fake
	mu      sync.RWMutex
	dead    bool
	release chan struct{}
}

func (p *deadable) enter() error {
	p.mu.RLock()
	if !p.dead {
		return nil
	}
	p.mu.RUnlock()
	<-p.release
	return orchestrator.E("dead", orchestrator.KindProviderUnavailable, errors.New("the process is dead"))
}

func (p *deadable) kill() {
	p.mu.Lock()
	p.dead = true
	p.mu.Unlock()
}

func (p *deadable) Read(ctx context.Context, key string, ts []*orchestrator.Transfer) (orchestrator.View, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer p.mu.RUnlock()
	return p.Fake.Read(ctx, key, ts)
}

func (p *deadable) Locate(ctx context.Context, t *orchestrator.Transfer) (orchestrator.Legs, error) {
	if err := p.enter(); err != nil {
		return orchestrator.Legs{}, err
	}
	defer p.mu.RUnlock()
	return p.Fake.Locate(ctx, t)
}

func (p *deadable) Hold(ctx context.Context, t *orchestrator.Transfer) error {
	if err := p.enter(); err != nil {
		return err
	}
	defer p.mu.RUnlock()
	return p.Fake.Hold(ctx, t)
}

func (p *deadable) Unhold(ctx context.Context, t *orchestrator.Transfer) error {
	if err := p.enter(); err != nil {
		return err
	}
	defer p.mu.RUnlock()
	return p.Fake.Unhold(ctx, t)
}

func (p *deadable) Dial(ctx context.Context, t *orchestrator.Transfer) (orchestrator.LegRef, error) {
	if err := p.enter(); err != nil {
		return orchestrator.LegRef{}, err
	}
	defer p.mu.RUnlock()
	return p.Fake.Dial(ctx, t)
}

func (p *deadable) Complete(ctx context.Context, t *orchestrator.Transfer) error {
	if err := p.enter(); err != nil {
		return err
	}
	defer p.mu.RUnlock()
	return p.Fake.Complete(ctx, t)
}

func (p *deadable) HangupConsult(ctx context.Context, t *orchestrator.Transfer) error {
	if err := p.enter(); err != nil {
		return err
	}
	defer p.mu.RUnlock()
	return p.Fake.HangupConsult(ctx, t)
}

func notJoinedReplica(t *testing.T, store orchestrator.Store, p orchestrator.Provider, verify time.Duration) *orchestrator.Engine {
	t.Helper()
	return testEngine(t, orchestrator.Config{
		Owner: "x", LeaseTTL: 2 * time.Second,
		PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond,
		VerifyTimeout: verify, VisibilityWindow: 50 * time.Millisecond, TombstoneTTL: 50 * time.Millisecond,
		StepTimeout: time.Second,
	}, store, p, nil)
}

// Found by review: Seen.NotJoined was learnt in completing but never saved
// there (completing ignored observed's "changed"). The join was accepted
// and did nothing; a reading a visibility window after it showed the
// caller back with the agent: the join did not take, and that is known.
// The process then dies (before VerifyTimeout, so nothing else saved the
// record), and the caller hangs up. The restarted replica resumed from the
// store's record, which lacked NotJoined: the caller's ended call looked
// unknowable, and the outcome ended unverified and final, although a
// reading had shown the caller was never with the target. Now whatever a
// reading teaches is saved by the end of the reconcile.
func TestJoinSeenNotToTakeSurvivesARestart(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	f := orchestratortest.NewFake("fake").IgnoreComplete(true)
	// The join did nothing; once it could have applied, the agent takes
	// the caller back from their phone: the next reading shows the caller
	// connected, which wakes the transfer (a reading showing something new).
	var mu sync.Mutex
	var joinAt time.Time
	var unheld bool
	f.Before(orchestratortest.MethodComplete, func(orchestratortest.Record) {
		mu.Lock()
		joinAt = time.Now()
		mu.Unlock()
	})
	f.Before(orchestratortest.MethodObserve, func(r orchestratortest.Record) {
		mu.Lock()
		due := !joinAt.IsZero() && !unheld && time.Since(joinAt) > 150*time.Millisecond // 3 visibility windows
		if due {
			unheld = true
		}
		mu.Unlock()
		if due {
			f.SetCaller(r.TransferID, orchestrator.CallerConnected)
		}
	})
	p1 := &deadable{Fake: f, release: make(chan struct{})}
	first := notJoinedReplica(t, store, p1, 30*time.Second) // still verifying when it dies
	if err := first.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopAtOnce(first) }) // dead: it would verify until its shutdown's deadline
	t.Cleanup(func() { close(p1.release) }) // before first shuts down
	tr, err := first.Start(ctx, request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "a reading showing the join did not take", func() bool {
		// Wait returns the replica's working record (Get reads the store).
		wctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
		defer cancel()
		x, err := first.Wait(wctx, tr.ID, func(x *orchestrator.Transfer) bool { return x.Seen.NotJoined })
		return err == nil && x.Seen.NotJoined
	})
	p1.kill()
	mu.Lock()
	unheld = true // the second replica's readings change nothing
	mu.Unlock()
	saved, err := store.Get(ctx, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	if saved.State != orchestrator.StateCompleting {
		t.Fatalf("the first process saved %s, want completing", saved.State)
	}
	if c, _ := f.State(tr.ID); c.Caller != orchestrator.CallerConnected && c.Caller != orchestrator.CallerHeld {
		t.Fatalf("the provider shows the caller %v, want held or connected (the join did nothing)", c.Caller)
	}
	f.HangupCaller(tr.ID)

	second := notJoinedReplica(t, store, f, 200*time.Millisecond)
	if err := second.Open(ctx); err != nil {
		t.Fatal(err)
	}
	end := waitFor(t, second, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	o := end.Outcome
	if end.State != orchestrator.StateFailed || o.Reason != orchestrator.ReasonCallerHungUp || o.CallerRestored {
		t.Fatalf("%s %+v; want failed, caller_hung_up, not restored", end.State, o)
	}
	if !o.Verified {
		t.Errorf("outcome unverified and final (%q), although a reading a visibility window after the join "+
			"showed the caller back with the agent (Seen.NotJoined in memory: %t, in the store before the restart: %t)",
			o.Detail, true, saved.Seen.NotJoined)
	}
}

// A join that took, whose target then hung up: the caller is left alone
// where the join put them, which a Bandwidth reading shows as held (the
// caller's bridge with audio on and nobody else in it). Such a reading,
// taken a visibility window after the join, is no evidence that the join
// did not take: the consult has ended. The recovery unholds the caller,
// who hangs up meanwhile: the caller's call has ended after a join that
// took, and the outcome must say it cannot be verified, not "failed,
// verified".
func TestCallerAloneAfterTheTargetLeftIsNoEvidenceAgainstTheJoin(t *testing.T) {
	f := orchestratortest.NewFake("fake")
	// No reading shows the join until it is a window old; then the target
	// hangs up, and the caller is alone in the bridge.
	afterJoinWindow(f, func(id string) {
		if c, _ := f.State(id); c.Caller != orchestrator.CallerTransferred {
			t.Errorf("the join did not take: caller %d", c.Caller)
		}
		f.HangupTarget(id)
		f.SetCaller(id, orchestrator.CallerHeld)
	})
	f.Before(orchestratortest.MethodUnhold, func(r orchestratortest.Record) { f.HangupCaller(r.TransferID) })
	st := &recStore{Store: memory.New(), saved: make(chan struct{})}
	e := testEngine(t, fastConfig(10*time.Second, stormWindowShort), st, f, nil)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := st.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	if end.Seen.NotJoined {
		t.Error("a reading of the caller alone after the target left was taken for a join that did not take")
	}
	o := end.Outcome
	if end.State != orchestrator.StateFailed || o.CallerRestored || o.Verified {
		t.Errorf("%s %+v; want failed, not restored, unverified (the join took, then the caller's call ended)", end.State, o)
	}
}

// stormWindowShort is the visibility window of the test above.
const stormWindowShort = 50 * time.Millisecond
