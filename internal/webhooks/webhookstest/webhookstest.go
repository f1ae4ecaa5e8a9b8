// Package webhookstest is the conformance suite of webhooks.Store: every
// store (memory, SQLite, PostgreSQL) must pass it, so that the dispatcher
// behaves the same on each.
package webhookstest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/webhooks"
)

// Run runs the suite; open returns an empty store for each subtest.
func Run(t *testing.T, open func(t *testing.T) webhooks.Store) {
	t.Run("Lifecycle", func(t *testing.T) { testLifecycle(t, open(t)) })
	t.Run("ListAndFailing", func(t *testing.T) { testList(t, open(t)) })
	t.Run("ListPagesTwoEndpoints", func(t *testing.T) { testListTwoEndpoints(t, open(t)) })
	t.Run("ListEveryFilter", func(t *testing.T) { testListFilters(t, open(t)) })
	t.Run("ListCursorIsTheTenants", func(t *testing.T) { testListCursorIsTheTenants(t, open(t)) })
	t.Run("ListCursorWithItsPos", func(t *testing.T) { testListCursorWithItsPos(t, open(t)) })
	t.Run("RedeliverDuringAttempt", func(t *testing.T) { testRedeliverDuringAttempt(t, open(t)) })
	t.Run("ConcurrentEnqueue", func(t *testing.T) { testConcurrentEnqueue(t, open(t)) })
	t.Run("ConcurrentClaims", func(t *testing.T) { testConcurrentClaims(t, open(t)) })
	t.Run("ClaimSkipsEndpoints", func(t *testing.T) { testClaimSkips(t, open(t)) })
	t.Run("ClaimEarliestDueFirst", func(t *testing.T) { testClaimEarliestDue(t, open(t)) })
	t.Run("ClaimTiesByID", func(t *testing.T) { testClaimTiesByID(t, open(t)) })
	t.Run("ClaimPastASkippedBacklog", func(t *testing.T) { testClaimPastSkippedBacklog(t, open(t)) })
	t.Run("RedeliveryIsTheHeadAgain", func(t *testing.T) { testRedeliveryHead(t, open(t)) })
	t.Run("RedeliveryBeforeAnyAttempt", func(t *testing.T) { testRedeliveryBeforeAnyAttempt(t, open(t)) })
	t.Run("FinishRacesEnqueue", func(t *testing.T) { testFinishRacesEnqueue(t, open(t)) })
	t.Run("EnqueueMakesHeads", func(t *testing.T) { EnqueueHeads(t, open(t), nil) })
	t.Run("SettleResultsThenClaim", func(t *testing.T) { testSettle(t, open(t)) })
	t.Run("Purge", func(t *testing.T) { testPurge(t, open(t)) })
	t.Run("AResultReadsBack", func(t *testing.T) { testResultReadsBack(t, open(t)) })
	t.Run("UnconfiguredMarkAndARefusedRedelivery", func(t *testing.T) { testUnconfiguredMark(t, open(t)) })
}

// testUnconfiguredMark: a result's Unconfigured mark (a replica found the
// endpoint missing) is stored and read back; a redelivery that allow
// refuses writes nothing and returns allow's error as it is; one made
// clears the mark, which a replica that has the endpoint makes only.
func testUnconfiguredMark(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	d := mk("acme", "crm", "tr_a", 1, 1)
	if err := s.EnqueueDeliveries(ctx, "acme/crm", 0, 1, []webhooks.Delivery{d}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 1, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %+v %v", got, err)
	}
	c := got[0]
	c.LastError, c.UpdatedAt, c.NextAttempt, c.Unconfigured = "not sent: the endpoint is no longer configured", now, now.Add(time.Minute), now
	if stored, ok, err := s.FinishDelivery(ctx, c); !ok || err != nil || !stored.Unconfigured.Equal(now) {
		t.Fatalf("finish: %+v %v %v; want the mark stored", stored, ok, err)
	}
	read := func() webhooks.Delivery {
		t.Helper()
		ds, _, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", TransferID: "tr_a"})
		if err != nil || len(ds) != 1 {
			t.Fatalf("read: %+v %v", ds, err)
		}
		return ds[0]
	}
	if r := read(); !r.Unconfigured.Equal(now) {
		t.Fatalf("read back: the mark is %v, want %v", r.Unconfigured, now)
	}
	refused := errors.New("refused")
	var seen webhooks.Delivery
	_, err = s.Redeliver(ctx, "acme", d.ID, now.Add(time.Second), now.Add(time.Hour), func(dl webhooks.Delivery) error {
		seen = dl
		return refused
	})
	if err != refused || seen.ID != d.ID || seen.Endpoint != "crm" {
		t.Fatalf("a refused redelivery: %v, allow given %+v; want allow's error, given the delivery", err, seen)
	}
	if r := read(); r.Redelivered != 0 || r.Resend || !r.UpdatedAt.Equal(now) || !r.Unconfigured.Equal(now) {
		t.Fatalf("a refused redelivery wrote: %+v", r)
	}
	r, err := s.Redeliver(ctx, "acme", d.ID, now.Add(time.Second), now.Add(time.Hour), func(webhooks.Delivery) error { return nil })
	if err != nil || !r.Unconfigured.IsZero() || !read().Unconfigured.IsZero() {
		t.Fatalf("a redelivery: %+v %v; want the mark cleared", r, err)
	}
}

// now is a fixed time with whole microseconds, which every store keeps.
var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func mk(tenant, endpoint, transfer string, seq, pos int64) webhooks.Delivery {
	key := webhooks.EndpointKey(tenant, endpoint)
	ev := fmt.Sprintf("evt_%s_%d", transfer, seq)
	return webhooks.Delivery{ID: webhooks.DeliveryID(key, ev), Tenant: tenant, Endpoint: endpoint, EventID: ev,
		TransferID: transfer, Seq: seq, Pos: pos, Type: orchestrator.EventStateChanged, Payload: []byte(`{"seq":` + fmt.Sprint(seq) + `}`),
		Status: webhooks.StatusPending, NextAttempt: now, Deadline: now.Add(time.Hour), CreatedAt: now, UpdatedAt: now}
}

// withPayloads fails t unless each claimed delivery of ds carries the
// payload mk made it with: a store that writes it once, apart (the SQLite
// and PostgreSQL stores), must still return it at each claim, after
// the writes of claims, results and redeliveries.
func withPayloads(t *testing.T, what string, ds []webhooks.Delivery) {
	t.Helper()
	for _, d := range ds {
		if want := fmt.Sprintf(`{"seq":%d}`, d.Seq); string(d.Payload) != want {
			t.Fatalf("%s: %s#%d claimed with payload %q, want %q", what, d.TransferID, d.Seq, d.Payload, want)
		}
	}
}

