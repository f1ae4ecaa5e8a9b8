package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// TestLookFindsTheSignalTheSaveWaitedFor: a PutSignal at the version a
// save writes over holds the transfer's row (FOR SHARE) until it commits,
// and the save's UPDATE waits for it. The save's look for a signal
// (Transfer.LookForSignal) must find that signal: a look whose snapshot
// was taken before the wait (one in the UPDATE's own statement, or
// before it) misses it, and the join goes ahead over a cancel the client
// was told was accepted.
//
// It runs again under a stricter default isolation (as a role's or a
// database's may be; here the URL's, which encodes a space as `+` that
// the server refuses, so SERIALIZABLE stands for REPEATABLE READ too):
// found by review, the look then read the batch's first snapshot, until
// the store set READ COMMITTED itself.
func TestLookFindsTheSignalTheSaveWaitedFor(t *testing.T) {
	for _, iso := range []string{"", "serializable"} {
		t.Run("default isolation "+iso, func(t *testing.T) { lookFindsTheSignalTheSaveWaitedFor(t, iso) })
	}
}

func lookFindsTheSignalTheSaveWaitedFor(t *testing.T, isolation string) {
	s, conn := openRawWith(t, isolation)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ids := batchIDs{at: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)}
	tr := ids.transfer("1000")
	if err := s.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	tr.Outbox = nil

	// The PutSignal's statement, in a transaction left open.
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	tag, err := tx.Exec(ctx, `INSERT INTO signals (transfer_id, signal)
		SELECT id, $2 FROM transfers WHERE id = $1 AND ($3 = 0 OR version = $3) FOR SHARE
		ON CONFLICT (transfer_id) DO NOTHING`, tr.ID, string(orchestrator.SignalCancel), tr.Version)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("the signal's insert: %v, %d rows", err, tag.RowsAffected())
	}

	tr.State, tr.LookForSignal = orchestrator.StateCompleting, true
	saved := make(chan error, 1)
	go func() { saved <- s.Update(ctx, tr) }()

	// Once the save waits for the signal's transaction, the signal
	// commits. The transaction reads who waits for it until then.
	for waiting := 0; waiting == 0; {
		select {
		case err := <-saved:
			t.Fatalf("the save did not wait for the signal's row lock: %v", err)
		default:
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))`).Scan(&waiting); err != nil {
			t.Fatalf("nobody waits for the signal's transaction: %v", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-saved; err != nil {
		t.Fatalf("Update: %v", err)
	}
	if !tr.SignalLooked || tr.PendingSignal != orchestrator.SignalCancel {
		t.Errorf("the save's look: looked %v, found %q; want the cancel committed while the save waited for it", tr.SignalLooked, tr.PendingSignal)
	}
}
