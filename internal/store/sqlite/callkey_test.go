package sqlite_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/sqlite"
)

// Schema 9 folds the call keys of active transfers begun before
// orchestrator.CallKey folded the domain and user: such a transfer still
// blocks a second transfer of its call, spelt in any case. A provider's
// call id keeps its case, an ended transfer its key, and of two active
// keys that fold into one the older transfer's is folded, the other left
// as it is (folding both would break the unique index, and the migration
// with it). Found by review: without the migration, a transfer active
// across the upgrade no longer blocked even a second transfer of its call
// spelt the same way; and the first version left both twins' keys alone,
// which let a third transfer of their call in.
func TestMigrationFoldsActiveCallKeys(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	mixed, twinA, twinB, byID, ended := newTransfer("1000"), newTransfer("2000"), newTransfer("3000"), newTransfer("4000"), newTransfer("5000")
	ended.State = orchestrator.StateCompleted
	twinB.ID = orchestrator.NewID(twinA.CreatedAt.Add(time.Second)) // the younger twin, whatever the clock's grain
	for _, tr := range []*orchestrator.Transfer{mixed, twinA, twinB, byID, ended} {
		if err := s.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// What the release before schema 9 wrote: the domain and user as sent.
	old := map[string]string{
		mixed.ID: "default|netsapiens|SALES.example|Agent7",
		twinA.ID: "default|netsapiens|Acme|1000",
		twinB.ID: "default|netsapiens|ACME|1000",
		byID.ID:  "default|bandwidth||c-86E0F2Ab",
		ended.ID: "default|netsapiens|TEST|5000",
	}
	db := rawDB(t, dir)
	for id, key := range old {
		if _, err := db.Exec(`UPDATE transfers SET call_key = ? WHERE id = ?`, key, id); err != nil {
			t.Fatal(err)
		}
	}
	undoSchema11(t, db)
	if _, err := db.Exec(`DELETE FROM schema_migrations WHERE version >= 9`); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s = open(t, dir) // runs schema 9
	err = s.Create(ctx, &orchestrator.Transfer{ID: orchestrator.NewID(mixed.CreatedAt), State: orchestrator.StatePending,
		CreatedAt: mixed.CreatedAt, UpdatedAt: mixed.CreatedAt, Request: orchestrator.Request{Provider: "netsapiens",
			Call: orchestrator.CallRef{Domain: "sales.EXAMPLE", User: "agent7"}, Target: "1010"}})
	var active *orchestrator.ActiveTransferError
	if !errors.As(err, &active) || active.ID != mixed.ID {
		t.Fatalf("a second transfer of the call SALES.example/Agent7, active across the upgrade: Create = %v, want the active transfer %s", err, mixed.ID)
	}
	// The twins' call stays blocked, however it is spelt.
	err = s.Create(ctx, &orchestrator.Transfer{ID: orchestrator.NewID(mixed.CreatedAt), State: orchestrator.StatePending,
		CreatedAt: mixed.CreatedAt, UpdatedAt: mixed.CreatedAt, Request: orchestrator.Request{Provider: "netsapiens",
			Call: orchestrator.CallRef{Domain: "aCmE", User: "1000"}, Target: "1010"}})
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
		if err := rawDB(t, dir).QueryRow(`SELECT call_key FROM transfers WHERE id = ?`, id).Scan(&got); err != nil || got != key {
			t.Errorf("call_key of %s after schema 9: %q (%v), want %q", id, got, err, key)
		}
	}
}

// Schema 10 folds call_user, the list filter's column, to lower case, as
// the filter now folds the user it is given: a transfer saved before
// (its user as sent) is found by its call however the user is spelt.
// Found by review: the call key folded the user, the list filter did not,
// so a list of AGENT7 missed the transfer whose call refused a create of
// AGENT7.
func TestMigrationFoldsCallUsers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	tr := newTransfer("Agent7")
	if err := s.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, dir)
	// What the release before schema 10 wrote: the user as sent.
	undoSchema11(t, db)
	for _, q := range []string{`UPDATE transfers SET call_user = 'Agent7'`, `DELETE FROM schema_migrations WHERE version >= 10`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	s = open(t, dir) // runs schema 10
	for _, user := range []string{"Agent7", "agent7", "AGENT7"} {
		got, _, err := s.List(ctx, orchestrator.ListFilter{Tenant: orchestrator.DefaultTenant, Domain: "test", User: user, Limit: 10})
		if err != nil || len(got) != 1 || got[0].ID != tr.ID {
			t.Errorf("List of the call TEST/%s after schema 10: %d transfers (%v), want %s", user, len(got), err, tr.ID)
		}
	}
	var col string
	if err := rawDB(t, dir).QueryRow(`SELECT call_user FROM transfers WHERE id = ?`, tr.ID).Scan(&col); err != nil || col != "agent7" {
		t.Errorf("call_user after schema 10: %q (%v), want agent7", col, err)
	}
}
