package orchestrator_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// longClaim is a store whose claims of stopped replicas' transfers, once
// armed, last until released: a claim of a large dead replica's load.
type longClaim struct {
	*memory.Store
	mu      sync.Mutex
	armed   bool
	entered chan struct{} // closed when the first armed claim starts
	release chan struct{}
}

func (s *longClaim) Claim(ctx context.Context, owner, token string, now time.Time, own bool, limit int) ([]*orchestrator.Transfer, error) {
	s.mu.Lock()
	armed := s.armed && !own
	if armed {
		s.armed = false
		close(s.entered)
	}
	s.mu.Unlock()
	if armed {
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Store.Claim(ctx, owner, token, now, own, limit)
}

// A /complete sent to a replica that does not drive the transfer reaches
// the one that does through the store, which that one polls for signals.
// The poll shared the maintenance loop with the claims of stopped
// replicas' transfers: while a claimed a dead replica's large load, its
// own clients' completes waited behind the claim, their consults running
// on (and out, the callers given back), for as long as the claim took.
func TestSignalsAreNotHeldBackByAClaim(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	fake := orchestratortest.NewFake("fake")
	aStore := &longClaim{Store: mem, entered: make(chan struct{}), release: make(chan struct{})}
	a := replica(t, "a", aStore, fake, nil)
	b := replica(t, "b", mem, fake, nil)
	t.Cleanup(func() { close(aStore.release) }) // before the engines shut down
	for _, e := range []*orchestrator.Engine{a, b} {
		if err := e.Open(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	r.ConsultTimeout = time.Minute // far past the wait below
	tr, err := a.Start(ctx, r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, a, tr.ID, answered)

	aStore.mu.Lock()
	aStore.armed = true
	aStore.mu.Unlock()
	select {
	case <-aStore.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("a never claimed")
	}
	// Through b, which does not drive the transfer: the signal is put in
	// the store for a's poll.
	if _, err := b.Complete(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	final := waitFor(t, a, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if c, _ := fake.State(tr.ID); final.State != orchestrator.StateCompleted || c.Caller != orchestrator.CallerTransferred {
		t.Errorf("the transfer completed through b while a claimed ended %s (%s); the provider shows the caller %v",
			final.State, final.Outcome.Reason, c.Caller)
	}
}
