package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/sqlite"
	"github.com/transferd/transferd/internal/webhooks"
)

// TestDeliveries: the cursor moves with the inserts, a stale cursor is
// refused, only a transfer's first pending delivery is claimed, a lost
// claim's result is ignored, and redelivery is scoped to the tenant.
func TestDeliveries(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC()
	key := webhooks.EndpointKey("acme", "crm")
	mk := func(seq int64, tr string) webhooks.Delivery {
		id := tr + "_" + string(rune('0'+seq))
		return webhooks.Delivery{ID: webhooks.DeliveryID(key, id), Tenant: "acme", Endpoint: "crm", EventID: id, TransferID: tr,
			Seq: seq, Pos: seq, Type: orchestrator.EventStateChanged, Payload: []byte(`{}`), Status: webhooks.StatusPending,
			NextAttempt: now, Deadline: now.Add(time.Hour), CreatedAt: now}
	}
	ds := []webhooks.Delivery{mk(1, "tr_a"), mk(2, "tr_a"), mk(3, "tr_b")}
	if err := s.EnqueueDeliveries(ctx, key, 0, 3, ds); err != nil {
		t.Fatal(err)
	}
	if err := s.EnqueueDeliveries(ctx, key, 0, 3, ds); err != webhooks.ErrCursorMoved {
		t.Fatalf("a stale cursor: %v", err)
	}
	if c, _ := s.DeliveryCursor(ctx, key); c != 3 {
		t.Fatalf("cursor %d", c)
	}
	got, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 10)
	if err != nil || len(got) != 2 || got[0].Seq != 1 || got[1].TransferID != "tr_b" {
		t.Fatalf("claimed %+v (%v), want tr_a seq 1 and tr_b", got, err)
	}
	if again, _ := s.ClaimDeliveries(ctx, "r2", now, time.Minute, 10); len(again) != 0 {
		t.Fatalf("leased deliveries claimed again: %+v", again)
	}
	done := got[0]
	done.Status = webhooks.StatusDelivered
	if _, ok, err := s.FinishDelivery(ctx, done); !ok || err != nil {
		t.Fatalf("finish: %v %v", ok, err)
	}
	if _, ok, _ := s.FinishDelivery(ctx, done); ok {
		t.Fatal("finished twice")
	}
	next, _ := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 10)
	if len(next) != 1 || next[0].Seq != 2 {
		t.Fatalf("after seq 1: %+v", next)
	}
	if n, _, _ := s.DeliveryBacklog(ctx); n != 2 {
		t.Fatalf("backlog %d, want 2", n)
	}
	if _, err := s.Redeliver(ctx, "other", done.ID, now, now.Add(time.Hour)); orchestrator.KindOf(err) != orchestrator.KindNotFound {
		t.Fatalf("another tenant redelivered: %v", err)
	}
	if d, err := s.Redeliver(ctx, "acme", done.ID, now, now.Add(time.Hour)); err != nil || d.Status != webhooks.StatusPending {
		t.Fatalf("redeliver: %+v %v", d, err)
	}
	list, _, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", Statuses: []webhooks.Status{webhooks.StatusPending}, Limit: 10})
	if err != nil || len(list) != 3 {
		t.Fatalf("pending %d (%v), want 3", len(list), err)
	}
}
