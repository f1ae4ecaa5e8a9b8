package orchestratortest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// Saved is a Store that tells waiters of every save: a terminal
// transfer's cleanup obligation changes it after Engine.Wait has returned
// (Wait returns once a transfer is terminal, whatever its condition), so
// a test of what the sweeper does waits here instead.
type Saved struct {
	orchestrator.Store
	mu    sync.Mutex
	saved chan struct{} // closed and replaced on every successful Update
}

// NewSaved wraps s.
func NewSaved(s orchestrator.Store) *Saved {
	return &Saved{Store: s, saved: make(chan struct{})}
}

// Update implements orchestrator.Store.
func (s *Saved) Update(ctx context.Context, t *orchestrator.Transfer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.Store.Update(ctx, t); err != nil {
		return err
	}
	close(s.saved)
	s.saved = make(chan struct{})
	return nil
}

// WaitSaved returns the stored record of id once cond holds of it, and
// fails t if that takes longer than 30 s.
func (s *Saved) WaitSaved(t testing.TB, id string, cond func(*orchestrator.Transfer) bool) *orchestrator.Transfer {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		s.mu.Lock()
		ch := s.saved
		tr, err := s.Store.Get(context.Background(), id)
		s.mu.Unlock()
		if err != nil {
			t.Fatalf("Get %s: %v", id, err)
		}
		if cond(tr) {
			return tr
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("gave up waiting for a save of %s: %s, outcome %+v, cleanup %+v", id, tr.State, tr.Outcome, tr.Cleanup)
		}
	}
}
