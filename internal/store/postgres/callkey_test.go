package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
)

// Schema 10 folds the call keys of active transfers begun before
// orchestrator.CallKey folded the domain and user, as SQLite's schema 9
// does (see TestMigrationFoldsActiveCallKeys there): such a transfer
// still blocks a second transfer of its call, spelt in any case; a call
// id keeps its case, an ended transfer its key, and two active keys that
// fold into one are folded for the older transfer alone.
func TestMigrationFoldsActiveCallKeys(t *testing.T) {
	ctx := context.Background()
	url := inSchema(baseURL(t), newSchema(t, baseURL(t)))
	s, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	mk := func(user string, state orchestrator.State) *orchestrator.Transfer {
		now = now.Add(time.Millisecond) // ids in the order made: the oldest twin is folded
		return &orchestrator.Transfer{ID: orchestrator.NewID(now), State: state, CreatedAt: now, UpdatedAt: now,
			Request: orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "TEST", User: user}, Target: "1010"}}
	}
	mixed, twinA, twinB, byID, ended := mk("1000", orchestrator.StatePending), mk("2000", orchestrator.StatePending),
		mk("3000", orchestrator.StatePending), mk("4000", orchestrator.StatePending), mk("5000", orchestrator.StateCompleted)
	for _, tr := range []*orchestrator.Transfer{mixed, twinA, twinB, byID, ended} {
		if err := s.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	// What the release before schema 10 wrote: the domain and user as sent.
	old := map[string]string{
		mixed.ID: "default|netsapiens|SALES.example|Agent7",
		twinA.ID: "default|netsapiens|Acme|1000",
		twinB.ID: "default|netsapiens|ACME|1000",
		byID.ID:  "default|bandwidth||c-86E0F2Ab",
		ended.ID: "default|netsapiens|TEST|5000",
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for id, key := range old {
		if _, err := conn.Exec(ctx, `UPDATE transfers SET call_key = $1 WHERE id = $2`, key, id); err != nil {
			t.Fatal(err)
		}
	}
	undoSchema12(t, conn)
	if _, err := conn.Exec(ctx, `DELETE FROM schema_migrations WHERE version >= 10`); err != nil {
		t.Fatal(err)
	}

	s, err = postgres.Open(ctx, url) // runs schema 10
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	second := mk("agent7", orchestrator.StatePending)
	second.Request.Call.Domain = "sales.EXAMPLE"
	err = s.Create(ctx, second)
	var active *orchestrator.ActiveTransferError
	if !errors.As(err, &active) || active.ID != mixed.ID {
		t.Fatalf("a second transfer of the call SALES.example/Agent7, active across the upgrade: Create = %v, want the active transfer %s", err, mixed.ID)
	}
	// The twins' call stays blocked, however it is spelt.
	third := mk("1000", orchestrator.StatePending)
	third.Request.Call.Domain = "aCmE"
	err = s.Create(ctx, third)
	if !errors.As(err, &active) || active.ID != twinA.ID {
		t.Fatalf("a third transfer of the call Acme/1000, two of whose transfers are active across the upgrade: Create = %v, want the active transfer %s", err, twinA.ID)
	}
	want := map[string]string{
		mixed.ID: "default|netsapiens|sales.example|agent7",
		twinA.ID: "default|netsapiens|acme|1000",
		twinB.ID: old[twinB.ID],
		byID.ID:  old[byID.ID],
		ended.ID: old[ended.ID],
	}
	for id, key := range want {
		var got string
		if err := conn.QueryRow(ctx, `SELECT call_key FROM transfers WHERE id = $1`, id).Scan(&got); err != nil || got != key {
			t.Errorf("call_key of %s after schema 10: %q (%v), want %q", id, got, err, key)
		}
	}
}

// Schema 11 folds call_user, the list filter's column, to lower case, as
// SQLite's schema 10 does (see TestMigrationFoldsCallUsers there).
func TestMigrationFoldsCallUsers(t *testing.T) {
	ctx := context.Background()
	url := inSchema(baseURL(t), newSchema(t, baseURL(t)))
	s, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tr := &orchestrator.Transfer{ID: orchestrator.NewID(now), State: orchestrator.StatePending, CreatedAt: now, UpdatedAt: now,
		Request: orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "TEST", User: "Agent7"}, Target: "1010"}}
	if err := s.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	s.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// What the release before schema 11 wrote: the user as sent.
	undoSchema12(t, conn)
	for _, q := range []string{`UPDATE transfer_keys SET call_user = 'Agent7'`, `DELETE FROM schema_migrations WHERE version >= 11`} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}

	s, err = postgres.Open(ctx, url) // runs schema 11
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, user := range []string{"Agent7", "agent7", "AGENT7"} {
		got, _, err := s.List(ctx, orchestrator.ListFilter{Tenant: orchestrator.DefaultTenant, Domain: "test", User: user, Limit: 10})
		if err != nil || len(got) != 1 || got[0].ID != tr.ID {
			t.Errorf("List of the call TEST/%s after schema 11: %d transfers (%v), want %s", user, len(got), err, tr.ID)
		}
	}
	var col string
	if err := conn.QueryRow(ctx, `SELECT call_user FROM transfer_keys WHERE id = $1`, tr.ID).Scan(&col); err != nil || col != "agent7" {
		t.Errorf("call_user after schema 11: %q (%v), want agent7", col, err)
	}
}
