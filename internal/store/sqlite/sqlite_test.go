package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/sqlite"
	"github.com/transferd/transferd/internal/store/storetest"
)

func open(t testing.TB, dir string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), dir)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// rawDB opens the store's database file directly, bypassing the store.
func rawDB(t testing.TB, dir string) *sql.DB {
	t.Helper()
	u := url.URL{Path: filepath.Join(dir, sqlite.FileName)}
	db, err := sql.Open("sqlite", "file:"+u.EscapedPath())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// undoSchema16 takes a database back to before schema 16 (the token of
// each heartbeat's process), for the tests that take it back to an older
// schema and open it again.
func undoSchema16(t testing.TB, db *sql.DB) {
	t.Helper()
	for _, q := range []string{`ALTER TABLE replicas DROP COLUMN token`, `DELETE FROM schema_migrations WHERE version >= 16`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("back to schema 15: %s: %v", q, err)
		}
	}
}

// undoSchema15 takes a database back to before schema 15 (the index of
// the calls' ended transfers that owe them), as undoSchema16 does.
func undoSchema15(t testing.TB, db *sql.DB) {
	t.Helper()
	undoSchema16(t, db)
	for _, q := range []string{`DROP INDEX transfers_owing_call`, `DELETE FROM schema_migrations WHERE version >= 15`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("back to schema 14: %s: %v", q, err)
		}
	}
}

// undoSchema14 takes a database back to before schema 14 (the indexes of
// the deliveries' lists by kind and by transfer), as undoSchema15 does.
func undoSchema14(t testing.TB, db *sql.DB) {
	t.Helper()
	undoSchema15(t, db)
	for _, q := range []string{`DROP INDEX webhook_deliveries_status`, `DROP INDEX webhook_deliveries_failing`,
		`DROP INDEX webhook_deliveries_transfer`, `DELETE FROM schema_migrations WHERE version >= 14`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("back to schema 13: %s: %v", q, err)
		}
	}
}

// undoSchema13 takes a database back to before schema 13 (webhook
// deliveries' payloads apart from their records), each payload back in its
// record as schema 12 kept it (encoding/json's base64), for the tests
// that take it back to an older schema and open it again: the migrations
// then run again from there.
func undoSchema13(t testing.TB, db *sql.DB) {
	t.Helper()
	undoSchema14(t, db)
	rows, err := db.Query(`SELECT id, payload FROM webhook_payloads`)
	if err != nil {
		t.Fatalf("back to schema 12: %v", err)
	}
	payloads := map[string][]byte{}
	for rows.Next() {
		var id string
		var p []byte
		if err := rows.Scan(&id, &p); err != nil {
			t.Fatalf("back to schema 12: %v", err)
		}
		payloads[id] = p
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		t.Fatalf("back to schema 12: %v", err)
	}
	for id, p := range payloads {
		if _, err := db.Exec(`UPDATE webhook_deliveries SET rec = json_set(rec, '$.Payload', ?) WHERE id = ?`,
			base64.StdEncoding.EncodeToString(p), id); err != nil {
			t.Fatalf("back to schema 12: %v", err)
		}
	}
	for _, q := range []string{`DROP TRIGGER webhook_payloads_go`, `DROP TABLE webhook_payloads`,
		`ALTER TABLE webhook_deliveries RENAME COLUMN rec TO record`, `DELETE FROM schema_migrations WHERE version >= 13`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("back to schema 12: %s: %v", q, err)
		}
	}
}

// undoSchema12 takes a database back to before schema 12 (the event id
// key), as undoSchema13 does.
func undoSchema12(t testing.TB, db *sql.DB) {
	t.Helper()
	undoSchema13(t, db)
	for _, q := range []string{`DROP TABLE event_id_key`, `DELETE FROM schema_migrations WHERE version >= 12`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("back to schema 11: %s: %v", q, err)
		}
	}
}

// undoSchema11 takes a database back to before schema 11 (the claim's
// ready_at), as undoSchema12 does.
func undoSchema11(t testing.TB, db *sql.DB) {
	t.Helper()
	undoSchema12(t, db)
	for _, q := range []string{`DROP INDEX webhook_deliveries_ready`, `DROP INDEX webhook_deliveries_ready_endpoint`,
		`ALTER TABLE webhook_deliveries DROP COLUMN ready_at`,
		`CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (pos) WHERE status = 'pending'`,
		`DELETE FROM schema_migrations WHERE version >= 11`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("back to schema 10: %s: %v", q, err)
		}
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) orchestrator.Store { return open(t, t.TempDir()) })
}

func newTransfer(user string) *orchestrator.Transfer {
	now := time.Now()
	return &orchestrator.Transfer{ID: orchestrator.NewID(now), State: orchestrator.StatePending, CreatedAt: now, UpdatedAt: now,
		Request: orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "TEST", User: user}, Target: "1010"}}
}

