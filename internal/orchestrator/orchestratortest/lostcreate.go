package orchestratortest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/transferd/transferd/internal/orchestrator"
)

// LostCreate is a Store whose first Create is saved but answered with an
// internal error, as when a connection drops between a commit and its
// answer: the engine cannot tell it from a create that failed. OnGet, if
// set, answers every Get in place of the store, given the Get's number n
// (from 1) and the store. With Unsaved, the first Create is answered the
// same way but not saved: the other side of what the engine cannot tell.
type LostCreate struct {
	orchestrator.Store
	OnGet   func(ctx context.Context, n int32, s orchestrator.Store, id string) (*orchestrator.Transfer, error)
	Unsaved bool

	once sync.Once
	gets atomic.Int32
}

// ErrGetRefused is the error of a Get that FailFirstGets fails.
var ErrGetRefused = orchestrator.E("store.Get", orchestrator.KindInternal, errors.New("connection refused"))

// FailFirstGets is an OnGet whose first n Gets fail with ErrGetRefused.
func FailFirstGets(n int32) func(context.Context, int32, orchestrator.Store, string) (*orchestrator.Transfer, error) {
	return func(ctx context.Context, i int32, s orchestrator.Store, id string) (*orchestrator.Transfer, error) {
		if i <= n {
			return nil, ErrGetRefused
		}
		return s.Get(ctx, id)
	}
}

// Create implements orchestrator.Store.
func (s *LostCreate) Create(ctx context.Context, t *orchestrator.Transfer) error {
	lost := false
	s.once.Do(func() { lost = true })
	if lost && s.Unsaved {
		return orchestrator.E("store.Create", orchestrator.KindInternal, errors.New("connection reset before the commit"))
	}
	if err := s.Store.Create(ctx, t); err != nil {
		return err
	}
	if lost {
		return orchestrator.E("store.Create", orchestrator.KindInternal, errors.New("connection reset after the commit"))
	}
	return nil
}

// Get implements orchestrator.Store.
func (s *LostCreate) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	n := s.gets.Add(1)
	if s.OnGet != nil {
		return s.OnGet(ctx, n, s.Store, id)
	}
	return s.Store.Get(ctx, id)
}