// testLifecycle: the cursor moves with the inserts, a stale cursor is
// refused, only a transfer's first pending delivery is claimed, a lost
// claim's result is ignored, a dead letter releases the next, and
// redelivery is scoped to the tenant.
func testLifecycle(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	key := webhooks.EndpointKey("acme", "crm")
	ds := []webhooks.Delivery{mk("acme", "crm", "tr_a", 1, 1), mk("acme", "crm", "tr_a", 2, 2), mk("acme", "crm", "tr_b", 1, 3)}
	if err := s.EnqueueDeliveries(ctx, key, 0, 3, ds); err != nil {
		t.Fatal(err)
	}
	if err := s.EnqueueDeliveries(ctx, key, 0, 3, ds); err != webhooks.ErrCursorMoved {
		t.Fatalf("a stale cursor: %v, want ErrCursorMoved", err)
	}
	if c, err := s.DeliveryCursor(ctx, key); c != 3 || err != nil {
		t.Fatalf("cursor %d (%v), want 3", c, err)
	}
	if c, err := s.DeliveryCursor(ctx, webhooks.EndpointKey("acme", "other")); c != 0 || err != nil {
		t.Fatalf("an unknown endpoint's cursor %d (%v), want 0", c, err)
	}
	if got, _ := s.ClaimDeliveries(ctx, "r1", now.Add(-time.Second), time.Minute, 10, nil); len(got) != 0 {
		t.Fatalf("claimed before due: %+v", got)
	}
	got, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 10, nil)
	if err != nil || len(got) != 2 || got[0].TransferID != "tr_a" || got[0].Seq != 1 || got[1].TransferID != "tr_b" {
		t.Fatalf("claimed %+v (%v), want tr_a seq 1 and tr_b", got, err)
	}
	if got[0].Attempts != 1 || got[0].Owner != "r1" || string(got[0].Payload) != `{"seq":1}` {
		t.Fatalf("claim: %+v", got[0])
	}
	if again, _ := s.ClaimDeliveries(ctx, "r2", now, time.Minute, 10, nil); len(again) != 0 {
		t.Fatalf("leased deliveries claimed again: %+v", again)
	}
	// The lease of tr_b expires: another replica claims it, and the
	// first one's result no longer applies.
	late := now.Add(2 * time.Minute)
	stolen, _ := s.ClaimDeliveries(ctx, "r2", late, time.Minute, 10, nil)
	if len(stolen) != 2 {
		t.Fatalf("after the leases expired: %+v, want both heads again", stolen)
	}
	withPayloads(t, "claimed again", stolen)
	lost := got[1]
	lost.Status = webhooks.StatusDelivered
	if _, ok, err := s.FinishDelivery(ctx, lost); ok || err != nil {
		t.Fatalf("a lost claim finished: %v %v", ok, err)
	}
	if stolen[1].TransferID != "tr_b" {
		t.Fatalf("after the leases expired: %+v", stolen)
	}
	delivered := stolen[1]
	delivered.Status, delivered.LastCode, delivered.UpdatedAt = webhooks.StatusDelivered, 204, late
	if _, ok, err := s.FinishDelivery(ctx, delivered); !ok || err != nil {
		t.Fatalf("finish tr_b: %v %v", ok, err)
	}
	{
		d := stolen[0]
		// tr_a seq 1 keeps failing until it is dead; seq 2 then becomes
		// the head.
		d.Status, d.LastCode, d.LastError, d.UpdatedAt = webhooks.StatusPending, 500, "the endpoint answered 500", late
		d.NextAttempt = late.Add(time.Hour)
		if _, ok, err := s.FinishDelivery(ctx, d); !ok || err != nil {
			t.Fatalf("finish: %v %v", ok, err)
		}
		if list, _, _ := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", Failing: true}); len(list) != 1 || list[0].ID != d.ID || list[0].LastCode != 500 {
			t.Fatalf("failing: %+v", list)
		}
		if next, _ := s.ClaimDeliveries(ctx, "r2", late, time.Minute, 10, nil); len(next) != 0 {
			t.Fatalf("claimed past a failing head: %+v", next)
		}
		dead, _ := s.ClaimDeliveries(ctx, "r2", late.Add(time.Hour), time.Minute, 10, nil)
		if len(dead) != 1 || dead[0].Attempts != 3 {
			t.Fatalf("retry: %+v", dead)
		}
		withPayloads(t, "retried after a failed attempt", dead)
		dead[0].Status = webhooks.StatusDead
		if _, ok, err := s.FinishDelivery(ctx, dead[0]); !ok || err != nil {
			t.Fatalf("dead: %v %v", ok, err)
		}
		next, _ := s.ClaimDeliveries(ctx, "r2", late.Add(time.Hour), time.Minute, 10, nil)
		if len(next) != 1 || next[0].Seq != 2 {
			t.Fatalf("after a dead letter: %+v, want seq 2", next)
		}
		withPayloads(t, "the next head", next)
		if n, oldest, err := s.DeliveryBacklog(ctx); n != 1 || !oldest.Equal(now) || err != nil {
			t.Fatalf("backlog %d %v (%v), want 1 since %v", n, oldest, err, now)
		}
		if _, err := s.Redeliver(ctx, "other", d.ID, late, late.Add(time.Hour), nil); orchestrator.KindOf(err) != orchestrator.KindNotFound {
			t.Fatalf("another tenant redelivered: %v", err)
		}
		if _, err := s.Redeliver(ctx, "acme", "dlv_nope", late, late.Add(time.Hour), nil); orchestrator.KindOf(err) != orchestrator.KindNotFound {
			t.Fatalf("no such delivery: %v", err)
		}
		r, err := s.Redeliver(ctx, "acme", d.ID, late, late.Add(24*time.Hour), nil)
		if err != nil || r.Status != webhooks.StatusPending || !r.Deadline.Equal(late.Add(24*time.Hour)) {
			t.Fatalf("redeliver: %+v %v", r, err)
		}
		// The redelivered dead letter is its transfer's head again.
		again, err := s.ClaimDeliveries(ctx, "r3", late.Add(2*time.Hour), time.Minute, 10, nil)
		if err != nil || len(again) != 1 || again[0].ID != d.ID {
			t.Fatalf("claimed after the redelivery: %+v (%v), want it", again, err)
		}
		withPayloads(t, "redelivered", again)
	}
	if list, _, _ := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", Statuses: []webhooks.Status{webhooks.StatusPending}}); len(list) != 2 {
		t.Fatalf("pending %d, want 2", len(list))
	}
}

// testList: newest first, paged by the last id, scoped to the tenant and
// to a transfer.
func testList(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	var ds []webhooks.Delivery
	for i := int64(1); i <= 5; i++ {
		ds = append(ds, mk("acme", "crm", fmt.Sprintf("tr_%d", i%2), i, i))
	}
	if err := s.EnqueueDeliveries(ctx, webhooks.EndpointKey("acme", "crm"), 0, 5, ds); err != nil {
		t.Fatal(err)
	}
	if err := s.EnqueueDeliveries(ctx, webhooks.EndpointKey("zeta", "crm"), 0, 6, []webhooks.Delivery{mk("zeta", "crm", "tr_z", 1, 6)}); err != nil {
		t.Fatal(err)
	}
	page, more, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", Limit: 2})
	if err != nil || !more || len(page) != 2 || page[0].Pos != 5 || page[1].Pos != 4 {
		t.Fatalf("first page %+v more=%v (%v)", page, more, err)
	}
	page, more, _ = s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", Limit: 2, After: page[1].ID})
	if more != true || len(page) != 2 || page[0].Pos != 3 {
		t.Fatalf("second page %+v more=%v", page, more)
	}
	page, more, _ = s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", Limit: 2, After: page[1].ID})
	if more || len(page) != 1 || page[0].Pos != 1 {
		t.Fatalf("last page %+v more=%v", page, more)
	}
	one, _, _ := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", TransferID: "tr_0"})
	if len(one) != 2 || one[0].Seq != 4 || one[1].Seq != 2 {
		t.Fatalf("tr_0's deliveries: %+v", one)
	}
	if dead, _, _ := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", Statuses: []webhooks.Status{webhooks.StatusDead}}); len(dead) != 0 {
		t.Fatalf("dead: %+v", dead)
	}
}

// testListTwoEndpoints: a tenant with two endpoints has a delivery per
// endpoint of each event, both with the event's Pos. Paged by the last id
// at every page size, the listing holds each delivery once, in (Pos, ID)
// order, descending: a cursor of pos alone skipped the sibling of the
// page's last delivery.
func testListTwoEndpoints(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	const events = 3
	for _, ep := range []string{"crm", "audit"} {
		var ds []webhooks.Delivery
		for pos := int64(1); pos <= events; pos++ {
			ds = append(ds, mk("acme", ep, "tr_a", pos, pos))
		}
		if err := s.EnqueueDeliveries(ctx, webhooks.EndpointKey("acme", ep), 0, events, ds); err != nil {
			t.Fatal(err)
		}
	}
	all, more, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme"})
	if err != nil || more || len(all) != 2*events {
		t.Fatalf("unpaged: %d deliveries, more=%v (%v), want %d", len(all), more, err, 2*events)
	}
	for i := 1; i < len(all); i++ {
		if a, b := all[i-1], all[i]; a.Pos < b.Pos || a.Pos == b.Pos && a.ID <= b.ID {
			t.Fatalf("unpaged: %s (pos %d) listed before %s (pos %d), want (pos, id) descending", a.ID, a.Pos, b.ID, b.Pos)
		}
	}
	for _, withPos := range []bool{false, true} {
		for limit := 1; limit <= 2*events; limit++ {
			var got []string
			var after string
			var afterPos int64
			for page := 0; page <= 2*events; page++ {
				ds, more, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", Limit: limit, After: after, AfterPos: afterPos})
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range ds {
					got = append(got, d.ID)
				}
				if !more {
					break
				}
				after = ds[len(ds)-1].ID
				if withPos {
					afterPos = ds[len(ds)-1].Pos
				}
			}
			var want []string
			for _, d := range all {
				want = append(want, d.ID)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("pages of %d (cursor with its pos: %v) listed %v, want %v", limit, withPos, got, want)
			}
		}
	}
}

// enqueueBesideZeta enqueues acme's deliveries to its crm endpoint (the
// endpoint's cursor moved to upTo) and one delivery of tenant zeta at
// position 4, which it returns: the cursor tests' two tenants.
func enqueueBesideZeta(t *testing.T, s webhooks.Store, acme []webhooks.Delivery, upTo int64) webhooks.Delivery {
	t.Helper()
	ctx := context.Background()
	if err := s.EnqueueDeliveries(ctx, webhooks.EndpointKey("acme", "crm"), 0, upTo, acme); err != nil {
		t.Fatal(err)
	}
	zeta := mk("zeta", "crm", "tr_z", 1, 4)
	if err := s.EnqueueDeliveries(ctx, webhooks.EndpointKey("zeta", "crm"), 0, 4, []webhooks.Delivery{zeta}); err != nil {
		t.Fatal(err)
	}
	return zeta
}