// Open creates the directory private, the database file private, and the
// migrations once: re-opening finds the data and the schema as they were.
func TestOpenCreatesAndReopens(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data", "with ? and # and %41 in the name")
	s, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	tr := newTransfer("1000")
	if err := s.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	tr.State = orchestrator.StateHolding
	if err := s.Update(ctx, tr); err != nil {
		t.Fatal(err)
	}
	files := []string{dir, filepath.Join(dir, sqlite.FileName), filepath.Join(dir, sqlite.FileName+"-wal")}
	for _, p := range files {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s has mode %v, want no group or other access", p, perm)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for range 2 { // migrations are idempotent
		s := open(t, dir)
		got, err := s.Get(ctx, tr.ID)
		if err != nil {
			t.Fatalf("Get after re-open: %v", err)
		}
		if got.State != orchestrator.StateHolding || got.Version != 2 {
			t.Errorf("after re-open: state %s version %d, want holding 2", got.State, got.Version)
		}
		s.Close()
	}
	db := rawDB(t, dir)
	var versions []int
	rows, err := db.Query(`SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	if !slices.Equal(versions, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}) {
		t.Errorf("schema_migrations = %v, want [1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16]", versions)
	}
	var mode string
	if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal (persistent)", mode, err)
	}
}

// A database migrated by a newer transferd is refused, not written to,
// and the refusal leaves the directory unlocked.
func TestOpenRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	open(t, dir).Close()
	db := rawDB(t, dir)
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, '0099_future', '')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for range 2 { // the refused Open let go of the directory's lock
		_, err := sqlite.Open(context.Background(), dir)
		if err == nil || !strings.Contains(err.Error(), "newer") || !strings.HasPrefix(err.Error(), "sqlite: ") {
			t.Fatalf("Open of a newer schema: %v", err)
		}
	}
}

func TestOpenFailsOnAFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Open(context.Background(), f); err == nil || !strings.HasPrefix(err.Error(), "sqlite: open ") {
		t.Fatalf("Open of a regular file as the data directory: %v", err)
	}
}

// Errors name the store and the operation.
func TestErrorsNameStoreAndOperation(t *testing.T) {
	s := open(t, t.TempDir())
	tr := newTransfer("1000")
	tr.Version = 1
	err := s.Update(context.Background(), tr)
	if want := "sqlite: update " + tr.ID + ": "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Update of an unknown transfer: %v, want prefix %q", err, want)
	}
	if err := s.Create(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	tr.Version = 5
	err = s.Update(context.Background(), tr)
	if !errors.Is(err, orchestrator.ErrVersionConflict) || orchestrator.KindOf(err) != orchestrator.KindConflict ||
		err.Error() != "sqlite: update "+tr.ID+": "+orchestrator.ErrVersionConflict.Error() {
		t.Errorf("stale Update: %v", err)
	}
}

// The SQL lists of terminal states are orchestrator.State.Terminal.
func TestTerminalStatesMatchTheOrchestrator(t *testing.T) {
	var term []string
	for _, s := range orchestrator.States {
		if s.Terminal() {
			term = append(term, "'"+string(s)+"'")
		}
	}
	slices.Sort(term)
	list := "(" + strings.Join(term, ", ") + ")"
	if list != sqlite.TerminalList {
		t.Errorf("queries use %s, the orchestrator's terminal states are %s", sqlite.TerminalList, list)
	}
	mig, err := os.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(mig), "state NOT IN "+list) + strings.Count(string(mig), "state IN "+list); n != 3 {
		t.Errorf("the migration's partial indexes use %s in %d places, want 3", list, n)
	}
	mig, err = os.ReadFile("migrations/0002_heartbeats.sql")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(mig), "state NOT IN "+list); n != 1 {
		t.Errorf("the migration that fills open uses %s in %d places, want 1", list, n)
	}
	var cmp []string
	for _, s := range term {
		cmp = append(cmp, "state <> "+s)
	}
	if want := strings.Join(cmp, " AND "); sqlite.NonTerminal != want {
		t.Errorf("queries test active states with %s, want %s", sqlite.NonTerminal, want)
	}
	mig, err = os.ReadFile("migrations/0006_active_call_comparisons.sql")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mig), "WHERE "+sqlite.NonTerminal+";") {
		t.Errorf("the active calls' index does not use the queries' predicate %s", sqlite.NonTerminal)
	}
	cmp = cmp[:0]
	for _, s := range term {
		cmp = append(cmp, "state = "+s)
	}
	if want := "(" + strings.Join(cmp, " OR ") + ")"; sqlite.Ended != want {
		t.Errorf("queries test ended states with %s, want %s", sqlite.Ended, want)
	}
	mig, err = os.ReadFile("migrations/0015_owing_call.sql")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mig), "WHERE open = 1 AND "+sqlite.Ended+";") {
		t.Errorf("the owing calls' index does not use the queries' predicate %s", sqlite.Ended)
	}
}

// oldRecord is the JSON a transfer of schema 1 was saved as: with the
// Undo and LeaseExpires fields that Transfer no longer has.
func oldRecord(t *testing.T, tr *orchestrator.Transfer, lease time.Time) string {
	t.Helper()
	b, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["Undo"] = []any{map[string]any{"Action": "unhold", "Done": false}}
	m["LeaseExpires"] = lease
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A database of schema 1, with leases in its rows and records carrying
// the old fields, migrates: its transfers decode, the unfinished one is
// claimable from its lease-holding owner, the ended one purgeable, and
// the pending reservation (no owner) settles.
func TestMigrateFromSchema1(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := rawDB(t, dir)
	init, err := os.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	const layout = "2006-01-02T15:04:05.000000000Z"
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	active := &orchestrator.Transfer{ID: orchestrator.NewID(at), Version: 3, State: orchestrator.StateConsulting,
		Request: orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "TEST", User: "1000"}, Target: "1010"},
		Owner:   "old-replica", CreatedAt: at, UpdatedAt: at}
	ended := &orchestrator.Transfer{ID: orchestrator.NewID(at.Add(time.Second)), Version: 5, State: orchestrator.StateCompleted,
		Request: orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "TEST", User: "2000"}, Target: "1010"},
		Owner:   "old-replica", CreatedAt: at, UpdatedAt: at}
	for _, q := range []string{string(init),
		`CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT`,
		`INSERT INTO schema_migrations VALUES (1, '0001_init', '')`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	for _, tr := range []*orchestrator.Transfer{active, ended} {
		if _, err := db.Exec(`INSERT INTO transfers (id, version, state, provider, call_key, owner, lease_expires, created_at, updated_at, record)
			VALUES (?, ?, ?, 'netsapiens', ?, ?, ?, ?, ?, ?)`, tr.ID, tr.Version, string(tr.State), orchestrator.CallKey(&tr.Request),
			tr.Owner, at.Add(time.Minute).Format(layout), at.Format(layout), at.Format(layout), oldRecord(t, tr, at.Add(time.Minute))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`INSERT INTO signals VALUES (?, 'cancel')`, active.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO idempotency (scope, key, request_hash, created_at) VALUES ('POST /v1/transfers', 'k', 'h', ?)`,
		at.Format(layout)); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s := open(t, dir)
	got, err := s.Get(ctx, active.ID)
	if err != nil {
		t.Fatalf("Get of a schema 1 record: %v", err)
	}
	if got.State != orchestrator.StateConsulting || got.Owner != "old-replica" || got.Version != 3 || !got.CreatedAt.Equal(at) {
		t.Errorf("schema 1 record decoded as %+v", got)
	}
	now := at.Add(time.Hour)
	claimed, err := s.Claim(ctx, "new", "", now, false, 10)
	if err != nil || len(claimed) != 1 || claimed[0].ID != active.ID || claimed[0].Version != 4 {
		t.Fatalf("Claim after the migration = %v, %v; want %s at version 4", claimed, err, active.ID)
	}
	if ids, err := s.Signalled(ctx, "new"); err != nil || !slices.Equal(ids, []string{active.ID}) {
		t.Errorf("Signalled = %v, %v; want %s", ids, err, active.ID)
	}
	if n, err := s.SettleIdempotency(ctx, "new", now, time.Time{}); err != nil || n != 1 {
		t.Errorf("SettleIdempotency = %d, %v; want the old reservation deleted", n, err)
	}
	if n, err := s.Purge(ctx, now, 0); err != nil || n != 1 {
		t.Errorf("Purge = %d, %v; want the ended transfer", n, err)
	}
	if _, err := s.Get(ctx, active.ID); err != nil {
		t.Errorf("the unfinished transfer after Purge: %v", err)
	}
	var leaseColumns int
	if err := rawDB(t, dir).QueryRow(`SELECT count(*) FROM pragma_table_info('transfers') WHERE name = 'lease_expires'`).Scan(&leaseColumns); err != nil || leaseColumns != 0 {
		t.Errorf("lease_expires columns after the migration: %d, %v; want 0", leaseColumns, err)
	}
}

