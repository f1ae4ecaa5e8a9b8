package memory

import (
	"context"
	"slices"
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
func (d *Deliveries) ClaimDeliveries(_ context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]webhooks.Delivery, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
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
	var out []webhooks.Delivery
	for _, id := range d.order {
		dl := d.byID[id]
		if len(out) == limit {
			break
		}
		if heads[[2]string{webhooks.EndpointKey(dl.Tenant, dl.Endpoint), dl.TransferID}] != dl ||
			dl.NextAttempt.After(now) || dl.LeaseUntil.After(now) {
			continue
		}
		dl.Attempts++
		dl.Owner, dl.LeaseUntil = owner, now.Add(lease)
		out = append(out, clone(dl))
	}
	return out, nil
}

// Finish implements webhooks.Store.
func (d *Deliveries) FinishDelivery(_ context.Context, dl webhooks.Delivery) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur, ok := d.byID[dl.ID]
	if !ok || cur.Status != webhooks.StatusPending || cur.Attempts != dl.Attempts {
		return false, nil
	}
	cur.Status, cur.NextAttempt, cur.UpdatedAt = dl.Status, dl.NextAttempt, dl.UpdatedAt
	cur.LastCode, cur.LastError = dl.LastCode, dl.LastError
	cur.Owner, cur.LeaseUntil = "", time.Time{}
	return true, nil
}

// Deliveries implements webhooks.Store.
func (d *Deliveries) Deliveries(_ context.Context, f webhooks.DeliveryFilter) ([]webhooks.Delivery, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []webhooks.Delivery
	started := f.After == ""
	for i := len(d.order) - 1; i >= 0; i-- {
		dl := d.byID[d.order[i]]
		if !started {
			started = dl.ID == f.After
			continue
		}
		if dl.Tenant != f.Tenant || (f.TransferID != "" && dl.TransferID != f.TransferID) || !selected(dl, f) {
			continue
		}
		if f.Limit > 0 && len(out) == f.Limit {
			return out, true, nil
		}
		out = append(out, clone(dl))
	}
	return out, false, nil
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
func (d *Deliveries) Redeliver(_ context.Context, tenant, id string, now, deadline time.Time) (webhooks.Delivery, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dl, ok := d.byID[id]
	if !ok || dl.Tenant != tenant {
		return webhooks.Delivery{}, orchestrator.E("memory.Redeliver", orchestrator.KindNotFound, nil)
	}
	if dl.Status != webhooks.StatusPending || !dl.LeaseUntil.After(now) {
		// A delivery in flight keeps its claim; it is pending already.
		dl.Status, dl.NextAttempt, dl.Owner, dl.LeaseUntil = webhooks.StatusPending, now, "", time.Time{}
	}
	dl.Deadline, dl.UpdatedAt = deadline, now
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

func clone(dl *webhooks.Delivery) webhooks.Delivery {
	c := *dl
	c.Payload = slices.Clone(dl.Payload)
	return c
}
