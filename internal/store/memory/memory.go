// Package memory is an in-memory orchestrator.Store for tests and for
// running without persistence. Nothing survives the process.
package memory

import (
	"bytes"
	"cmp"
	"context"
	"errors"
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
	// open holds, by CallKey, the ids of the call's open transfers
	// (Transfer.Open): those that may hold it (Transfer.HoldsCall).
	open    map[string]map[string]struct{}
	ids     []string // ascending; ids sort by creation time
	signals map[string]orchestrator.Signal
	idem    map[[2]string]idemRow
	// replicas holds each replica's heartbeat.
	replicas map[string]heartbeat
	// events is the outbox, in position order; pos is the last position
	// given (positions are never reused, also after Purge).
	events []orchestrator.Event
	pos    int64
	// eventIDKey is made at New: the store lasts as long as its process.
	eventIDKey orchestrator.EventIDKey
}

// idemRow is an idempotency record and the transfer its request created,
// if that was saved (see orchestrator.Store.Create).
type idemRow struct {
	rec        orchestrator.IdempotencyRecord
	transferID string
}

var _ orchestrator.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store {
	k, err := orchestrator.NewEventIDKey(0)
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return &Store{byID: map[string]*orchestrator.Transfer{}, active: map[string]string{}, open: map[string]map[string]struct{}{},
		signals: map[string]orchestrator.Signal{}, idem: map[[2]string]idemRow{},
		replicas: map[string]heartbeat{}, eventIDKey: k}
}

// EventIDKey implements orchestrator.EventStore.
func (s *Store) EventIDKey(context.Context) (orchestrator.EventIDKey, error) {
	return s.eventIDKey, nil
}

// Create implements orchestrator.Store.
func (s *Store) Create(_ context.Context, t *orchestrator.Transfer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The token first, as SQLite and PostgreSQL judge it: a process taken
	// over stops at its first refused save, whatever else refuses it.
	if s.superseded(t) {
		return orchestrator.E("memory.Create", orchestrator.KindConflict, orchestrator.ErrSupersededSave)
	}
	if _, ok := s.byID[t.ID]; ok {
		return orchestrator.E("memory.Create", orchestrator.KindConflict, nil)
	}
	key := orchestrator.TenantCallKey(t)
	if id, ok := s.active[key]; ok {
		return &orchestrator.Error{Op: "memory.Create", Kind: orchestrator.KindConflict,
			Err: &orchestrator.ActiveTransferError{ID: id}}
	}
	if id := s.holding(key); id != "" {
		return &orchestrator.Error{Op: "memory.Create", Kind: orchestrator.KindConflict,
			Err: &orchestrator.ActiveTransferError{ID: id, CleaningUp: true}}
	}
	if t.IdempotencyKey != "" && !t.IdempotencyReservedAt.IsZero() {
		row, ok := s.idem[[2]string{t.IdempotencyScope, t.IdempotencyKey}]
		if !ok || row.transferID != "" || row.rec.Response != nil || !row.rec.CreatedAt.Equal(t.IdempotencyReservedAt) {
			return orchestrator.E("memory.Create", orchestrator.KindUnavailable, orchestrator.ErrReservationLost)
		}
	}
	t.Version = 1
	s.byID[t.ID] = stored(t)
	s.writeEvents(t)
	if !t.State.Terminal() { // a transfer saved already ended never holds its call
		s.active[key] = t.ID
	}
	s.track(key, t)
	i, _ := slices.BinarySearch(s.ids, t.ID)
	s.ids = slices.Insert(s.ids, i, t.ID)
	if t.IdempotencyKey != "" {
		k := [2]string{t.IdempotencyScope, t.IdempotencyKey}
		if row, ok := s.idem[k]; ok {
			row.transferID = t.ID
			s.idem[k] = row
		}
	}
	return nil
}

// superseded reports whether a save of t carries a token (Transfer.Token)
// while its owner's heartbeat holds another process's: another process
// took the name over. No token in the row is an older version's, as for
// Heartbeat, and no alarm. A claim is judged as a save by its claimer.
func (s *Store) superseded(t *orchestrator.Transfer) bool {
	hb, ok := s.replicas[t.Owner]
	return t.Token != "" && t.Owner != "" && ok && hb.token != "" && hb.token != t.Token
}

