// Package memory is an in-memory orchestrator.Store for tests and for
// running without persistence. Nothing survives the process.
package memory

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// Store keeps transfers in a map guarded by a mutex.
type Store struct {
	mu     sync.RWMutex
	byID   map[string]*orchestrator.Transfer
	active map[string]string // CallKey -> id of the non-terminal transfer
	ids    []string          // ascending; ids sort by creation time
}

var _ orchestrator.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	return &Store{byID: map[string]*orchestrator.Transfer{}, active: map[string]string{}}
}

// Create implements orchestrator.Store.
func (s *Store) Create(_ context.Context, t *orchestrator.Transfer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byID[t.ID]; ok {
		return orchestrator.E("memory.Create", orchestrator.KindConflict, nil)
	}
	key := orchestrator.CallKey(&t.Request)
	if id, ok := s.active[key]; ok {
		return &orchestrator.Error{Op: "memory.Create", Kind: orchestrator.KindConflict,
			Err: &orchestrator.ActiveTransferError{ID: id}}
	}
	t.Version = 1
	s.byID[t.ID] = t.Clone()
	s.active[key] = t.ID
	i, _ := slices.BinarySearch(s.ids, t.ID)
	s.ids = slices.Insert(s.ids, i, t.ID)
	return nil
}

// Update implements orchestrator.Store.
func (s *Store) Update(_ context.Context, t *orchestrator.Transfer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.byID[t.ID]
	if !ok {
		return orchestrator.E("memory.Update", orchestrator.KindNotFound, nil)
	}
	if cur.Version != t.Version {
		return orchestrator.ErrVersionConflict
	}
	t.Version++
	t.UpdatedAt = time.Now().UTC()
	s.byID[t.ID] = t.Clone()
	if t.State.Terminal() {
		key := orchestrator.CallKey(&t.Request)
		if s.active[key] == t.ID {
			delete(s.active, key)
		}
	}
	return nil
}

// Get implements orchestrator.Store.
func (s *Store) Get(_ context.Context, id string) (*orchestrator.Transfer, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.byID[id]
	if !ok {
		return nil, orchestrator.E("memory.Get", orchestrator.KindNotFound, nil)
	}
	return t.Clone(), nil
}

// List implements orchestrator.Store.
func (s *Store) List(_ context.Context, f orchestrator.ListFilter) ([]*orchestrator.Transfer, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	end := len(s.ids)
	if f.After != "" {
		end, _ = slices.BinarySearch(s.ids, f.After)
	}
	var out []*orchestrator.Transfer
	for i := end - 1; i >= 0; i-- {
		t := s.byID[s.ids[i]]
		if f.Provider != "" && !strings.EqualFold(t.Request.Provider, f.Provider) {
			continue
		}
		if len(f.States) > 0 && !slices.Contains(f.States, t.State) {
			continue
		}
		if len(out) == f.Limit {
			return out, true, nil
		}
		out = append(out, t.Clone())
	}
	return out, false, nil
}

// NonTerminal returns every transfer that has not ended, oldest first.
func (s *Store) NonTerminal(_ context.Context) ([]*orchestrator.Transfer, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*orchestrator.Transfer
	for _, id := range s.ids {
		if t := s.byID[id]; !t.State.Terminal() {
			out = append(out, t.Clone())
		}
	}
	return out, nil
}

// Ping implements orchestrator.Store.
func (s *Store) Ping(context.Context) error { return nil }
