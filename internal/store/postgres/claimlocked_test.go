package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/webhooks"
)

// A claim passes over the deliveries another transaction holds (another
// replica's claim in progress, a finish, a redelivery) and still takes up
// to its limit while others are due. It picked its limit with plain reads
// and then locked them SKIP LOCKED, dropping those held, with nothing in
// their place (found by review): two replicas claiming at once read the
// same earliest deliveries, one came back with nothing, and the
// dispatcher, which reads a short claim as "nothing more is due", left
// its slots idle until its next scan.
func TestClaimFillsItsLimitPastLockedDeliveries(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	key := webhooks.EndpointKey("acme", "crm")
	const n = 10
	var ds []webhooks.Delivery
	for i := range 2 * n {
		ev := fmt.Sprintf("evt_%02d", i)
		ds = append(ds, webhooks.Delivery{ID: webhooks.DeliveryID(key, ev), Tenant: "acme", Endpoint: "crm", EventID: ev,
			TransferID: fmt.Sprintf("tr_%02d", i), Seq: 1, Pos: int64(i + 1), Type: "transfer.state_changed", Payload: []byte(`{}`),
			Status: webhooks.StatusPending, NextAttempt: now.Add(-time.Hour + time.Duration(i)*time.Second),
			Deadline: now.Add(time.Hour), CreatedAt: now, UpdatedAt: now})
	}
	if err := s.EnqueueDeliveries(ctx, key, 0, 2*n, ds); err != nil {
		t.Fatal(err)
	}
	// Another replica's claim, in progress: it has locked the n earliest
	// due (what its own ClaimDeliveries does before it writes them).
	other, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(ctx)
	rows, _ := other.Query(ctx, `SELECT id FROM webhook_deliveries WHERE ready_at <= $1 ORDER BY ready_at, pos LIMIT $2 FOR UPDATE`, now, n)
	held, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(held) != n {
		t.Fatalf("held %d (%v)", len(held), err)
	}
	got, err := s.ClaimDeliveries(ctx, "r2", now, time.Minute, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("claimed %d of limit %d while %d other deliveries are due and unlocked: the claim lost the rows another replica holds instead of passing over them (the dispatcher then stops claiming until the next scan)", len(got), n, n)
	}
}