// stored is the copy of t the store keeps, as the SQL stores keep it:
// neither the outbox (written as events) nor the reservation a create held
// is part of the record.
func stored(t *orchestrator.Transfer) *orchestrator.Transfer {
	c := t.Clone()
	c.Outbox, c.IdempotencyReservedAt = nil, time.Time{}
	c.LookForSignal, c.SignalLooked, c.PendingSignal, c.Token = false, false, orchestrator.SignalNone, ""
	return c
}

// holding returns the newest (by id) of the call's ended transfers that
// hold it (Transfer.HoldsCall), "" when none does. Any of them holds it,
// not only the newest: ids begin with their replica's clock, which may
// run ahead of another's.
func (s *Store) holding(key string) string {
	last := ""
	for id := range s.open[key] {
		if holds, _ := s.byID[id].HoldsCall(); holds && id > last {
			last = id
		}
	}
	return last
}

// track keeps t's id among its call's open transfers while t is open.
func (s *Store) track(key string, t *orchestrator.Transfer) {
	switch ids := s.open[key]; {
	case t.Open() && ids == nil:
		s.open[key] = map[string]struct{}{t.ID: {}}
	case t.Open():
		ids[t.ID] = struct{}{}
	case ids != nil:
		delete(ids, t.ID)
		if len(ids) == 0 {
			delete(s.open, key)
		}
	}
}

// Update implements orchestrator.Store.
func (s *Store) Update(_ context.Context, t *orchestrator.Transfer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.byID[t.ID]
	if !ok {
		return orchestrator.E("memory.Update", orchestrator.KindNotFound, nil)
	}
	if s.superseded(t) {
		return orchestrator.E("memory.Update", orchestrator.KindConflict, orchestrator.ErrSupersededSave)
	}
	if cur.Version != t.Version {
		return orchestrator.E("memory.Update", orchestrator.KindConflict, orchestrator.ErrVersionConflict)
	}
	// UpdatedAt is the caller's (the engine's clock), as every other field:
	// Purge compares it with a cut-off taken from that same clock.
	t.Version++
	s.byID[t.ID] = stored(t)
	s.writeEvents(t)
	key := orchestrator.TenantCallKey(t)
	if t.State.Terminal() && s.active[key] == t.ID {
		delete(s.active, key)
	}
	s.track(key, t)
	if t.LookForSignal {
		t.SignalLooked, t.PendingSignal = true, s.signals[t.ID]
	}
	return nil
}

// writeEvents appends t's outbox, each event with the record as saved.
func (s *Store) writeEvents(t *orchestrator.Transfer) {
	if len(t.Outbox) == 0 {
		return
	}
	snap := stored(t)
	for _, ev := range t.Outbox {
		s.pos++
		ev.Pos = s.pos
		ev.Transfer = snap
		s.events = append(s.events, ev)
	}
}

// Events implements orchestrator.Store.
func (s *Store) Events(_ context.Context, f orchestrator.EventFilter) ([]orchestrator.Event, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []orchestrator.Event
	start, _ := slices.BinarySearchFunc(s.events, f.After+1, func(ev orchestrator.Event, pos int64) int {
		return cmp.Compare(ev.Pos, pos)
	})
	for _, ev := range s.events[start:] {
		if ev.Tenant != f.Tenant || (f.TransferID != "" && ev.TransferID != f.TransferID) {
			continue
		}
		ev.Transfer = ev.Transfer.Clone()
		out = append(out, ev)
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out, nil
}

// LastEventPos implements orchestrator.EventStore.
func (s *Store) LastEventPos(_ context.Context, f orchestrator.EventFilter) (int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i := len(s.events) - 1; i >= 0; i-- {
		if ev := &s.events[i]; ev.Tenant == f.Tenant && (f.TransferID == "" || ev.TransferID == f.TransferID) {
			return ev.Pos, nil
		}
	}
	return 0, nil
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
		if !matches(t, &f) {
			continue
		}
		if len(f.States) > 0 && !slices.Contains(f.States, t.State) {
			continue
		}
		if f.Limit > 0 && len(out) == f.Limit {
			return out, true, nil
		}
		out = append(out, t.Clone())
	}
	return out, false, nil
}

