package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// A record saved before cleanups existed has no Cleanup and no
// Outcome.verified. Create's look at the call's owing transfers must read
// such a one as holding nothing: json_type of a missing key is NULL, and
// a NULL where a bool was scanned failed every create of the call (found
// by review).
func TestCreateBesideARecordFromBeforeCleanups(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	at := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	req := orchestrator.Request{Provider: "netsapiens", Mode: orchestrator.ModeAttended,
		Call: orchestrator.CallRef{Domain: "test", User: "1000"}, Target: "1010", Completion: orchestrator.CompletionAuto}
	old := &orchestrator.Transfer{ID: orchestrator.NewID(at), State: orchestrator.StateCompleted, Request: req, CreatedAt: at, UpdatedAt: at}
	if err := s.Create(ctx, old); err != nil {
		t.Fatal(err)
	}
	res, err := rawDB(t, dir).ExecContext(ctx, `UPDATE transfers SET record = json_remove(record, '$.Cleanup', '$.Outcome') WHERE id = ?`, old.ID)
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("taking the record back: %v, %d rows", err, n)
	}
	next := &orchestrator.Transfer{ID: orchestrator.NewID(at.Add(time.Second)), State: orchestrator.StatePending, Request: req,
		CreatedAt: at.Add(time.Second), UpdatedAt: at.Add(time.Second)}
	if err := s.Create(ctx, next); err != nil {
		t.Fatalf("a create beside a completed transfer saved before cleanups existed: %v", err)
	}
}