// testListCursorWithItsPos: a cursor given with its Pos is the key
// itself, on every list the API offers. One whose delivery is gone (a
// purge between two pages) lists on from where it stood, where the id
// alone is ErrUnknownCursor; another tenant's key bounds the tenant's own
// deliveries only, as any pair of values would, and tells nothing of the
// other's.
func testListCursorWithItsPos(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	var acme []webhooks.Delivery
	for pos := int64(1); pos <= 5; pos++ {
		d := mk("acme", "crm", "tr_a", pos, pos)
		if pos%2 == 0 {
			d.Status, d.Attempts, d.LastCode, d.LastError = webhooks.StatusDead, 3, 500, "HTTP 500"
		}
		acme = append(acme, d)
	}
	gone := acme[2] // never stored: as if purged after the page it ended
	zeta := enqueueBesideZeta(t, s, slices.Delete(slices.Clone(acme), 2, 3), 5)
	for name, f := range ListFilters() {
		f.Tenant = "acme"
		all, _, err := s.Deliveries(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		for what, cur := range map[string]webhooks.Delivery{"a delivery gone": gone, "another tenant's": zeta} {
			var want []string
			for _, d := range all {
				if d.Pos < cur.Pos || d.Pos == cur.Pos && d.ID < cur.ID {
					want = append(want, d.ID)
				}
			}
			g := f
			g.After, g.AfterPos = cur.ID, cur.Pos
			ds, more, err := s.Deliveries(ctx, g)
			var got []string
			for _, d := range ds {
				got = append(got, d.ID)
			}
			if err != nil || more || fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s, after %s with its pos: %v, more=%v (%v); want %v", name, what, got, more, err, want)
			}
		}
		g := f
		g.After = gone.ID
		if _, _, err := s.Deliveries(ctx, g); !errors.Is(err, webhooks.ErrUnknownCursor) {
			t.Errorf("%s, after a delivery gone, by its id alone: %v; want ErrUnknownCursor", name, err)
		}
	}
}

// testListCursorIsTheTenants: a list's cursor names one of the tenant's
// deliveries. Another tenant's, like one that does not exist, lists
// nothing and is ErrUnknownCursor (kind KindInvalid), on every list the
// API offers: looked up across tenants, zeta's newest delivery as acme's
// cursor listed acme's deliveries, and a cursor that did not exist
// listed none, which told whether zeta's existed. The tenant's own
// cursor pages on, to an empty page after its oldest delivery.
func testListCursorIsTheTenants(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	var acme []webhooks.Delivery
	for pos := int64(1); pos <= 3; pos++ {
		acme = append(acme, mk("acme", "crm", "tr_a", pos, pos))
	}
	acme[1].Status, acme[1].Attempts, acme[1].LastCode, acme[1].LastError = webhooks.StatusDead, 3, 500, "HTTP 500"
	zeta := enqueueBesideZeta(t, s, acme, 3)
	for name, f := range ListFilters() {
		f.Tenant = "acme"
		for what, after := range map[string]string{"another tenant's delivery": zeta.ID, "no delivery": "dlv_nope"} {
			f.After = after
			ds, more, err := s.Deliveries(ctx, f)
			if !errors.Is(err, webhooks.ErrUnknownCursor) || orchestrator.KindOf(err) != orchestrator.KindInvalid || len(ds) != 0 || more {
				t.Errorf("%s, after %s: %d deliveries, more=%v (%v); want none and ErrUnknownCursor of kind invalid", name, what, len(ds), more, err)
			}
		}
	}
	for _, after := range []string{acme[2].ID, acme[0].ID} {
		if _, _, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", After: after}); err != nil {
			t.Errorf("after the tenant's own delivery %s: %v", after, err)
		}
	}
	if ds, _, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", After: acme[2].ID, Limit: 1}); err != nil || len(ds) != 1 || ds[0].ID != acme[1].ID {
		t.Errorf("after the tenant's newest delivery: %+v (%v), want %s", ds, err, acme[1].ID)
	}
}

// ListFilters are the lists of deliveries GET /v1/webhook-deliveries
// offers, by name, for the stores' plan tests: a tenant's, by default
// its failed ones (failing and dead), by status, or one transfer's.
func ListFilters() map[string]webhooks.DeliveryFilter {
	transfer := orchestrator.NewID(time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC))
	dead, pending, delivered := webhooks.StatusDead, webhooks.StatusPending, webhooks.StatusDelivered
	return map[string]webhooks.DeliveryFilter{
		"tenant":            {},
		"failed":            {Statuses: []webhooks.Status{dead}, Failing: true},
		"failing":           {Failing: true},
		"dead":              {Statuses: []webhooks.Status{dead}},
		"pending":           {Statuses: []webhooks.Status{pending}},
		"pending+dead":      {Statuses: []webhooks.Status{dead, pending}, Failing: true},
		"delivered":         {Statuses: []webhooks.Status{delivered}},
		"delivered+failing": {Statuses: []webhooks.Status{delivered}, Failing: true},
		"transfer":          {TransferID: transfer},
		"transfer, failed":  {TransferID: transfer, Statuses: []webhooks.Status{dead}, Failing: true},
	}
}

// testListFilters: every list the API offers (each set of statuses, with
// and without failing, a tenant's or one transfer's), paged by the last id
// at several page sizes, holds exactly the deliveries the filter selects,
// each once, in (Pos, ID) order, descending, whatever the store reads
// them from: the SQLite and PostgreSQL stores read the kinds that
// exclude delivered ones (webhooks.ListKinds) from an index each, a page
// per kind, and merge them. Two endpoints give each event two deliveries
// that share its Pos, in different statuses; another tenant's deliveries
// of every status never show.
func testListFilters(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	const events = 12
	kinds := []string{"delivered", "dead", "failing", "pending"}
	var acme []webhooks.Delivery
	for _, tenant := range []string{"acme", "zeta"} {
		for e, ep := range []string{"crm", "audit"} {
			var ds []webhooks.Delivery
			for pos := int64(1); pos <= events; pos++ {
				d := mk(tenant, ep, fmt.Sprintf("tr_%d", pos%4), pos, pos)
				// Enqueued as given: a delivery's status and result too.
				switch kinds[(pos+pos/4+int64(e))%4] {
				case "delivered":
					d.Status, d.Attempts, d.LastCode = webhooks.StatusDelivered, 1, 204
				case "dead":
					d.Status, d.Attempts, d.LastCode, d.LastError = webhooks.StatusDead, 5, 500, "the endpoint answered 500"
				case "failing":
					d.Attempts, d.LastCode, d.LastError = 2, 503, "the endpoint answered 503"
				}
				ds = append(ds, d)
			}
			if err := s.EnqueueDeliveries(ctx, webhooks.EndpointKey(tenant, ep), 0, events, ds); err != nil {
				t.Fatal(err)
			}
			if tenant == "acme" {
				acme = append(acme, ds...)
			}
		}
	}
	slices.SortFunc(acme, func(a, b webhooks.Delivery) int {
		if a.Pos != b.Pos {
			return int(b.Pos - a.Pos)
		}
		return strings.Compare(b.ID, a.ID)
	})
	// What a filter selects: Statuses and Failing widen each other, either
	// alone narrows, neither selects all.
	selects := func(f webhooks.DeliveryFilter, d webhooks.Delivery) bool {
		if f.TransferID != "" && d.TransferID != f.TransferID {
			return false
		}
		return len(f.Statuses) == 0 && !f.Failing || slices.Contains(f.Statuses, d.Status) ||
			f.Failing && d.Status == webhooks.StatusPending && d.LastError != ""
	}
	all := []webhooks.Status{webhooks.StatusPending, webhooks.StatusDelivered, webhooks.StatusDead}
	for set := range 1 << len(all) {
		var sts []webhooks.Status
		for i, st := range all {
			if set&(1<<i) != 0 {
				sts = append(sts, st)
			}
		}
		for _, failing := range []bool{false, true} {
			for _, transfer := range []string{"", "tr_1"} {
				f := webhooks.DeliveryFilter{Tenant: "acme", Statuses: sts, Failing: failing, TransferID: transfer}
				var want []string
				for _, d := range acme {
					if selects(f, d) {
						want = append(want, d.ID)
					}
				}
				for _, limit := range []int{0, 1, 2, 3, 5} {
					var got []string
					f.After = ""
					for page := 0; page <= 2*events; page++ {
						f.Limit = limit
						ds, more, err := s.Deliveries(ctx, f)
						if err != nil {
							t.Fatalf("%v failing=%v transfer=%q: %v", sts, failing, transfer, err)
						}
						for _, d := range ds {
							got = append(got, d.ID)
						}
						if !more {
							break
						}
						f.After = ds[len(ds)-1].ID
					}
					if !slices.Equal(got, want) {
						t.Errorf("%v failing=%v transfer=%q, pages of %d: listed %d %v, want %d %v",
							sts, failing, transfer, limit, len(got), got, len(want), want)
					}
				}
			}
		}
	}
}

