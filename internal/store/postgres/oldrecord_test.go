package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// A record saved before cleanups existed has no Cleanup and no
// Outcome.verified: Create's look at the call's owing transfers reads such
// a one as holding nothing (the SQLite store failed on it).
func TestCreateBesideARecordFromBeforeCleanups(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	ids := batchIDs{at: time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)}
	old := ids.transfer("1000")
	old.State = orchestrator.StateCompleted
	if err := s.Create(ctx, old); err != nil {
		t.Fatal(err)
	}
	tag, err := conn.Exec(ctx, `UPDATE transfers SET record = (record::jsonb - 'Cleanup' - 'Outcome')::json WHERE id = $1`, old.ID)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("taking the record back: %v, %d rows", err, tag.RowsAffected())
	}
	if err := s.Create(ctx, ids.transfer("1000")); err != nil {
		t.Fatalf("a create beside a completed transfer saved before cleanups existed: %v", err)
	}
}
