package memory

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/webhooks"
)

// Deliveries keeps webhook deliveries and endpoint cursors in memory, over
// the outbox of a Store.
type Deliveries struct {
	*Store
	mu      sync.Mutex
	cursors map[string]int64
	byID    map[string]*webhooks.Delivery
	order   []string // ids in enqueue order (ascending Pos per endpoint)
}

var _ webhooks.Store = (*Deliveries)(nil)

// NewDeliveries returns a webhook store reading s's outbox.
func NewDeliveries(s *Store) *Deliveries {
	return &Deliveries{Store: s, cursors: map[string]int64{}, byID: map[string]*webhooks.Delivery{}}
}

// Cursor implements webhooks.Store.
func (d *Deliveries) DeliveryCursor(_ context.Context, endpoint string) (int64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cursors[endpoint], nil
}

// Enqueue implements webhooks.Store.
func (d *Deliveries) EnqueueDeliveries(_ context.Context, endpoint string, from, to int64, ds []webhooks.Delivery) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cursors[endpoint] != from {
		return webhooks.ErrCursorMoved
	}
	d.cursors[endpoint] = to
	for _, dl := range ds {
		if _, ok := d.byID[dl.ID]; ok {
			continue
		}
		dl.Payload = slices.Clone(dl.Payload)
		d.byID[dl.ID] = &dl
		d.order = append(d.order, dl.ID)
	}
	return nil
}

// Claim implements webhooks.Store.
func (d *Deliveries) ClaimDeliveries(_ context.Context, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Delivery, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.claim(owner, now, lease, limit, skip), nil
}

// SettleDeliveries implements webhooks.Store, under one hold of the lock.
func (d *Deliveries) SettleDeliveries(_ context.Context, results []webhooks.Delivery, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Finished, []webhooks.Delivery, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	vs := make([]webhooks.Finished, len(results))
	for i, dl := range results {
		vs[i].Delivery, vs[i].OK = d.finish(dl)
	}
	return vs, d.claim(owner, now, lease, limit, skip), nil
}

// claim is ClaimDeliveries under the lock.
func (d *Deliveries) claim(owner string, now time.Time, lease time.Duration, limit int, skip []string) []webhooks.Delivery {
	if limit <= 0 {
		return nil
	}
	// heads: the first pending delivery of each endpoint and transfer.
	heads := map[[2]string]*webhooks.Delivery{}
	for _, id := range d.order {
		dl := d.byID[id]
		if dl.Status != webhooks.StatusPending {
			continue
		}
		k := [2]string{webhooks.EndpointKey(dl.Tenant, dl.Endpoint), dl.TransferID}
		if h, ok := heads[k]; !ok || dl.Seq < h.Seq {
			heads[k] = dl
		}
	}
	// Earliest claimable first, then lowest Pos, as the SQL stores claim:
	// d.order is the order of the inserts, one endpoint's batch after
	// another's.
	due := make([]*webhooks.Delivery, 0, len(heads))
	for k, dl := range heads {
		if !webhooks.ReadyAt(*dl).After(now) && !slices.Contains(skip, k[0]) {
			due = append(due, dl)
		}
	}
	slices.SortFunc(due, func(a, b *webhooks.Delivery) int {
		return cmp.Or(webhooks.ReadyAt(*a).Compare(webhooks.ReadyAt(*b)), cmp.Compare(a.Pos, b.Pos), cmp.Compare(a.ID, b.ID))
	})
	var out []webhooks.Delivery
	for _, dl := range due[:min(limit, len(due))] {
		dl.Attempts++
		dl.Owner, dl.LeaseUntil = owner, now.Add(lease)
		out = append(out, clone(dl))
	}
	return out
}

// FinishDelivery implements webhooks.Store.
func (d *Deliveries) FinishDelivery(_ context.Context, dl webhooks.Delivery) (webhooks.Delivery, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	stored, ok := d.finish(dl)
	return stored, ok, nil
}

// finish is FinishDelivery under the lock.
func (d *Deliveries) finish(dl webhooks.Delivery) (webhooks.Delivery, bool) {
	cur, ok := d.byID[dl.ID]
	if !ok {
		return webhooks.Delivery{}, false
	}
	next, ok := webhooks.ApplyResult(*cur, dl)
	if !ok {
		return webhooks.Delivery{}, false
	}
	*cur = next
	return clone(cur), true
}