// tickClock is a clock that moves on by tick each time it is read, so
// that a slice's budget is a number of steps, whatever the machine's
// speed: with a tick of 10 ms and a budget of 25 ms a slice reads the
// clock at its start and after each step, and commits after the third.
func tickClock(tick time.Duration) func() time.Time {
	now := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	return func() time.Time {
		now = now.Add(tick)
		return now
	}
}

// Purge works through a backlog in slices: a write transaction runs
// steps of a few rows until it has held the writer for the budget, then
// commits, and a limit that is not a multiple of a step is honoured
// exactly.
func TestPurgeInSlices(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	// Three steps of 2 rows a slice; the reclaim one step.
	sqlite.SetSlices(s, 25*time.Millisecond, 2, 1<<20, tickClock(10*time.Millisecond))
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	for i := range 17 {
		tr := newTransfer(strconv.Itoa(i))
		tr.ID = orchestrator.NewID(at.Add(time.Duration(i) * time.Second))
		tr.State, tr.UpdatedAt = orchestrator.StateCompleted, at
		if err := s.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.ReserveIdempotency(ctx, orchestrator.IdempotencyRecord{Scope: "s", Key: strconv.Itoa(i), CreatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	kept := newTransfer("open")
	kept.UpdatedAt = at
	if err := s.Create(ctx, kept); err != nil {
		t.Fatal(err)
	}
	slices := sqlite.Slices(s)
	// One slice of 2+2+1 transfers; one reclaim. The limit was filled,
	// so the idempotency records wait for the call that finds the end.
	if n, err := s.Purge(ctx, at.Add(time.Hour), 5); err != nil || n != 5 {
		t.Errorf("Purge(limit 5) = %d, %v; want 5", n, err)
	}
	if got := sqlite.Slices(s) - slices; got != 1+1 {
		t.Errorf("Purge(limit 5) took %d slices, want 2", got)
	}
	// 12 left: slices of 6 and 6, then a step that finds none; the 17
	// idempotency records in three slices (6, 6, 5: a short step ends
	// them); one reclaim.
	slices, checkpoints, syncs := sqlite.Slices(s), sqlite.Checkpoints(s), sqlite.FileSyncs(s)
	if n, err := s.Purge(ctx, at.Add(time.Hour), 0); err != nil || n != 12 {
		t.Errorf("Purge(no limit) = %d, %v; want 12", n, err)
	}
	if got := sqlite.Slices(s) - slices; got != 3+3+1 {
		t.Errorf("Purge(no limit) took %d slices, want 7", got)
	}
	// The WAL is copied into the file after each slice, beside the
	// writer rather than in the commit of whoever writes next.
	if got := sqlite.Checkpoints(s) - checkpoints; got != 7 {
		t.Errorf("%d checkpoints during the purge, want one after each of its 7 slices", got)
	}
	// And the file is flushed after each, beside the writer too, so that
	// the next save's commit has no pages of the purge left to flush.
	if got := sqlite.FileSyncs(s) - syncs; got != 7 {
		t.Errorf("%d flushes of the file during the purge, want one after each of its 7 checkpoints", got)
	}
	// Slices commit without an fsync and without a checkpoint; the saves
	// after them do as before.
	for name, want := range map[string]int{"synchronous": 2, "wal_autocheckpoint": sqlite.Autocheckpoint} {
		if got, err := sqlite.WriterPragma(ctx, s, name); err != nil || got != want {
			t.Errorf("the writer's %s after a purge = %d, %v; want %d", name, got, err, want)
		}
	}
	for i := range 17 {
		if _, fresh, err := s.ReserveIdempotency(ctx, orchestrator.IdempotencyRecord{Scope: "s", Key: strconv.Itoa(i), CreatedAt: at}); err != nil || !fresh {
			t.Errorf("idempotency key %d survived Purge (%v)", i, err)
		}
	}
	if _, err := s.Get(ctx, kept.ID); err != nil {
		t.Errorf("the open transfer after Purge: %v", err)
	}
}

// The reclaim after a purge gives the free pages back in slices of a few
// pages a step, until none is free.
func TestReclaimInSlices(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	db := rawDB(t, dir)
	pragma := func(name string) int {
		t.Helper()
		var n int
		if err := db.QueryRow("PRAGMA " + name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	for i := range 20 {
		tr := newTransfer(strconv.Itoa(i))
		tr.State, tr.UpdatedAt = orchestrator.StateCompleted, at
		tr.Legs.Consult.CallID = strings.Repeat("x", 16<<10) // 16 KiB: many pages
		if err := s.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`DELETE FROM transfers`); err != nil {
		t.Fatal(err)
	}
	free := pragma("freelist_count")
	if free < 20 {
		t.Fatalf("%d free pages after deleting 320 KiB; want more", free)
	}
	// Three steps of 1 page a slice.
	sqlite.SetSlices(s, 25*time.Millisecond, 2, 1, tickClock(10*time.Millisecond))
	slices := sqlite.Slices(s)
	if err := sqlite.Reclaim(ctx, s); err != nil {
		t.Fatal(err)
	}
	if got, want := sqlite.Slices(s)-slices, int64((free+2)/3); got != want {
		t.Errorf("%d free pages given back in %d slices, want %d", free, got, want)
	}
	if left := pragma("freelist_count"); left != 0 {
		t.Errorf("%d pages still free", left)
	}
}

// A saved transfer survives the process being killed (no Close, no
// checkpoint): the test re-runs itself as a child that saves and then
// SIGKILLs itself, and reads the record back.
func TestDurableAfterKill(t *testing.T) {
	if dir := os.Getenv("TRANSFERD_SQLITE_CRASH_DIR"); dir != "" {
		crashChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDurableAfterKill$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TRANSFERD_SQLITE_CRASH_DIR="+dir)
	out, err := cmd.Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the child was not killed: %v\n%s", err, out)
	}
	id := strings.TrimSpace(string(out))
	if !orchestrator.ValidID(id) {
		t.Fatalf("the child printed %q, not an id", out)
	}
	s := open(t, dir)
	got, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get after the kill: %v", err)
	}
	if got.State != orchestrator.StateDialing || got.Version != 3 || len(got.Steps) != 1 {
		t.Errorf("after the kill: state %s version %d steps %d; want dialing 3 1", got.State, got.Version, len(got.Steps))
	}
}

func crashChild(dir string) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, dir)
	if err != nil {
		os.Exit(2)
	}
	tr := newTransfer("1000")
	if s.Create(ctx, tr) != nil {
		os.Exit(3)
	}
	tr.State = orchestrator.StateHolding
	tr.Steps = append(tr.Steps, orchestrator.Step{Name: orchestrator.StepHold, Status: orchestrator.StepStarted, StartedAt: time.Now()})
	if s.Update(ctx, tr) != nil {
		os.Exit(4)
	}
	tr.State = orchestrator.StateDialing
	if s.Update(ctx, tr) != nil {
		os.Exit(5)
	}
	os.Stdout.WriteString(tr.ID + "\n")
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

func BenchmarkUpdate(b *testing.B)    { storetest.BenchUpdate(b, open(b, b.TempDir())) }
func BenchmarkCreate(b *testing.B)    { storetest.BenchCreate(b, open(b, b.TempDir())) }
func BenchmarkHeartbeat(b *testing.B) { storetest.BenchHeartbeat(b, open(b, b.TempDir())) }
func BenchmarkClaimIdle(b *testing.B) { storetest.BenchClaimIdle(b, open(b, b.TempDir()), 1000) }

// The read of the owner's heartbeat each save makes (tokenFreeIn).
func BenchmarkUpdateWithToken(b *testing.B) { storetest.BenchUpdateWithToken(b, open(b, b.TempDir())) }

func BenchmarkUpdateParallel(b *testing.B) {
	storetest.BenchUpdateParallel(b, open(b, b.TempDir()))
}

// The file is incremental-vacuum: a purge gives its pages back to the
// file system, and a database made before that is converted at Open.
func TestPurgeShrinksTheFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	db := rawDB(t, dir)
	pragma := func(name string) int {
		t.Helper()
		var n int
		if err := db.QueryRow("PRAGMA " + name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if mode := pragma("auto_vacuum"); mode != 2 {
		t.Fatalf("auto_vacuum = %d, want 2 (incremental)", mode)
	}
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	for i := range 300 {
		tr := newTransfer(strconv.Itoa(i))
		tr.ID = orchestrator.NewID(at.Add(time.Duration(i) * time.Millisecond))
		tr.State, tr.UpdatedAt = orchestrator.StateCompleted, at
		tr.Legs.Consult.CallID = strings.Repeat("x", 16<<10) // 16 KiB: many pages
		if err := s.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	full := pragma("page_count")
	if n, err := s.Purge(ctx, at.Add(time.Hour), 0); err != nil || n != 300 {
		t.Fatalf("Purge = %d, %v", n, err)
	}
	if free, pages := pragma("freelist_count"), pragma("page_count"); free != 0 || pages > full/10 {
		t.Errorf("after the purge: %d free pages, %d pages of %d; want none free and the file shrunk", free, pages, full)
	}
}

// A database made before incremental vacuum (auto_vacuum off) is converted
// at Open, its data kept.
func TestOpenConvertsToIncrementalVacuum(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	tr := newTransfer("1000")
	if err := s.Create(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	s.Close()
	db := rawDB(t, dir)
	for _, q := range []string{"PRAGMA auto_vacuum = NONE", "VACUUM"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	var mode int
	if err := db.QueryRow("PRAGMA auto_vacuum").Scan(&mode); err != nil || mode != 0 {
		t.Fatalf("auto_vacuum = %d, %v; the test could not turn it off", mode, err)
	}
	db.Close()
	s = open(t, dir)
	if _, err := s.Get(context.Background(), tr.ID); err != nil {
		t.Errorf("Get after the conversion: %v", err)
	}
	if err := rawDB(t, dir).QueryRow("PRAGMA auto_vacuum").Scan(&mode); err != nil || mode != 2 {
		t.Errorf("auto_vacuum after Open = %d, %v; want 2", mode, err)
	}
}

// Creates that share a group commit are decided one by one, in order:
// the first create of a call wins and a later one in the same batch is
// refused naming it; a create of an existing id is refused; a refused
// create writes neither its events nor its idempotency link; and the
// others of the batch are saved.
func TestCreatesShareABatch(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	const scope = "POST /v1/transfers"
	for _, key := range []string{"k-first", "k-second"} {
		if _, ok, err := s.ReserveIdempotency(ctx, orchestrator.IdempotencyRecord{Scope: scope, Key: key, RequestHash: "h",
			CreatedAt: time.Now(), Owner: "A"}); err != nil || !ok {
			t.Fatalf("ReserveIdempotency(%s) = %v, %v", key, ok, err)
		}
	}
	withEvent := func(tr *orchestrator.Transfer) *orchestrator.Transfer {
		tr.EventSeq = 1
		tr.Outbox = []orchestrator.Event{{ID: "evt_" + tr.ID + "_1", Tenant: orchestrator.DefaultTenant, TransferID: tr.ID,
			Seq: 1, Type: orchestrator.EventCreated, At: tr.CreatedAt}}
		return tr
	}
	first := withEvent(newTransfer("201"))
	first.IdempotencyScope, first.IdempotencyKey = scope, "k-first"
	second := withEvent(newTransfer("201")) // the same call
	second.IdempotencyScope, second.IdempotencyKey = scope, "k-second"
	other := withEvent(newTransfer("202"))
	sameID := withEvent(newTransfer("203"))
	sameID.ID = other.ID

	errs := sqlite.CreateInOneBatch(s, first, second, other, sameID)
	if errs[0] != nil || errs[2] != nil {
		t.Fatalf("creates of free calls: %v, %v", errs[0], errs[2])
	}
	var active *orchestrator.ActiveTransferError
	if orchestrator.KindOf(errs[1]) != orchestrator.KindConflict || !errors.As(errs[1], &active) || active.ID != first.ID {
		t.Fatalf("second create of the call = %v, want a conflict naming %s", errs[1], first.ID)
	}
	if orchestrator.KindOf(errs[3]) != orchestrator.KindConflict || errors.As(errs[3], &active) && active.ID != first.ID {
		t.Fatalf("create of an existing id = %v, want a conflict", errs[3])
	}

	for _, tr := range []*orchestrator.Transfer{first, other} {
		got, err := s.Get(ctx, tr.ID)
		if err != nil {
			t.Fatalf("Get(%s): %v", tr.ID, err)
		}
		if got.Request.Call.User != tr.Request.Call.User || got.Version != 1 {
			t.Errorf("Get(%s) = user %s version %d, want %s version 1", tr.ID, got.Request.Call.User, got.Version, tr.Request.Call.User)
		}
	}
	db := rawDB(t, dir)
	var events int
	if err := db.QueryRow(`SELECT count(*) FROM events`).Scan(&events); err != nil {
		t.Fatal(err)
	}
	if events != 2 {
		t.Errorf("%d events stored, want 2 (the saved creates' only)", events)
	}
	for key, want := range map[string]string{"k-first": first.ID, "k-second": ""} {
		var linked sql.NullString
		if err := db.QueryRow(`SELECT transfer_id FROM idempotency WHERE scope = ? AND key = ?`, scope, key).Scan(&linked); err != nil {
			t.Fatal(err)
		}
		if linked.String != want {
			t.Errorf("reservation %s linked to %q, want %q", key, linked.String, want)
		}
	}
	// Refusals are made by a save's first statement: the batch needed no
	// savepoints.
	if n := sqlite.Rewrites(s); n != 0 {
		t.Errorf("%d batches written again with savepoints, want 0", n)
	}
}

// A save that fails after its first statement wrote (an event that cannot
// be written) is taken back whole, and the other saves of its batch are
// saved: the batch is written again with a savepoint per save.
func TestHalfWrittenSaveIsTakenBackAlone(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	a, b, c := newTransfer("301"), newTransfer("302"), newTransfer("303")
	for _, tr := range []*orchestrator.Transfer{a, b, c} {
		if err := s.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
		tr.State = orchestrator.StateHolding
		tr.EventSeq++
		tr.Outbox = []orchestrator.Event{{ID: "evt_" + tr.ID + "_moved", Tenant: orchestrator.DefaultTenant, TransferID: tr.ID,
			Seq: tr.EventSeq, Type: orchestrator.EventStateChanged, At: time.Now(), From: orchestrator.StatePending, To: orchestrator.StateHolding}}
	}
	full := errors.New("database or disk is full")
	sqlite.SetEventFault(s, func(id string) error {
		if id == "evt_"+b.ID+"_moved" {
			return full
		}
		return nil
	})
	errs := sqlite.UpdateInOneBatch(s, a, b, c)
	if errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], full) {
		t.Fatalf("verdicts %v, want nil, the fault, nil", errs)
	}
	if n := sqlite.Rewrites(s); n != 1 {
		t.Errorf("%d batches written again, want 1", n)
	}
	db := rawDB(t, dir)
	for _, tc := range []struct {
		tr      *orchestrator.Transfer
		version int64
		state   orchestrator.State
		events  int
	}{{a, 2, orchestrator.StateHolding, 1}, {b, 1, orchestrator.StatePending, 0}, {c, 2, orchestrator.StateHolding, 1}} {
		got, err := s.Get(ctx, tc.tr.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != tc.version || got.State != tc.state {
			t.Errorf("%s: version %d state %s, want %d %s", tc.tr.Request.Call.User, got.Version, got.State, tc.version, tc.state)
		}
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM events WHERE id = ?`, "evt_"+tc.tr.ID+"_moved").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != tc.events {
			t.Errorf("%s: %d events of the move stored, want %d", tc.tr.Request.Call.User, n, tc.events)
		}
	}
}

// A create that fails after its first statement wrote (its event cannot
// be written) is taken back, and the rest of its batch committed: the
// store knows it saved nothing, and says so (orchestrator.ErrNotSaved,
// KindUnavailable), so that the engine does not look for the transfer as
// it does after a failure that leaves the save unknown (a 500, and two
// minutes of reads in the background, before). A create refused is
// refused as before.
func TestCreateThatFailsIsKnownNotSaved(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	full := errors.New("database or disk is full")
	tr := newTransfer("401")
	tr.Outbox = []orchestrator.Event{{ID: "evt_" + tr.ID + "_1", Tenant: orchestrator.DefaultTenant, TransferID: tr.ID,
		Seq: 1, Type: orchestrator.EventCreated, At: tr.CreatedAt}}
	sqlite.SetEventFault(s, func(id string) error {
		if id == "evt_"+tr.ID+"_1" {
			return full
		}
		return nil
	})
	err := s.Create(ctx, tr)
	if !errors.Is(err, orchestrator.ErrNotSaved) || !errors.Is(err, full) || orchestrator.KindOf(err) != orchestrator.KindUnavailable {
		t.Fatalf("Create: %v (kind %v); want the fault, known not saved (unavailable)", err, orchestrator.KindOf(err))
	}
	if _, err := s.Get(ctx, tr.ID); orchestrator.KindOf(err) != orchestrator.KindNotFound {
		t.Fatalf("Get of the create taken back: %v; want not found", err)
	}
	sqlite.SetEventFault(s, nil)
	active := newTransfer("402")
	if err := s.Create(ctx, active); err != nil {
		t.Fatal(err)
	}
	err = s.Create(ctx, newTransfer("402"))
	var held *orchestrator.ActiveTransferError
	if !errors.As(err, &held) || errors.Is(err, orchestrator.ErrNotSaved) || orchestrator.KindOf(err) != orchestrator.KindConflict {
		t.Errorf("a create refused for its call's active transfer: %v; want the conflict as before", err)
	}
}

// Saves that queue while a batch is being committed are written together,
// by one of them, in the next transaction; a lone save is written at once.
func TestSavesQueuedBehindACommitShareTheNextBatch(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	lone := newTransfer("300")
	before := sqlite.Batches(s)
	if err := s.Create(ctx, lone); err != nil {
		t.Fatal(err)
	}
	if n := sqlite.Batches(s) - before; n != 1 {
		t.Fatalf("a lone create took %d transactions, want 1", n)
	}

	const n = 8
	ts := make([]*orchestrator.Transfer, n)
	for i := range ts {
		ts[i] = newTransfer(fmt.Sprint(310 + i))
	}
	queued, release := sqlite.HoldTurn(s)
	errs := make(chan error, n)
	for _, tr := range ts {
		go func() { errs <- s.Create(ctx, tr) }()
	}
	for range n {
		<-queued
	}
	before = sqlite.Batches(s)
	release()
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := sqlite.Batches(s) - before; got != 1 {
		t.Errorf("%d saves queued behind a commit took %d transactions, want 1", n, got)
	}
	for _, tr := range ts {
		if _, err := s.Get(ctx, tr.ID); err != nil {
			t.Errorf("Get(%s): %v", tr.ID, err)
		}
	}
}

// Close writes the saves already queued, each gets its verdict, and a save
// after Close is refused without waiting.
func TestCloseAnswersEveryQueuedSave(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	queued, release := sqlite.HoldTurn(s)
	const n = 4
	errs := make(chan error, n)
	ts := make([]*orchestrator.Transfer, n)
	for i := range ts {
		ts[i] = newTransfer(fmt.Sprint(400 + i))
		go func() { errs <- s.Create(ctx, ts[i]) }()
	}
	for range n {
		<-queued
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	release()
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("a save queued before Close: %v", err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, newTransfer("499")); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("a save after Close = %v, want the store closed", err)
	}
	again := open(t, dir)
	for _, tr := range ts {
		if _, err := again.Get(ctx, tr.ID); err != nil {
			t.Errorf("after reopening, Get(%s): %v", tr.ID, err)
		}
	}
}

// A panic in a commit ends the process even when the committing save runs
// on a goroutine that recovers panics, as net/http's do: recovering would
// leave the writer's transaction open and every later save waiting. The
// test re-runs itself as a child whose event write panics.
func TestPanicInACommitEndsTheProcess(t *testing.T) {
	if dir := os.Getenv("TRANSFERD_SQLITE_PANIC_DIR"); dir != "" {
		panicChild(dir)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPanicInACommitEndsTheProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TRANSFERD_SQLITE_PANIC_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "panic in a commit: an event write that panics") {
		t.Fatalf("the child did not end with the commit's panic: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "recovered") {
		t.Fatalf("the caller recovered the commit's panic:\n%s", out)
	}
}

func panicChild(dir string) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, dir)
	if err != nil {
		os.Exit(3)
	}
	sqlite.SetEventFault(s, func(string) error { panic("an event write that panics") })
	tr := newTransfer("1000")
	tr.EventSeq = 1
	tr.Outbox = []orchestrator.Event{{ID: "evt_1", Tenant: orchestrator.DefaultTenant, TransferID: tr.ID, Seq: 1,
		Type: orchestrator.EventCreated, At: tr.CreatedAt}}
	func() {
		defer func() {
			if p := recover(); p != nil {
				os.Stdout.WriteString("recovered\n")
			}
		}()
		_ = s.Create(ctx, tr)
	}()
	os.Exit(4)
}

// The event id key is made once: a new database's honours no older ids,
// and every later open finds the same. A database of schema 11 with
// events in its outbox gets its key from schema 12, which honours the ids
// an older version sent up to the outbox's last position then.
func TestEventIDKey(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	first, err := s.EventIDKey(ctx)
	if err != nil || first.Secret == ([32]byte{}) || first.LegacyBelow != 0 {
		t.Fatalf("a new database's event id key %+v (%v), want a secret and nothing older to honour", first, err)
	}
	for _, user := range []string{"1000", "2000"} {
		tr := newTransfer(user)
		tr.EventSeq = 1
		tr.Outbox = []orchestrator.Event{{ID: "evt_" + tr.ID + "_1", Tenant: orchestrator.DefaultTenant, TransferID: tr.ID,
			Seq: 1, Type: orchestrator.EventCreated, At: tr.CreatedAt}}
		if err := s.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = open(t, dir)
	if again, err := s.EventIDKey(ctx); err != nil || again != first {
		t.Fatalf("re-opened, the event id key %+v (%v), want the first", again, err)
	}
	s.Close()
	db := rawDB(t, dir)
	undoSchema12(t, db)
	var last int64
	if err := db.QueryRow(`SELECT max(pos) FROM events`).Scan(&last); err != nil || last < 2 {
		t.Fatalf("the outbox's last position %d (%v)", last, err)
	}
	db.Close()
	if k, err := open(t, dir).EventIDKey(ctx); err != nil || k.LegacyBelow != last || k.Secret == ([32]byte{}) || k == first {
		t.Fatalf("after schema 12 ran on an outbox, the event id key %+v (%v), want a new one honouring ids up to %d", k, err, last)
	}
}

// The reads a transfer makes run as statements prepared once per
// connection of the pool, not compiled at every run: a second round of
// the same reads prepares nothing more. Past the bound, reads run by
// their text, with the same answers.
func TestReadsPreparedOnce(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	tr := newTransfer("1000")
	if err := s.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	reads := func() {
		t.Helper()
		if got, err := s.Get(ctx, tr.ID); err != nil || got.ID != tr.ID {
			t.Fatalf("Get: %v (%v)", got, err)
		}
		if sig, err := s.PeekSignal(ctx, tr.ID); err != nil || sig != "" {
			t.Fatalf("PeekSignal: %q (%v)", sig, err)
		}
		for _, f := range []orchestrator.ListFilter{{Limit: 10}, {Limit: 10, Provider: "netsapiens"}, {Limit: 10, User: "1000"}} {
			ts, _, err := s.List(ctx, f)
			if err != nil || len(ts) != 1 || ts[0].ID != tr.ID {
				t.Fatalf("List %+v: %d (%v)", f, len(ts), err)
			}
		}
	}
	reads()
	n := sqlite.ReadStmts(s)
	if n < 5 {
		t.Fatalf("%d statements prepared after five kinds of read, want at least 5", n)
	}
	reads()
	if again := sqlite.ReadStmts(s); again != n {
		t.Errorf("the same reads again prepared %d statements more", again-n)
	}
	s2 := open(t, t.TempDir())
	sqlite.SetMaxReadStmts(s2, 1)
	s = s2
	if err := s.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	reads()
	if n := sqlite.ReadStmts(s); n != 1 {
		t.Errorf("%d statements prepared past a bound of 1", n)
	}
}
