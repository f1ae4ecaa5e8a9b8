package postgres_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
)

// Found by review: DeleteIdempotency was one statement, a DELETE of the
// reservation if unlinked (in a CTE) and an UPDATE answering it if linked,
// both on the statement's one snapshot. When the create that links the
// reservation was still committing as the release started (its
// transaction holds the reservation's lock: createSQL's held, FOR UPDATE,
// then linked), the DELETE waited for that lock, found the row linked and
// skipped it; the UPDATE matched its snapshot's unlinked row and never
// looked again. The reservation stayed pending, neither released nor
// answered: the key answered 409 "in progress" until the replica's own
// settle, up to ReservationTimeout later.
func TestDeleteIdempotencyAnswersALinkCommittedWhileItWaits(t *testing.T) {
	ctx := context.Background()
	base := baseURL(t)
	url := inSchema(base, newSchema(t, base))
	s, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	creator, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer creator.Close(ctx)
	watcher, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close(ctx)

	const scope, key = "default POST /v1/transfers", "k-linking"
	at := time.Now().UTC().Truncate(time.Microsecond)
	if _, mine, err := s.ReserveIdempotency(ctx, orchestrator.IdempotencyRecord{Scope: scope, Key: key, RequestHash: "h",
		CreatedAt: at, Owner: "A"}); err != nil || !mine {
		t.Fatalf("Reserve: %v %v", mine, err)
	}
	id := orchestrator.NewID(at)

	// The create's transaction, as createSQL runs it: it locks the held
	// reservation and links it, and has not committed yet.
	var creatorPID uint32
	if err := creator.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&creatorPID); err != nil {
		t.Fatal(err)
	}
	tx, err := creator.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM idempotency WHERE scope = $1 AND key = $2 AND created_at = $3
		AND transfer_id IS NULL AND status IS NULL FOR UPDATE`, scope, key, at); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE idempotency SET transfer_id = $1 WHERE scope = $2 AND key = $3`, id, scope, key); err != nil {
		t.Fatal(err)
	}

	// The request's release (its answer was a 5xx) starts meanwhile.
	released := make(chan error, 1)
	go func() { released <- s.DeleteIdempotency(ctx, scope, key, at) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.Gosched()
		var waiting int
		if err := watcher.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE $1::int = ANY (pg_blocking_pids(pid))`,
			int(creatorPID)).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("DeleteIdempotency never waited for the create's lock")
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-released; err != nil {
		t.Fatalf("DeleteIdempotency: %v", err)
	}

	cur, free, err := s.ReserveIdempotency(ctx, orchestrator.IdempotencyRecord{Scope: scope, Key: key, RequestHash: "h",
		CreatedAt: at.Add(time.Second), Owner: "B"})
	switch {
	case err != nil:
		t.Fatal(err)
	case free:
		t.Fatal("the linked reservation was deleted: a retry would start a second transfer")
	case cur.Response == nil:
		t.Errorf("after DeleteIdempotency the linked reservation is still pending (Response nil): neither released nor answered with %s", id)
	case cur.Response.TransferID != id:
		t.Errorf("answered with %+v, want the linked transfer %s", *cur.Response, id)
	}
}