// Deliveries implements webhooks.Store: in (Pos, ID) order, descending,
// as the SQL stores list them; the cursor is that whole key, since every
// endpoint's delivery of an event has the event's Pos. A cursor that
// names no delivery of the tenant, another tenant's among them, is
// webhooks.ErrUnknownCursor, as in the SQL stores, unless it comes with
// its Pos (AfterPos).
func (d *Deliveries) Deliveries(_ context.Context, f webhooks.DeliveryFilter) ([]webhooks.Delivery, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var cursor *webhooks.Delivery
	switch {
	case f.After != "" && f.AfterPos != 0:
		cursor = &webhooks.Delivery{ID: f.After, Pos: f.AfterPos}
	case f.After != "":
		if cursor = d.byID[f.After]; cursor == nil || cursor.Tenant != f.Tenant {
			return nil, false, orchestrator.E("memory.Deliveries", orchestrator.KindInvalid, webhooks.ErrUnknownCursor)
		}
	}
	var sel []*webhooks.Delivery
	for _, dl := range d.byID {
		if dl.Tenant != f.Tenant || (f.TransferID != "" && dl.TransferID != f.TransferID) || !selected(dl, f) ||
			cursor != nil && listOrder(dl, cursor) <= 0 {
			continue
		}
		sel = append(sel, dl)
	}
	slices.SortFunc(sel, listOrder)
	more := f.Limit > 0 && len(sel) > f.Limit
	if more {
		sel = sel[:f.Limit]
	}
	out := make([]webhooks.Delivery, 0, len(sel))
	for _, dl := range sel {
		out = append(out, clone(dl))
	}
	return out, more, nil
}

// listOrder orders deliveries as listed: by Pos, then ID, descending.
func listOrder(a, b *webhooks.Delivery) int {
	if c := cmp.Compare(b.Pos, a.Pos); c != 0 {
		return c
	}
	return strings.Compare(b.ID, a.ID)
}

// selected applies the status part of a filter: Statuses and Failing
// widen each other (failing or dead), either alone narrows.
func selected(dl *webhooks.Delivery, f webhooks.DeliveryFilter) bool {
	if len(f.Statuses) == 0 && !f.Failing {
		return true
	}
	return slices.Contains(f.Statuses, dl.Status) || f.Failing && dl.Status == webhooks.StatusPending && dl.LastError != ""
}

// Redeliver implements webhooks.Store.
func (d *Deliveries) Redeliver(_ context.Context, tenant, id string, now, deadline time.Time, allow func(webhooks.Delivery) error) (webhooks.Delivery, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dl, ok := d.byID[id]
	if !ok || dl.Tenant != tenant {
		return webhooks.Delivery{}, orchestrator.E("memory.Redeliver", orchestrator.KindNotFound, nil)
	}
	if allow != nil {
		if err := allow(clone(dl)); err != nil {
			return webhooks.Delivery{}, err
		}
	}
	if dl.Status != webhooks.StatusPending || !dl.LeaseUntil.After(now) {
		// A delivery in flight keeps its claim; its FinishDelivery sees
		// Redelivered moved and keeps it pending.
		dl.Owner, dl.LeaseUntil = "", time.Time{}
	}
	dl.Status, dl.NextAttempt, dl.Deadline, dl.Redelivered, dl.UpdatedAt = webhooks.StatusPending, now, deadline, dl.Attempts, now
	dl.Unconfigured = time.Time{}
	// Resend, as Redelivered cannot tell a delivery never attempted yet
	// (Attempts 0) redelivered from one never redelivered.
	dl.Resend = true
	return clone(dl), nil
}

// Backlog implements webhooks.Store.
func (d *Deliveries) DeliveryBacklog(context.Context) (int, time.Time, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, oldest := 0, time.Time{}
	for _, dl := range d.byID {
		if dl.Status == webhooks.StatusPending {
			n++
			if oldest.IsZero() || dl.CreatedAt.Before(oldest) {
				oldest = dl.CreatedAt
			}
		}
	}
	return n, oldest, nil
}

// PurgeDeliveries implements webhooks.Store: a delivered or dead
// delivery's UpdatedAt is when the attempt that ended it was recorded.
func (d *Deliveries) PurgeDeliveries(_ context.Context, before time.Time, limit int) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var old []*webhooks.Delivery
	for _, dl := range d.byID {
		if dl.Status != webhooks.StatusPending && dl.UpdatedAt.Before(before) {
			old = append(old, dl)
		}
	}
	slices.SortFunc(old, func(a, b *webhooks.Delivery) int { return a.UpdatedAt.Compare(b.UpdatedAt) })
	if limit > 0 && len(old) > limit {
		old = old[:limit]
	}
	if len(old) == 0 {
		return 0, nil
	}
	for _, dl := range old {
		delete(d.byID, dl.ID)
	}
	d.order = slices.DeleteFunc(d.order, func(id string) bool { return d.byID[id] == nil })
	return len(old), nil
}

func clone(dl *webhooks.Delivery) webhooks.Delivery {
	c := *dl
	c.Payload = slices.Clone(dl.Payload)
	return c
}