// testRedeliverDuringAttempt: a redelivery made while an attempt is in
// flight wins over the attempt's result, whatever it is: the delivery
// stays pending, due when it was redelivered, with the attempt's code and
// error, and its lease released. The claim's fence still holds, and the
// next claim counts its attempts from the redelivery (Redelivered).
func testRedeliverDuringAttempt(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	ds := []webhooks.Delivery{mk("acme", "crm", "tr_a", 1, 1), mk("acme", "crm", "tr_b", 1, 2)}
	if err := s.EnqueueDeliveries(ctx, webhooks.EndpointKey("acme", "crm"), 0, 2, ds); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 10, nil)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claimed %+v (%v), want both", claimed, err)
	}
	at := now.Add(time.Second)
	for _, c := range claimed {
		r, err := s.Redeliver(ctx, "acme", c.ID, at, at.Add(24*time.Hour), nil)
		if err != nil || r.Status != webhooks.StatusPending || !r.Deadline.Equal(at.Add(24*time.Hour)) || r.Redelivered != 1 {
			t.Fatalf("redeliver in flight: %+v (%v), want pending with the new deadline and Redelivered 1", r, err)
		}
	}
	// tr_a's attempt fails past the deadline its claim carries (dead),
	// tr_b's is delivered: both stay pending, due at the redelivery.
	results := []struct {
		status webhooks.Status
		code   int
		err    string
	}{{webhooks.StatusDead, 503, "the endpoint answered 503"}, {webhooks.StatusDelivered, 204, ""}}
	for i, res := range results {
		c := claimed[i]
		c.Status, c.LastCode, c.LastError, c.UpdatedAt = res.status, res.code, res.err, at.Add(time.Second)
		got, ok, err := s.FinishDelivery(ctx, c)
		if !ok || err != nil {
			t.Fatalf("finish %s after a redelivery: %v %v", c.TransferID, ok, err)
		}
		if got.Status != webhooks.StatusPending || !got.NextAttempt.Equal(at) || got.LastCode != res.code || got.LastError != res.err ||
			got.Owner != "" || !got.LeaseUntil.IsZero() || !got.Deadline.Equal(at.Add(24*time.Hour)) {
			t.Errorf("%s %s during a redelivery, stored %+v; want pending, due at %v, code %d, lease released",
				c.TransferID, res.status, got, at, res.code)
		}
	}
	list, _, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", Statuses: []webhooks.Status{webhooks.StatusPending}})
	if err != nil || len(list) != 2 {
		t.Fatalf("pending after the attempts: %+v (%v), want both", list, err)
	}
	again, err := s.ClaimDeliveries(ctx, "r2", at, time.Minute, 10, nil)
	if err != nil || len(again) != 2 {
		t.Fatalf("claimed at the redelivery %+v (%v), want both", again, err)
	}
	for _, c := range again {
		if c.Attempts != 2 || c.Redelivered != 1 {
			t.Errorf("%s claimed with Attempts %d, Redelivered %d; want 2 and 1", c.TransferID, c.Attempts, c.Redelivered)
		}
	}
	stale := claimed[0]
	stale.Status = webhooks.StatusDead
	if _, ok, err := s.FinishDelivery(ctx, stale); ok || err != nil {
		t.Errorf("the first claim finished after the next claim: %v %v", ok, err)
	}
	// A result without a redelivery since its claim is stored as it is.
	done := again[0]
	done.Status, done.LastCode, done.LastError = webhooks.StatusDelivered, 204, ""
	if got, ok, err := s.FinishDelivery(ctx, done); !ok || err != nil || got.Status != webhooks.StatusDelivered {
		t.Errorf("finish without a redelivery: %+v %v %v, want delivered", got, ok, err)
	}
}

// testConcurrentEnqueue: replicas that read the same cursor enqueue the
// same events; exactly one succeeds, so none is copied twice.
func testConcurrentEnqueue(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	key := webhooks.EndpointKey("acme", "crm")
	ds := []webhooks.Delivery{mk("acme", "crm", "tr_a", 1, 1)}
	const n = 8
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { errs <- s.EnqueueDeliveries(ctx, key, 0, 1, ds) })
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		switch err {
		case nil:
			ok++
		case webhooks.ErrCursorMoved:
		default:
			t.Fatal(err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d enqueues succeeded, want 1", ok)
	}
}

// testConcurrentClaims: replicas claiming at once never hold one delivery
// together, and never one past its transfer's first pending delivery.
func testConcurrentClaims(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	key := webhooks.EndpointKey("acme", "crm")
	var ds []webhooks.Delivery
	pos := int64(0)
	for seq := int64(1); seq <= 3; seq++ {
		for tr := range 20 {
			pos++
			ds = append(ds, mk("acme", "crm", fmt.Sprintf("tr_%02d", tr), seq, pos))
		}
	}
	if err := s.EnqueueDeliveries(ctx, key, 0, pos, ds); err != nil {
		t.Fatal(err)
	}
	for seq := int64(1); seq <= 3; seq++ {
		var mu sync.Mutex
		claimed := map[string]webhooks.Delivery{}
		var wg sync.WaitGroup
		for r := range 4 {
			wg.Go(func() {
				got, err := s.ClaimDeliveries(ctx, fmt.Sprint("r", r), now, time.Minute, 100, nil)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				for _, d := range got {
					if _, dup := claimed[d.ID]; dup {
						t.Errorf("%s claimed twice", d.ID)
					}
					claimed[d.ID] = d
					if d.Seq != seq {
						t.Errorf("%s seq %d claimed while seq %d is pending", d.TransferID, d.Seq, seq)
					}
				}
			})
		}
		wg.Wait()
		// Delivered only once every replica claimed, so that the next
		// seq becomes due in the next round only.
		for _, d := range claimed {
			d.Status = webhooks.StatusDelivered
			if _, ok, err := s.FinishDelivery(ctx, d); !ok || err != nil {
				t.Fatalf("finish %s: %v %v", d.ID, ok, err)
			}
		}
		if len(claimed) != 20 {
			t.Fatalf("round %d: %d claimed, want 20", seq, len(claimed))
		}
	}
}

// testPurge: PurgeDeliveries deletes the delivered and dead deliveries
// that stopped being pending before the cut, oldest first, at most limit
// of them; never a pending one, however old (never attempted, failing,
// or a dead letter redelivered), nor one that finished after the cut,
// however long ago it was made. All of them were made a month before the
// cut: a purge by CreatedAt would take them all.
// testClaimSkips: a claim leaves the endpoints it is told to skip alone
// (their older deliveries included) and still claims the others', oldest
// first across endpoints whatever the order they were enqueued in; an
// empty skip list skips nothing.
func testClaimSkips(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	slow, fast := webhooks.EndpointKey("acme", "slow"), webhooks.EndpointKey("beta", "crm")
	// Enqueued out of position order (each endpoint enqueues its own
	// batch): the claims still go oldest first across endpoints.
	if err := s.EnqueueDeliveries(ctx, fast, 0, 4, []webhooks.Delivery{mk("beta", "crm", "tr_c", 1, 3), mk("beta", "crm", "tr_d", 1, 4)}); err != nil {
		t.Fatal(err)
	}
	if err := s.EnqueueDeliveries(ctx, slow, 0, 2, []webhooks.Delivery{mk("acme", "slow", "tr_a", 1, 1), mk("acme", "slow", "tr_b", 1, 2)}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 1, []string{slow})
	if err != nil || len(got) != 1 || got[0].TransferID != "tr_c" {
		t.Fatalf("claimed %+v (%v) skipping %s, want tr_c alone", got, err, slow)
	}
	if none, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 10, []string{slow, fast}); err != nil || len(none) != 0 {
		t.Fatalf("claimed %+v (%v) skipping both endpoints", none, err)
	}
	rest, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 10, []string{})
	if err != nil || len(rest) != 3 || rest[0].TransferID != "tr_a" || rest[1].TransferID != "tr_b" || rest[2].TransferID != "tr_d" {
		t.Fatalf("claimed %+v (%v) skipping nothing, want tr_a, tr_b, tr_d", rest, err)
	}
}