// matches applies every field of f but the cursor and the limit.
func matches(t *orchestrator.Transfer, f *orchestrator.ListFilter) bool {
	r := &t.Request
	tenant := t.Tenant
	if tenant == "" {
		tenant = orchestrator.DefaultTenant
	}
	after, before := f.CreatedBounds()
	switch {
	case f.Tenant != "" && tenant != f.Tenant,
		f.Provider != "" && !strings.EqualFold(r.Provider, f.Provider),
		len(f.States) > 0 && !slices.Contains(f.States, t.State),
		f.ExternalID != "" && r.ExternalID != f.ExternalID,
		// Folded as the SQL stores fold (strings.ToLower, as CallKey), not
		// by strings.EqualFold, which differs on a few letters (ſ, İ).
		f.Domain != "" && strings.ToLower(r.Call.Domain) != strings.ToLower(f.Domain),
		f.User != "" && strings.ToLower(r.Call.User) != strings.ToLower(f.User),
		f.CallID != "" && r.Call.CallID != f.CallID,
		f.Target != "" && r.Target != f.Target,
		!after.IsZero() && t.CreatedAt.Before(after),
		!before.IsZero() && !t.CreatedAt.Before(before):
		return false
	}
	return true
}

// Ping implements orchestrator.Store.
func (s *Store) Ping(context.Context) error { return nil }

// heartbeat is a replica's heartbeat: its end, and the token of the
// process that wrote it.
type heartbeat struct {
	expires time.Time
	token   string
}

// live reports whether owner has a heartbeat that has not expired at now.
func (s *Store) live(owner string, now time.Time) bool {
	hb, ok := s.replicas[owner]
	return ok && hb.expires.After(now)
}

// Heartbeat implements orchestrator.Store.
func (s *Store) Heartbeat(_ context.Context, owner, token string, now time.Time, ttl time.Duration, take bool) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	expired := !s.live(owner, now)
	if prev := s.replicas[owner].token; !take && !expired && prev != "" && prev != token {
		return false, orchestrator.ErrSuperseded
	}
	s.replicas[owner] = heartbeat{expires: now.Add(ttl), token: token}
	return expired, nil
}

// Release implements orchestrator.Store.
func (s *Store) Release(_ context.Context, owner, token string, last, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if hb, ok := s.replicas[owner]; ok && hb.token == token && hb.expires.Equal(last) {
		s.replicas[owner] = heartbeat{expires: at, token: token}
	}
	return nil
}

// Peers implements orchestrator.Store.
func (s *Store) Peers(_ context.Context, owner string, now time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for name := range s.replicas {
		if name != owner && s.live(name, now) {
			n++
		}
	}
	return n, nil
}

// Claim implements orchestrator.Store.
func (s *Store) Claim(_ context.Context, owner, token string, now time.Time, own bool, limit int) ([]*orchestrator.Transfer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.superseded(&orchestrator.Transfer{Owner: owner, Token: token}) {
		return nil, orchestrator.E("memory.Claim", orchestrator.KindConflict, orchestrator.ErrSuperseded)
	}
	var out []*orchestrator.Transfer
	for _, id := range s.ids { // ascending ids: oldest first
		if limit > 0 && len(out) >= limit {
			break
		}
		t := s.byID[id]
		if !t.Open() {
			continue
		}
		// Claimable: no owner; the claimer's own when it asks for them
		// (own); another replica's whose heartbeat ended. Never the
		// claimer's own otherwise, even when its heartbeat lapsed: it
		// drives them.
		mine := t.Owner == owner
		if t.Owner != "" && !(own && mine) && (mine || s.live(t.Owner, now)) {
			continue
		}
		unowned := t.Owner == ""
		t.Owner = owner
		t.Version++
		c := t.Clone()
		c.Unowned = unowned
		out = append(out, c)
	}
	return out, nil
}

// Owned implements orchestrator.Store.
func (s *Store) Owned(_ context.Context, owner string) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for _, id := range s.ids { // ascending ids: oldest first
		if t := s.byID[id]; t.Owner == owner && t.Open() {
			out = append(out, id)
		}
	}
	return out, nil
}

