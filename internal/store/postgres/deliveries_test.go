package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/store/postgres"
	"github.com/transferd/transferd/internal/webhooks"
	"github.com/transferd/transferd/internal/webhooks/webhookstest"
)

// TestDeliveries runs the webhook store suite the memory and SQLite stores
// pass, so that the dispatcher behaves the same on every store.
func TestDeliveries(t *testing.T) {
	webhookstest.Run(t, func(t *testing.T) webhooks.Store { return open(t) })
}

// A database of schema 8 with finished deliveries migrates: schema 9
// takes each finished delivery's finished_at from its record's UpdatedAt,
// leaves pending ones without, and the purge then deletes the finished
// ones past the cut and only those.
func TestMigrateDeliveriesToSchema9(t *testing.T) {
	ctx := context.Background()
	url := inSchema(baseURL(t), newSchema(t, baseURL(t)))
	s, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	want := map[string]*time.Time{}
	at := map[string]webhookstest.Finish{
		"tr_old":     {Status: webhooks.StatusDelivered, At: now.Add(-48*time.Hour + 123456*time.Microsecond)},
		"tr_dead":    {Status: webhooks.StatusDead, At: now.Add(-47 * time.Hour)},
		"tr_young":   {Status: webhooks.StatusDelivered, At: now.Add(-time.Hour)},
		"tr_pending": {Status: webhooks.StatusPending, At: now.Add(-40 * time.Hour)},
	}
	for tr, f := range at {
		want[tr] = nil // pending: NULL
		if f.Status != webhooks.StatusPending {
			want[tr] = &f.At
		}
	}
	ids := webhookstest.Finished(t, s, at)
	s.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	undoSchema12(t, conn)
	if _, err := conn.Exec(ctx, `ALTER TABLE webhook_deliveries DROP COLUMN finished_at; DELETE FROM schema_migrations WHERE version >= 9`); err != nil {
		t.Fatalf("back to schema 8: %v", err)
	}
	s, err = postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for tr, w := range want {
		var got *time.Time
		err := conn.QueryRow(ctx, `SELECT finished_at FROM webhook_deliveries WHERE id = $1`, ids[tr]).Scan(&got)
		if err != nil || (got == nil) != (w == nil) || got != nil && !got.Equal(*w) {
			t.Errorf("%s: finished_at %v (%v), want %v", tr, got, err, w)
		}
	}
	if n, err := s.PurgeDeliveries(ctx, now.Add(-24*time.Hour), 0); n != 2 || err != nil {
		t.Errorf("purge after the migration: %d (%v), want tr_old and tr_dead", n, err)
	}
	if n, err := s.PurgeDeliveries(ctx, now.Add(time.Hour), 0); n != 1 || err != nil {
		t.Errorf("purge of the rest: %d (%v), want tr_young (the pending one stays)", n, err)
	}
}

// A database of schema 11 with deliveries pending, in flight, failing and
// delivered migrates: schema 12 makes ready exactly the first pending
// delivery of each endpoint and transfer, claimable when its back-off or
// lease ends.
func TestMigrateDeliveriesToSchema12(t *testing.T) {
	ctx := context.Background()
	base := baseURL(t)
	url := inSchema(base, newSchema(t, base))
	s, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	webhookstest.ClaimsBeforeMigration(t, s)
	s.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	undoSchema12(t, conn)
	if s, err = postgres.Open(ctx, url); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	webhookstest.ClaimsAfterMigration(t, s)
}

func BenchmarkClaimPastABacklog(b *testing.B) {
	for _, backlog := range webhookstest.Backlogs {
		b.Run(backlog, func(b *testing.B) { webhookstest.BenchClaimPastABacklog(b, open(b), backlog) })
	}
}
