package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// TestCreateRefusedAsTheActiveTransferEndsOwingTheCall: a create whose
// statement began while the call's transfer was active, which then ends
// owing the call in a transaction the create's insert waits for (the
// unique index of active calls), must be refused. Found by review of
// schema 17: looking for the call's owing transfers alone, the statement
// saw the transfer active in its snapshot and owing nothing, and its
// insert, once the ending committed, found no active transfer to
// conflict with, and saved a second transfer of a call still owed.
func TestCreateRefusedAsTheActiveTransferEndsOwingTheCall(t *testing.T) {
	s, conn := openRaw(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ids := batchIDs{at: time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)}
	first := ids.transfer("1000")
	if err := s.Create(ctx, first); err != nil {
		t.Fatal(err)
	}

	// The first transfer ends owing the call, in a transaction left open.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	tag, err := tx.Exec(ctx, `UPDATE transfers SET version = version + 1, state = 'failed', open = true,
		record = (record::jsonb || '{"Cleanup": {"Reason": "the provider is unreadable"}, "Outcome": {"verified": false}}')::json
		WHERE id = $1`, first.ID)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("the ending's update: %v, %d rows", err, tag.RowsAffected())
	}

	created := make(chan error, 1)
	go func() { created <- s.Create(ctx, ids.transfer("1000")) }()
	// The ending commits once the create waits for it, or once the create
	// was refused without waiting. The transaction reads who waits for it
	// until then.
	var createErr error
	for waiting, done := 0, false; waiting == 0 && !done; {
		select {
		case createErr = <-created:
			done = true
			continue
		default:
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if createErr == nil {
		createErr = <-created
	}
	var active *orchestrator.ActiveTransferError
	if !errors.As(createErr, &active) || active.ID != first.ID {
		t.Fatalf("Create: %v; want it refused for %s, which ended owing the call as the create ran", createErr, first.ID)
	}
}