// Signalled implements orchestrator.Store. Only open transfers count: a
// closed one has nothing left to act on, and its signal goes when Purge
// deletes it.
func (s *Store) Signalled(_ context.Context, owner string) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for id, sig := range s.signals {
		if t := s.byID[id]; sig != orchestrator.SignalNone && t.Owner == owner && t.Open() {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}

// PutSignal implements orchestrator.Store.
func (s *Store) PutSignal(_ context.Context, id string, sig orchestrator.Signal, version int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.byID[id]
	if !ok {
		return orchestrator.E("memory.PutSignal", orchestrator.KindNotFound, nil)
	}
	if s.signals[id] != orchestrator.SignalNone {
		return orchestrator.E("memory.PutSignal", orchestrator.KindConflict, errors.New("another signal is pending"))
	}
	if version > 0 && t.Version != version {
		return orchestrator.E("memory.PutSignal", orchestrator.KindConflict, orchestrator.ErrStale)
	}
	s.signals[id] = sig
	return nil
}

// PeekSignal implements orchestrator.Store.
func (s *Store) PeekSignal(_ context.Context, id string) (orchestrator.Signal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.signals[id], nil
}

// TakeSignal implements orchestrator.Store.
func (s *Store) TakeSignal(_ context.Context, id string) (orchestrator.Signal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sig := s.signals[id]
	delete(s.signals, id)
	return sig, nil
}

// ReserveIdempotency implements orchestrator.Store.
func (s *Store) ReserveIdempotency(_ context.Context, rec orchestrator.IdempotencyRecord) (orchestrator.IdempotencyRecord, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]string{rec.Scope, rec.Key}
	if cur, ok := s.idem[k]; ok {
		return cloneIdem(cur.rec), false, nil
	}
	s.idem[k] = idemRow{rec: cloneIdem(rec)}
	return rec, true, nil
}

// CompleteIdempotency implements orchestrator.Store.
func (s *Store) CompleteIdempotency(_ context.Context, scope, key string, createdAt time.Time, resp orchestrator.IdempotentResponse) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]string{scope, key}
	cur, ok := s.idem[k]
	if !ok || !cur.rec.CreatedAt.Equal(createdAt) {
		return orchestrator.E("memory.CompleteIdempotency", orchestrator.KindNotFound, nil)
	}
	resp.Body = bytes.Clone(resp.Body)
	cur.rec.Response = &resp
	s.idem[k] = cur
	return nil
}

// DeleteIdempotency implements orchestrator.Store.
func (s *Store) DeleteIdempotency(_ context.Context, scope, key string, createdAt time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := [2]string{scope, key}
	cur, ok := s.idem[k]
	switch {
	case !ok || !cur.rec.CreatedAt.Equal(createdAt):
	case cur.transferID == "":
		delete(s.idem, k)
	case cur.rec.Response == nil:
		cur.rec.Response = &orchestrator.IdempotentResponse{Status: 202,
			Location: "/v1/transfers/" + cur.transferID, TransferID: cur.transferID}
		s.idem[k] = cur
	}
	return nil
}

// SettleIdempotency implements orchestrator.Store.
func (s *Store) SettleIdempotency(_ context.Context, owner string, now, ownBefore time.Time) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, row := range s.idem {
		if row.rec.Response != nil {
			continue
		}
		if s.live(row.rec.Owner, now) && !(row.rec.Owner == owner && row.rec.CreatedAt.Before(ownBefore)) {
			continue
		}
		n++
		if row.transferID == "" {
			delete(s.idem, k)
			continue
		}
		row.rec.Response = &orchestrator.IdempotentResponse{Status: 202,
			Location: "/v1/transfers/" + row.transferID, TransferID: row.transferID}
		s.idem[k] = row
	}
	return n, nil
}

// Purge implements orchestrator.Store.
func (s *Store) Purge(_ context.Context, before time.Time, limit int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	kept := s.ids[:0]
	purged := map[string]bool{}
	for _, id := range s.ids {
		t := s.byID[id]
		if (limit <= 0 || n < limit) && t.State.Terminal() && !t.Open() && t.UpdatedAt.Before(before) {
			delete(s.byID, id)
			delete(s.signals, id)
			purged[id] = true
			n++
			continue
		}
		kept = append(kept, id)
	}
	s.ids = kept
	// The events go with their transfers.
	s.events = slices.DeleteFunc(s.events, func(ev orchestrator.Event) bool { return purged[ev.TransferID] })
	if limit > 0 && n == limit {
		return n, nil // more may be left: the idempotency records wait for the last call
	}
	for k, row := range s.idem {
		if !row.rec.CreatedAt.Before(before) {
			continue
		}
		// A reservation of a transfer still open keeps replaying it; one
		// whose transfer is gone or done has served its retry window.
		if t, ok := s.byID[row.transferID]; ok && t.Open() {
			continue
		}
		delete(s.idem, k)
	}
	return n, nil
}

func cloneIdem(r orchestrator.IdempotencyRecord) orchestrator.IdempotencyRecord {
	if r.Response != nil {
		resp := *r.Response
		resp.Body = bytes.Clone(resp.Body)
		r.Response = &resp
	}
	return r
}