func testPurge(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	key := webhooks.EndpointKey("acme", "crm")
	made := now.Add(-30 * 24 * time.Hour)
	old := func(transfer string, pos int64) webhooks.Delivery {
		d := mk("acme", "crm", transfer, 1, pos)
		d.CreatedAt, d.UpdatedAt, d.NextAttempt, d.Deadline = made, made, made, now.Add(time.Hour)
		return d
	}
	ds := []webhooks.Delivery{old("tr_delivered", 1), old("tr_dead", 2), old("tr_young", 3), old("tr_failing", 4),
		old("tr_revived", 5), old("tr_redone", 6)}
	if err := s.EnqueueDeliveries(ctx, key, 0, 6, ds); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.ClaimDeliveries(ctx, "r1", made, time.Minute, 10, nil)
	if err != nil || len(claimed) != len(ds) {
		t.Fatalf("claimed %d (%v), want %d", len(claimed), err, len(ds))
	}
	ids := map[string]string{} // by transfer
	for _, d := range ds {
		ids[d.TransferID] = d.ID
	}
	finish := func(d webhooks.Delivery, st webhooks.Status, at time.Time) {
		t.Helper()
		d.Status, d.UpdatedAt, d.NextAttempt = st, at, now.Add(time.Hour)
		if st != webhooks.StatusDelivered {
			d.LastCode, d.LastError = 500, "the endpoint answered 500"
		}
		if _, ok, err := s.FinishDelivery(ctx, d); !ok || err != nil {
			t.Fatalf("finish %s %s: %v %v", d.TransferID, st, ok, err)
		}
	}
	for _, c := range claimed {
		switch c.TransferID {
		case "tr_delivered":
			finish(c, webhooks.StatusDelivered, now.Add(-48*time.Hour))
		case "tr_dead":
			finish(c, webhooks.StatusDead, now.Add(-47*time.Hour))
		case "tr_young":
			finish(c, webhooks.StatusDelivered, now.Add(-time.Hour))
		case "tr_failing":
			finish(c, webhooks.StatusPending, now.Add(-40*time.Hour)) // due an hour after now
		default: // tr_revived, tr_redone: dead letters
			finish(c, webhooks.StatusDead, now.Add(-46*time.Hour))
		}
	}
	// tr_revived is redelivered (pending, due now); tr_redone too, three
	// hours ago, and delivered then.
	if _, err := s.Redeliver(ctx, "acme", ids["tr_revived"], now, now.Add(24*time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Redeliver(ctx, "acme", ids["tr_redone"], now.Add(-3*time.Hour), now.Add(21*time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	redone, err := s.ClaimDeliveries(ctx, "r1", now.Add(-3*time.Hour), time.Minute, 10, nil)
	if err != nil || len(redone) != 1 || redone[0].TransferID != "tr_redone" {
		t.Fatalf("claimed %+v (%v), want tr_redone", redone, err)
	}
	finish(redone[0], webhooks.StatusDelivered, now.Add(-2*time.Hour))
	// One never attempted.
	never := old("tr_never", 7)
	ids[never.TransferID] = never.ID
	if err := s.EnqueueDeliveries(ctx, key, 6, 7, []webhooks.Delivery{never}); err != nil {
		t.Fatal(err)
	}

	stored := func() []string {
		t.Helper()
		list, _, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range list {
			out = append(out, d.TransferID)
		}
		return out
	}
	purge := func(before time.Time, limit, want int, left string) {
		t.Helper()
		if n, err := s.PurgeDeliveries(ctx, before, limit); n != want || err != nil {
			t.Fatalf("purge before %v, limit %d: %d (%v), want %d", before, limit, n, err, want)
		}
		if got := fmt.Sprint(stored()); got != left {
			t.Fatalf("after a purge before %v, limit %d: %s stored, want %s", before, limit, got, left)
		}
	}
	cut := now.Add(-24 * time.Hour) // a retention of a day
	// Oldest first, one per call.
	purge(cut, 1, 1, "[tr_never tr_redone tr_revived tr_failing tr_young tr_dead]")
	purge(cut, 1, 1, "[tr_never tr_redone tr_revived tr_failing tr_young]")
	purge(cut, 10, 0, "[tr_never tr_redone tr_revived tr_failing tr_young]")
	// Past the latest finish, without a limit: only the pending ones stay.
	purge(now.Add(time.Hour), 0, 2, "[tr_never tr_revived tr_failing]")
	if n, oldest, err := s.DeliveryBacklog(ctx); n != 3 || !oldest.Equal(made) || err != nil {
		t.Fatalf("backlog %d since %v (%v), want the 3 pending since %v", n, oldest, err, made)
	}
	// The revived dead letter is still claimable and deliverable.
	due, err := s.ClaimDeliveries(ctx, "r2", now, time.Minute, 10, nil)
	if err != nil || len(due) != 2 {
		t.Fatalf("claimed %+v (%v), want tr_never and tr_revived", due, err)
	}
}

// Finish is how Finished ends a delivery's attempt: with Status, at At.
type Finish struct {
	Status webhooks.Status
	At     time.Time
}

// Finished enqueues, into an empty store, one delivery per transfer of
// at, each made a month before at's times, and records one attempt of
// each, which ends as at says (a pending one failed then). It returns the
// deliveries' ids by transfer. The stores' tests use it to make finished
// deliveries in a database they then take back to an older schema.
func Finished(t testing.TB, s webhooks.Store, at map[string]Finish) map[string]string {
	t.Helper()
	ctx := context.Background()
	made := now.Add(-30 * 24 * time.Hour)
	var ds []webhooks.Delivery
	ids := map[string]string{}
	for tr := range at {
		d := mk("acme", "crm", tr, 1, int64(len(ds)+1))
		d.CreatedAt, d.UpdatedAt, d.NextAttempt, d.Deadline = made, made, made, now.Add(time.Hour)
		ds = append(ds, d)
		ids[tr] = d.ID
	}
	if err := s.EnqueueDeliveries(ctx, webhooks.EndpointKey("acme", "crm"), 0, int64(len(ds)), ds); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.ClaimDeliveries(ctx, "r1", made, time.Minute, len(ds), nil)
	if err != nil || len(claimed) != len(ds) {
		t.Fatalf("claimed %d (%v), want %d", len(claimed), err, len(ds))
	}
	for _, d := range claimed {
		d.Status, d.UpdatedAt, d.NextAttempt = at[d.TransferID].Status, at[d.TransferID].At, now.Add(time.Hour)
		if d.Status != webhooks.StatusDelivered {
			d.LastCode, d.LastError = 500, "the endpoint answered 500"
		}
		if _, ok, err := s.FinishDelivery(ctx, d); !ok || err != nil {
			t.Fatalf("finish %s: %v %v", d.TransferID, ok, err)
		}
	}
	return ids
}

// due is mk with the delivery due at `at`.
func due(tenant, endpoint, transfer string, seq, pos int64, at time.Time) webhooks.Delivery {
	d := mk(tenant, endpoint, transfer, seq, pos)
	d.NextAttempt = at
	return d
}

func transfersOf(ds []webhooks.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = fmt.Sprint(d.TransferID, "#", d.Seq)
	}
	return out
}

// testClaimEarliestDue: claims take the earliest claimable first (a
// delivery's NextAttempt, or the expiry of the lease a crashed replica
// left on it), then the lowest Pos; never one not yet due, nor one behind
// another of its transfer, however early it is due.
func testClaimEarliestDue(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	key := webhooks.EndpointKey("acme", "crm")
	ds := []webhooks.Delivery{
		due("acme", "crm", "tr_a", 1, 1, now.Add(-time.Minute)),
		due("acme", "crm", "tr_b", 1, 2, now.Add(-time.Hour)),
		due("acme", "crm", "tr_c", 1, 3, now.Add(-time.Hour)),
		due("acme", "crm", "tr_a", 2, 4, now.Add(-2*time.Hour)), // behind tr_a#1
		due("acme", "crm", "tr_d", 1, 5, now.Add(time.Second)),  // not yet due
		due("acme", "crm", "tr_e", 1, 6, now.Add(-30*time.Second)),
	}
	if err := s.EnqueueDeliveries(ctx, key, 0, 6, ds); err != nil {
		t.Fatal(err)
	}
	got, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 3, nil)
	if fmt.Sprint(transfersOf(got)) != "[tr_b#1 tr_c#1 tr_a#1]" || err != nil {
		t.Fatalf("claimed %v (%v), want tr_b#1 tr_c#1 tr_a#1", transfersOf(got), err)
	}
	// r1 crashes (its leases expire a minute on); tr_e and tr_d become
	// due, and r2 takes them for a second.
	if got, err := s.ClaimDeliveries(ctx, "r2", now.Add(2*time.Second), time.Second, 10, nil); fmt.Sprint(transfersOf(got)) != "[tr_e#1 tr_d#1]" || err != nil {
		t.Fatalf("claimed %v (%v), want tr_e#1 tr_d#1", transfersOf(got), err)
	}
	// Both crash. tr_d and tr_e, whose leases expired first, go first,
	// by Pos; then the three whose leases expired together, by Pos.
	if got, err := s.ClaimDeliveries(ctx, "r3", now.Add(time.Minute), time.Minute, 10, nil); fmt.Sprint(transfersOf(got)) != "[tr_d#1 tr_e#1 tr_a#1 tr_b#1 tr_c#1]" || err != nil {
		t.Fatalf("claimed %v (%v), want tr_d#1 tr_e#1 tr_a#1 tr_b#1 tr_c#1", transfersOf(got), err)
	}
}

// testClaimPastASkippedBacklog: an endpoint skipped at its share, with a
// backlog older than everything else and larger than a claim reads in its
// first pass, does not hide the other endpoints' due deliveries: the
// claim takes theirs, earliest first across them, as if the backlog were
// not there.
func testClaimPastSkippedBacklog(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	hung := webhooks.EndpointKey("acme", "hung")
	var backlog []webhooks.Delivery
	for i := range 300 {
		backlog = append(backlog, due("acme", "hung", fmt.Sprintf("tr_h%03d", i), 1, int64(i+1), now.Add(-time.Hour+time.Duration(i)*time.Millisecond)))
	}
	if err := s.EnqueueDeliveries(ctx, hung, 0, 300, backlog); err != nil {
		t.Fatal(err)
	}
	// Three other endpoints, their deliveries due in an order that
	// interleaves them; one not yet due, one behind its transfer's first.
	others := map[string][]webhooks.Delivery{
		"b": {due("beta", "b", "tr_b1", 1, 301, now.Add(-5*time.Second)), due("beta", "b", "tr_b2", 1, 302, now.Add(-2*time.Second)),
			due("beta", "b", "tr_b1", 2, 303, now.Add(-9*time.Second))},
		"c": {due("gamma", "c", "tr_c1", 1, 304, now.Add(-4*time.Second)), due("gamma", "c", "tr_c2", 1, 305, now.Add(time.Second))},
		"d": {due("delta", "d", "tr_d1", 1, 306, now.Add(-3*time.Second)), due("delta", "d", "tr_d2", 1, 307, now.Add(-time.Second))},
	}
	for _, ds := range others {
		if err := s.EnqueueDeliveries(ctx, webhooks.EndpointKey(ds[0].Tenant, ds[0].Endpoint), 0, 307, ds); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 3, []string{hung})
	if fmt.Sprint(transfersOf(got)) != "[tr_b1#1 tr_c1#1 tr_d1#1]" || err != nil {
		t.Fatalf("claimed %v (%v) skipping %s, want tr_b1#1 tr_c1#1 tr_d1#1", transfersOf(got), err, hung)
	}
	got, err = s.ClaimDeliveries(ctx, "r1", now, time.Minute, 10, []string{hung})
	if fmt.Sprint(transfersOf(got)) != "[tr_b2#1 tr_d2#1]" || err != nil {
		t.Fatalf("claimed %v (%v) skipping %s, want tr_b2#1 tr_d2#1", transfersOf(got), err, hung)
	}
	if got, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 2, nil); fmt.Sprint(transfersOf(got)) != "[tr_h000#1 tr_h001#1]" || err != nil {
		t.Fatalf("claimed %v (%v) skipping nothing, want the backlog's first two", transfersOf(got), err)
	}
}

// testRedeliveryHead: a delivered delivery redelivered while a later one
// of its transfer is pending goes first again, and the later one only
// once it is delivered; the same with a dead letter redelivered while the
// next is in flight.
func testRedeliveryHead(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	key := webhooks.EndpointKey("acme", "crm")
	ds := []webhooks.Delivery{mk("acme", "crm", "tr_a", 1, 1), mk("acme", "crm", "tr_a", 2, 2), mk("acme", "crm", "tr_a", 3, 3)}
	if err := s.EnqueueDeliveries(ctx, key, 0, 3, ds); err != nil {
		t.Fatal(err)
	}
	finish := func(d webhooks.Delivery, st webhooks.Status) {
		t.Helper()
		d.Status, d.UpdatedAt = st, now
		if _, ok, err := s.FinishDelivery(ctx, d); !ok || err != nil {
			t.Fatalf("finish %s#%d: %v %v", d.TransferID, d.Seq, ok, err)
		}
	}
	claim := func(at time.Time, want string) []webhooks.Delivery {
		t.Helper()
		got, err := s.ClaimDeliveries(ctx, "r1", at, time.Minute, 10, nil)
		if fmt.Sprint(transfersOf(got)) != want || err != nil {
			t.Fatalf("claimed %v (%v) at %v, want %s", transfersOf(got), err, at.Sub(now), want)
		}
		return got
	}
	first := claim(now, "[tr_a#1]")
	finish(first[0], webhooks.StatusDelivered)
	at := now.Add(time.Second)
	if _, err := s.Redeliver(ctx, "acme", first[0].ID, at, at.Add(time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	again := claim(at, "[tr_a#1]")
	finish(again[0], webhooks.StatusDelivered)
	second := claim(at, "[tr_a#2]")
	finish(second[0], webhooks.StatusDead)
	third := claim(at, "[tr_a#3]")
	// The dead letter is redelivered while #3 is in flight: it goes now,
	// and #3's result leaves it first.
	if _, err := s.Redeliver(ctx, "acme", second[0].ID, at, at.Add(time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	redone := claim(at, "[tr_a#2]")
	third[0].Status, third[0].NextAttempt, third[0].LastError, third[0].UpdatedAt = webhooks.StatusPending, at, "the endpoint answered 503", at
	if _, ok, err := s.FinishDelivery(ctx, third[0]); !ok || err != nil {
		t.Fatalf("finish tr_a#3 failing: %v %v", ok, err)
	}
	redone = claim(at.Add(2*time.Minute), "[tr_a#2]") // its lease expired; #3 still waits behind it
	finish(redone[0], webhooks.StatusDelivered)
	claim(at.Add(3*time.Minute), "[tr_a#3]")
}

// testRedeliveryBeforeAnyAttempt: a redelivery of a delivery never
// attempted yet, waiting behind its transfer's head, is told from none
// (Resend; its Redelivered is its Attempts, 0, as if never redelivered),
// and so is each redelivery after it: Resend is kept by every write until
// the result of an attempt clears it (the dispatcher's result says
// whether the attempt was made; a claim whose result never came leaves
// it), and a redelivery during an attempt keeps it whatever the attempt's
// result says.
func testRedeliveryBeforeAnyAttempt(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	ds := []webhooks.Delivery{mk("acme", "crm", "tr_a", 1, 1), mk("acme", "crm", "tr_a", 2, 2)}
	if err := s.EnqueueDeliveries(ctx, webhooks.EndpointKey("acme", "crm"), 0, 2, ds); err != nil {
		t.Fatal(err)
	}
	resend := func(what, id string, want bool) {
		t.Helper()
		list, _, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", TransferID: "tr_a"})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range list {
			if d.ID == id && d.Resend != want {
				t.Fatalf("%s: tr_a#%d listed with Resend %v, want %v", what, d.Seq, d.Resend, want)
			}
		}
	}
	claim := func(at time.Time, want string) webhooks.Delivery {
		t.Helper()
		got, err := s.ClaimDeliveries(ctx, "r1", at, time.Minute, 10, nil)
		if fmt.Sprint(transfersOf(got)) != want || err != nil {
			t.Fatalf("claimed %v (%v), want %s", transfersOf(got), err, want)
		}
		return got[0]
	}
	finish := func(d webhooks.Delivery) webhooks.Delivery {
		t.Helper()
		got, ok, err := s.FinishDelivery(ctx, d)
		if !ok || err != nil {
			t.Fatalf("finish tr_a#%d: %v %v", d.Seq, ok, err)
		}
		return got
	}
	at := now.Add(time.Second)
	r, err := s.Redeliver(ctx, "acme", ds[1].ID, at, at.Add(time.Hour), nil)
	if err != nil || r.Attempts != 0 || r.Redelivered != 0 || !r.Resend || r.Status != webhooks.StatusPending {
		t.Fatalf("redelivered before any attempt: %+v (%v), want pending, Attempts 0, Resend", r, err)
	}
	resend("redelivered", ds[1].ID, true)
	resend("never redelivered", ds[0].ID, false)
	head := claim(at, "[tr_a#1]") // #2 waits behind its head still
	if head.Resend {
		t.Fatalf("the head, never redelivered, claimed with Resend")
	}
	head.Status, head.UpdatedAt = webhooks.StatusDelivered, at
	finish(head)
	c := claim(at, "[tr_a#2]")
	if !c.Resend || c.Attempts != 1 || c.Redelivered != 0 {
		t.Fatalf("the redelivery claimed: Resend %v, Attempts %d, Redelivered %d; want Resend, 1, 0", c.Resend, c.Attempts, c.Redelivered)
	}
	// Redelivered again while its attempt is in flight: the attempt's
	// result (made, so Resend cleared) does not clear the redelivery.
	later := at.Add(time.Second)
	if _, err := s.Redeliver(ctx, "acme", c.ID, later, later.Add(time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	c.Status, c.Resend, c.LastCode, c.UpdatedAt = webhooks.StatusDelivered, false, 204, later
	if got := finish(c); !got.Resend || got.Status != webhooks.StatusPending {
		t.Fatalf("a redelivery during an attempt, stored %s with Resend %v; want pending, Resend", got.Status, got.Resend)
	}
	// An attempt not made (its claim ran out) keeps it; one made clears it.
	c = claim(later, "[tr_a#2]")
	if !c.Resend || c.Attempts != 2 || c.Redelivered != 1 {
		t.Fatalf("claimed again: Resend %v, Attempts %d, Redelivered %d; want Resend, 2, 1", c.Resend, c.Attempts, c.Redelivered)
	}
	c.NextAttempt, c.LastError, c.UpdatedAt = later, "not sent", later
	if got := finish(c); !got.Resend {
		t.Fatalf("an attempt not made cleared Resend")
	}
	// A claim whose result never came (its replica stopped) leaves it too.
	claim(later, "[tr_a#2]")
	later = later.Add(2 * time.Minute) // past the lease
	c = claim(later, "[tr_a#2]")
	if !c.Resend || c.Attempts != 4 {
		t.Fatalf("claimed once a lease ran out: Resend %v, Attempts %d; want Resend, 4", c.Resend, c.Attempts)
	}
	c.Resend, c.NextAttempt, c.LastCode, c.LastError, c.UpdatedAt = false, later.Add(time.Hour), 500, "the endpoint answered 500", later
	if got := finish(c); got.Resend {
		t.Fatalf("an attempt made left Resend set")
	}
	resend("attempted since", ds[1].ID, false)
}

// testSettle: SettleDeliveries stores each result as FinishDelivery
// would (a lost claim's is refused), then claims as ClaimDeliveries would,
// and the claim sees the heads the results made; with limit 0 it only
// stores the results.
func testSettle(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	crm, slow := webhooks.EndpointKey("acme", "crm"), webhooks.EndpointKey("acme", "slow")
	if err := s.EnqueueDeliveries(ctx, crm, 0, 3, []webhooks.Delivery{mk("acme", "crm", "tr_a", 1, 1), mk("acme", "crm", "tr_a", 2, 2),
		mk("acme", "crm", "tr_b", 1, 3)}); err != nil {
		t.Fatal(err)
	}
	if err := s.EnqueueDeliveries(ctx, slow, 0, 4, []webhooks.Delivery{mk("acme", "slow", "tr_c", 1, 4)}); err != nil {
		t.Fatal(err)
	}
	if vs, got, err := s.SettleDeliveries(ctx, nil, "r1", now, time.Minute, 0, nil); len(vs) != 0 || len(got) != 0 || err != nil {
		t.Fatalf("nothing to settle: %+v %+v (%v)", vs, got, err)
	}
	vs, got, err := s.SettleDeliveries(ctx, nil, "r1", now, time.Minute, 10, []string{slow})
	if err != nil || len(vs) != 0 || fmt.Sprint(transfersOf(got)) != "[tr_a#1 tr_b#1]" {
		t.Fatalf("a claim alone: %v %+v (%v), want [tr_a#1 tr_b#1]", transfersOf(got), vs, err)
	}
	delivered, failed, lost := got[0], got[1], got[1]
	delivered.Status, delivered.LastCode, delivered.UpdatedAt = webhooks.StatusDelivered, 204, now
	failed.LastCode, failed.LastError, failed.UpdatedAt, failed.NextAttempt = 500, "the endpoint answered 500", now, now.Add(time.Hour)
	lost.Attempts = 7 // another claim's
	lost.Status = webhooks.StatusDelivered
	vs, got, err = s.SettleDeliveries(ctx, []webhooks.Delivery{delivered, failed, lost}, "r1", now, 3*time.Hour, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 3 || !vs[0].OK || vs[0].Delivery.Status != webhooks.StatusDelivered || vs[0].Delivery.Owner != "" ||
		!vs[1].OK || vs[1].Delivery.Status != webhooks.StatusPending || vs[1].Delivery.LastCode != 500 || vs[2].OK {
		t.Fatalf("verdicts %+v, want delivered, retried, and the lost claim's refused", vs)
	}
	// tr_a#2 became the head with tr_a#1's result, in the same call;
	// tr_b#1 is in back-off; tr_c#1 is no longer skipped.
	if fmt.Sprint(transfersOf(got)) != "[tr_a#2 tr_c#1]" {
		t.Fatalf("claimed with the results: %v, want [tr_a#2 tr_c#1]", transfersOf(got))
	}
	withPayloads(t, "claimed with the results", got)
	done := got[0]
	done.Status, done.UpdatedAt = webhooks.StatusDelivered, now
	vs, got, err = s.SettleDeliveries(ctx, []webhooks.Delivery{done}, "r1", now.Add(2*time.Hour), time.Minute, 0, nil)
	if err != nil || len(vs) != 1 || !vs[0].OK || len(got) != 0 {
		t.Fatalf("a result alone: %+v %v (%v), want it stored and nothing claimed", vs, transfersOf(got), err)
	}
	list, _, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", Statuses: []webhooks.Status{webhooks.StatusDelivered}})
	if err != nil || fmt.Sprint(transfersOf(list)) != "[tr_a#2 tr_a#1]" {
		t.Fatalf("delivered: %v (%v), want [tr_a#2 tr_a#1]", transfersOf(list), err)
	}
	// What limit 0 left due is claimed by the next claim (tr_c#1 is
	// still leased).
	got, err = s.ClaimDeliveries(ctx, "r1", now.Add(2*time.Hour), time.Minute, 10, nil)
	if err != nil || fmt.Sprint(transfersOf(got)) != "[tr_b#1]" {
		t.Fatalf("after the results: %v (%v), want [tr_b#1]", transfersOf(got), err)
	}
	withPayloads(t, "claimed after its failed attempt", got)
}

// testFinishRacesEnqueue: a finish that ends a transfer's pending
// delivery and the enqueue of the transfer's next event, at once, leave
// the next one claimable, every time. (Each decides which delivery goes
// next from what it sees; two at once must not each miss the other.)
func testFinishRacesEnqueue(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	const n = 100
	var firsts []webhooks.Delivery
	for i := range n {
		ep := fmt.Sprint("ep", i)
		if err := s.EnqueueDeliveries(ctx, webhooks.EndpointKey("acme", ep), 0, 1, []webhooks.Delivery{mk("acme", ep, "tr_a", 1, 1)}); err != nil {
			t.Fatal(err)
		}
	}
	firsts, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, n, nil)
	if err != nil || len(firsts) != n {
		t.Fatalf("claimed %d (%v), want %d", len(firsts), err, n)
	}
	var wg sync.WaitGroup
	for _, d := range firsts {
		wg.Go(func() {
			d.Status, d.UpdatedAt = webhooks.StatusDelivered, now
			if _, ok, err := s.FinishDelivery(ctx, d); !ok || err != nil {
				t.Errorf("finish %s: %v %v", d.Endpoint, ok, err)
			}
		})
		wg.Go(func() {
			if err := s.EnqueueDeliveries(ctx, webhooks.EndpointKey("acme", d.Endpoint), 1, 2, []webhooks.Delivery{mk("acme", d.Endpoint, "tr_a", 2, 2)}); err != nil {
				t.Errorf("enqueue %s: %v", d.Endpoint, err)
			}
		})
	}
	wg.Wait()
	next, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 2*n, nil)
	if err != nil || len(next) != n {
		t.Fatalf("claimed %d of the %d second deliveries (%v): a finish and an enqueue at once left the next unclaimable", len(next), n, err)
	}
	for _, d := range next {
		if d.Seq != 2 {
			t.Errorf("claimed %s#%d, want #2", d.Endpoint, d.Seq)
		}
	}
}

// EnqueueHeads checks the heads enqueues make: a pair's first delivery
// among those enqueued (the lowest Seq, wherever the batch lists it) is
// claimable at once if the pair has nothing pending, and waits behind
// the pair's pending head if not; a delivery enqueued again is left as it
// is, and the next of its pair is the head if it was finished. updated,
// if not nil, returns the ids of the deliveries whose stored rows were
// updated since its last call: an SQL store inserts such a head ready
// rather than writing its row twice, so an enqueue updates no row but
// where a delivery enqueued again left the pair without a head.
func EnqueueHeads(t *testing.T, s webhooks.Store, updated func() []string) {
	ctx := context.Background()
	key := webhooks.EndpointKey("acme", "crm")
	b1, a2, a1, b2 := mk("acme", "crm", "tr_b", 1, 1), mk("acme", "crm", "tr_a", 2, 2), mk("acme", "crm", "tr_a", 1, 2), mk("acme", "crm", "tr_b", 2, 3)
	enqueue := func(from, to int64, ds ...webhooks.Delivery) {
		t.Helper()
		if err := s.EnqueueDeliveries(ctx, key, from, to, ds); err != nil {
			t.Fatal(err)
		}
	}
	noneUpdated := func(what string) {
		t.Helper()
		if updated == nil {
			return
		}
		if ids := updated(); len(ids) > 0 {
			t.Errorf("%s updated %d rows, want none: its heads inserted ready", what, len(ids))
		}
	}
	claimAndDeliver := func(what string, want ...string) {
		t.Helper()
		got, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 10, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(transfersOf(got), want) {
			t.Fatalf("%s: claimed %v, want %v", what, transfersOf(got), want)
		}
		for _, d := range got {
			d.Status, d.UpdatedAt = webhooks.StatusDelivered, now
			if _, ok, err := s.FinishDelivery(ctx, d); !ok || err != nil {
				t.Fatalf("finish %s#%d: %v %v", d.TransferID, d.Seq, ok, err)
			}
		}
		if updated != nil {
			updated() // the claims' and results' writes
		}
	}
	if updated != nil {
		updated()
	}
	enqueue(0, 1, b1)
	noneUpdated("an enqueue into an empty pair")
	enqueue(1, 3, a2, a1, b2)
	noneUpdated("an enqueue of a new pair, listed out of order, and of one with a head")
	claimAndDeliver("the heads", "tr_b#1", "tr_a#1")
	claimAndDeliver("the next", "tr_a#2", "tr_b#2")

	c1, c2 := mk("acme", "crm", "tr_c", 1, 4), mk("acme", "crm", "tr_c", 2, 5)
	enqueue(3, 4, c1)
	noneUpdated("an enqueue after the pairs' deliveries caught up")
	claimAndDeliver("a new transfer's first", "tr_c#1")
	enqueue(4, 5, c1, c2)
	if updated != nil {
		if ids := updated(); !slices.Equal(ids, []string{c2.ID}) {
			t.Errorf("an enqueue after its first delivery was delivered updated %v, want the next one's row (%s) alone", ids, c2.ID)
		}
	}
	claimAndDeliver("after the first was enqueued again", "tr_c#2")
}

// ClaimsBeforeMigration fills s with what a store of the version before
// the claim's ready deliveries had (schema 11 of SQLite, 12 of
// PostgreSQL): transfers whose first delivery is pending, in flight, or
// delivered, with later ones waiting. The caller takes the database back
// to that version and opens it again; ClaimsAfterMigration then checks
// that the migration made ready exactly the deliveries a claim may take.
func ClaimsBeforeMigration(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	ds := []webhooks.Delivery{mk("acme", "crm", "tr_a", 1, 1), mk("acme", "crm", "tr_a", 2, 2),
		mk("acme", "crm", "tr_b", 1, 3), mk("acme", "crm", "tr_b", 2, 4), mk("acme", "crm", "tr_c", 1, 5), mk("acme", "crm", "tr_c", 2, 6)}
	if err := s.EnqueueDeliveries(ctx, webhooks.EndpointKey("acme", "crm"), 0, 6, ds); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 3, nil)
	if err != nil || len(claimed) != 3 {
		t.Fatalf("claimed %v (%v)", transfersOf(claimed), err)
	}
	// tr_a#1 fails (due again in a second), tr_b#1 stays in flight,
	// tr_c#1 is delivered.
	a, c := claimed[0], claimed[2]
	a.NextAttempt, a.LastError, a.UpdatedAt = now.Add(time.Second), "the endpoint answered 503", now
	c.Status, c.UpdatedAt = webhooks.StatusDelivered, now
	for _, d := range []webhooks.Delivery{a, c} {
		if _, ok, err := s.FinishDelivery(ctx, d); !ok || err != nil {
			t.Fatalf("finish %s: %v %v", d.TransferID, ok, err)
		}
	}
}

// ClaimsAfterMigration: see ClaimsBeforeMigration. Each claim carries
// its payload.
func ClaimsAfterMigration(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	for _, c := range []struct {
		at   time.Time
		want string
	}{
		{now, "[tr_c#2]"},
		{now.Add(time.Second), "[tr_a#1]"},
		{now.Add(time.Minute), "[tr_b#1]"},
	} {
		got, err := s.ClaimDeliveries(ctx, "r2", c.at, time.Hour, 10, nil)
		if fmt.Sprint(transfersOf(got)) != c.want || err != nil {
			t.Errorf("claimed %v (%v) at %v after the migration, want %s", transfersOf(got), err, c.at.Sub(now), c.want)
		}
		// Their payloads were in their records then (SQLite's schema
		// 13, PostgreSQL's 15, keep them apart).
		withPayloads(t, "after the migration", got)
	}
}

// testClaimTiesByID: an event's deliveries to several endpoints share its
// Pos and, new, its time: they tie on when they are due and on Pos, and a
// claim takes them by ID, whatever the order of their enqueues, through
// its first pass or past a skipped backlog. The SQL stores took them in
// the order their rows or index held them (found by review).
func testClaimTiesByID(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	var ds []webhooks.Delivery
	for _, ep := range []string{"a", "b", "c", "d", "e", "f"} {
		ds = append(ds, due("acme", ep, "tr_a", 1, 1, now.Add(-time.Minute)))
	}
	slices.SortFunc(ds, func(a, b webhooks.Delivery) int { return strings.Compare(b.ID, a.ID) }) // enqueued last ID first
	for _, d := range ds {
		if err := s.EnqueueDeliveries(ctx, webhooks.EndpointKey(d.Tenant, d.Endpoint), 0, 1, []webhooks.Delivery{d}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 2, nil)
	if err != nil || len(got) != 2 || got[0].ID != ds[5].ID || got[1].ID != ds[4].ID {
		t.Fatalf("claimed %v (%v), want the two lowest IDs, %s then %s", endpointsOf(got), err, ds[5].Endpoint, ds[4].Endpoint)
	}
	// Past a skipped backlog (PickDue's second way), the same order.
	hung := webhooks.EndpointKey("acme", "hung")
	var backlog []webhooks.Delivery
	for i := range 200 {
		backlog = append(backlog, due("acme", "hung", fmt.Sprintf("tr_h%03d", i), 1, 0, now.Add(-time.Hour)))
	}
	if err := s.EnqueueDeliveries(ctx, hung, 0, 1, backlog); err != nil {
		t.Fatal(err)
	}
	got, err = s.ClaimDeliveries(ctx, "r1", now, time.Minute, 2, []string{hung})
	if err != nil || len(got) != 2 || got[0].ID != ds[3].ID || got[1].ID != ds[2].ID {
		t.Fatalf("claimed %v (%v) past a skipped backlog, want %s then %s", endpointsOf(got), err, ds[3].Endpoint, ds[2].Endpoint)
	}
}

func endpointsOf(ds []webhooks.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Endpoint
	}
	return out
}

// testResultReadsBack: a transfer's deliveries, listed, show a claim
// (its Attempts, Owner and lease) and then the result written for it (the
// claim's Attempts, the lease released, the attempt's time to the
// nanosecond, code and error), whichever way the result was written. The
// dispatcher tells so a result its store wrote although the answer was
// lost (Dispatcher.readBack).
func testResultReadsBack(t *testing.T, s webhooks.Store) {
	ctx := context.Background()
	crm := webhooks.EndpointKey("acme", "crm")
	if err := s.EnqueueDeliveries(ctx, crm, 0, 2, []webhooks.Delivery{mk("acme", "crm", "tr_a", 1, 1), mk("acme", "crm", "tr_b", 1, 2)}); err != nil {
		t.Fatal(err)
	}
	read := func(d webhooks.Delivery) webhooks.Delivery {
		t.Helper()
		list, _, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", TransferID: d.TransferID})
		if err != nil || len(list) != 1 || list[0].ID != d.ID {
			t.Fatalf("%s's deliveries: %+v (%v), want %s", d.TransferID, list, err, d.ID)
		}
		return list[0]
	}
	claimed, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 10, nil)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claimed %+v (%v), want both", claimed, err)
	}
	for _, c := range claimed {
		if got := read(c); got.Attempts != 1 || got.Owner != "r1" || !got.LeaseUntil.Equal(now.Add(time.Minute)) {
			t.Fatalf("claimed %s reads back with attempts %d, owner %q, lease until %v", c.ID, got.Attempts, got.Owner, got.LeaseUntil)
		}
	}
	finished, settled := claimed[0], claimed[1]
	at := now.Add(1234567 * time.Nanosecond)
	finished.Status, finished.LastCode, finished.UpdatedAt = webhooks.StatusDelivered, 204, at
	settled.LastCode, settled.LastError, settled.UpdatedAt, settled.NextAttempt = 503, "the endpoint answered 503", at, at.Add(time.Hour)
	if _, ok, err := s.FinishDelivery(ctx, finished); !ok || err != nil {
		t.Fatalf("finish: %v %v", ok, err)
	}
	if vs, _, err := s.SettleDeliveries(ctx, []webhooks.Delivery{settled}, "r1", now, time.Minute, 0, nil); err != nil || len(vs) != 1 || !vs[0].OK {
		t.Fatalf("settle: %+v (%v)", vs, err)
	}
	for _, d := range []webhooks.Delivery{finished, settled} {
		got := read(d)
		if got.Attempts != d.Attempts || got.Owner != "" || !got.LeaseUntil.IsZero() || !got.UpdatedAt.Equal(d.UpdatedAt) ||
			got.LastCode != d.LastCode || got.LastError != d.LastError || got.Status != d.Status {
			t.Errorf("%s reads back as %+v, want the result %+v with its lease released", d.TransferID, got, d)
		}
	}
}
