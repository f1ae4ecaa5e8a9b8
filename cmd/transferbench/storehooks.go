package main

import (
	"context"
	"fmt"
	"time"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/webhooks"
)

// The store scenario's webhook history: every event of the stored
// transfers was delivered to one endpoint of its tenant, as the
// dispatcher enqueues and delivers them, so that the deliveries' lists,
// the event history and stream, a claim and the deliveries' purge are
// timed beside a million transfers' worth of deliveries, as a store with
// webhooks holds them.
const (
	// hookEndpoint is each tenant's endpoint.
	hookEndpoint = "hooks"
	// deadEvery: one delivery in deadEvery is a dead letter (an
	// endpoint's outage); the others were delivered at their first
	// attempt.
	deadEvery = 5000
	// hookBatch is the deliveries of one EnqueueDeliveries.
	hookBatch = 2000
)

// hookFill makes the deliveries of the transfers fill imports, in the
// order it imports them, and enqueues them in batches per endpoint.
type hookFill struct {
	s   webhooks.Store
	now time.Time
	// pos is the position of the last event seen: Import gives a fresh
	// store's events positions 1, 2, 3, … in the order it writes them,
	// which check confirms.
	pos      int64
	last     orchestrator.Event
	cursor   map[string]int64
	batch    map[string][]webhooks.Delivery
	made     int
	dead     int
	middleAt int // the index (benchTransfer's i) where the middle picks are made
	// A transfer of the default tenant from the middle of the history,
	// its first delivery (a cursor) and the position of its first event.
	midTransfer, midDelivery string
	midPos                   int64
}

func newHookFill(s webhooks.Store, n int, now time.Time) *hookFill {
	return &hookFill{s: s, now: now, cursor: map[string]int64{}, batch: map[string][]webhooks.Delivery{}, middleAt: n / 2}
}

// add makes the deliveries of t's events; i is t's index in the history.
func (h *hookFill) add(ctx context.Context, i int, t *orchestrator.Transfer) error {
	key := webhooks.EndpointKey(t.Tenant, hookEndpoint)
	for k, ev := range t.Outbox {
		h.pos++
		ev.Pos, ev.Transfer = h.pos, t
		body, err := api.EventPayload(ev)
		if err != nil {
			return fmt.Errorf("render %s: %w", ev.ID, err)
		}
		d := webhooks.Delivery{ID: webhooks.DeliveryID(key, ev.ID), Tenant: t.Tenant, Endpoint: hookEndpoint, EventID: ev.ID,
			TransferID: t.ID, Seq: ev.Seq, Pos: ev.Pos, Type: ev.Type, Payload: body, Status: webhooks.StatusDelivered,
			Attempts: 1, NextAttempt: ev.At, Deadline: ev.At.Add(24 * time.Hour), CreatedAt: ev.At,
			UpdatedAt: ev.At.Add(40 * time.Millisecond), LastCode: 204}
		if h.made++; h.made%deadEvery == 0 {
			// Tried until its deadline, the endpoint answering 503.
			d.Status, d.Attempts, d.LastCode, d.LastError = webhooks.StatusDead, 14, 503, "HTTP 503"
			d.UpdatedAt = d.Deadline
			if d.UpdatedAt.After(h.now) {
				d.UpdatedAt = h.now
			}
			h.dead++
		}
		if h.midTransfer == "" && i <= h.middleAt && t.Tenant == orchestrator.DefaultTenant && k == 0 {
			h.midTransfer, h.midDelivery, h.midPos = t.ID, d.ID, ev.Pos
		}
		h.last = ev
		if h.batch[key] = append(h.batch[key], d); len(h.batch[key]) >= hookBatch {
			if err := h.flush(ctx, key); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush enqueues an endpoint's batch, moving its cursor to the batch's
// last event, as the dispatcher does.
func (h *hookFill) flush(ctx context.Context, key string) error {
	ds := h.batch[key]
	if len(ds) == 0 {
		return nil
	}
	to := ds[len(ds)-1].Pos
	if err := h.s.EnqueueDeliveries(ctx, key, h.cursor[key], to, ds); err != nil {
		return fmt.Errorf("enqueue deliveries: %w", err)
	}
	h.cursor[key], h.batch[key] = to, ds[:0]
	return nil
}

// finish enqueues what is left and checks that the positions the
// deliveries carry are the events' own: the last event read back at its
// position.
func (h *hookFill) finish(ctx context.Context) error {
	for key := range h.batch {
		if err := h.flush(ctx, key); err != nil {
			return err
		}
	}
	if h.pos == 0 {
		return nil
	}
	evs, err := h.s.Events(ctx, orchestrator.EventFilter{Tenant: h.last.Tenant, After: h.pos - 1, Limit: 1})
	if err != nil {
		return err
	}
	if len(evs) != 1 || evs[0].ID != h.last.ID || evs[0].Pos != h.pos {
		return fmt.Errorf("the store did not give the imported events positions 1 to %d in order (the last is %q, read back %v)",
			h.pos, h.last.ID, evs)
	}
	return nil
}

// hookQuery is a timed read of the webhook history.
type hookQuery struct {
	q string
	f func(ctx context.Context) error
}

// hookQueries are the reads the API and the dispatcher make of the
// webhook history: every deliveries list GET /v1/webhook-deliveries
// offers (a page of 50, the default tenant's), a transfer's event
// history, the event stream resumed from the middle (a page of 200, as
// the API reads them), and a claim that finds nothing due.
func (h *hookFill) hookQueries() []hookQuery {
	list := func(f webhooks.DeliveryFilter) func(context.Context) error {
		f.Tenant, f.Limit = orchestrator.DefaultTenant, 50
		return func(ctx context.Context) error { _, _, err := h.s.Deliveries(ctx, f); return err }
	}
	events := func(f orchestrator.EventFilter) func(context.Context) error {
		f.Tenant, f.Limit = orchestrator.DefaultTenant, 200
		return func(ctx context.Context) error { _, err := h.s.Events(ctx, f); return err }
	}
	failed := []webhooks.Status{webhooks.StatusDead}
	return []hookQuery{
		{"deliveries (failed: the default)", list(webhooks.DeliveryFilter{Statuses: failed, Failing: true})},
		{"deliveries status=delivered", list(webhooks.DeliveryFilter{Statuses: []webhooks.Status{webhooks.StatusDelivered}})},
		{"deliveries status=dead", list(webhooks.DeliveryFilter{Statuses: failed})},
		{"deliveries status=pending (none)", list(webhooks.DeliveryFilter{Statuses: []webhooks.Status{webhooks.StatusPending}})},
		{"deliveries status=failing (none)", list(webhooks.DeliveryFilter{Failing: true})},
		{"deliveries every status", list(webhooks.DeliveryFilter{Statuses: []webhooks.Status{webhooks.StatusPending,
			webhooks.StatusDelivered, webhooks.StatusDead}})},
		{"deliveries transfer_id (middle)", list(webhooks.DeliveryFilter{TransferID: h.midTransfer, Statuses: []webhooks.Status{
			webhooks.StatusPending, webhooks.StatusDelivered, webhooks.StatusDead}})},
		{"deliveries transfer_id, failed", list(webhooks.DeliveryFilter{TransferID: h.midTransfer, Statuses: failed, Failing: true})},
		{"deliveries cursor (middle), failed", list(webhooks.DeliveryFilter{After: h.midDelivery, AfterPos: h.midPos,
			Statuses: failed, Failing: true})},
		{"deliveries cursor (middle), delivered", list(webhooks.DeliveryFilter{After: h.midDelivery, AfterPos: h.midPos,
			Statuses: []webhooks.Status{webhooks.StatusDelivered}})},
		// The cursor of the releases before: the delivery's id alone,
		// looked up.
		{"deliveries id cursor (middle), failed", list(webhooks.DeliveryFilter{After: h.midDelivery, Statuses: failed, Failing: true})},
		{"events of a transfer (middle)", events(orchestrator.EventFilter{TransferID: h.midTransfer})},
		{"event stream from the middle", events(orchestrator.EventFilter{After: h.midPos})},
		{"event stream of a transfer, from the middle", events(orchestrator.EventFilter{TransferID: h.midTransfer, After: h.midPos - 1})},
		{"claim (nothing due)", func(ctx context.Context) error {
			_, err := h.s.ClaimDeliveries(ctx, "transferbench", time.Now().UTC(), time.Minute, 16, nil)
			return err
		}},
	}
}
