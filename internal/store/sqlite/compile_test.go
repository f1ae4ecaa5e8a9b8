package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/sqlite"
	"github.com/transferd/transferd/internal/webhooks"
)

// TestStatementsCompileOnce: every statement the store keeps prepared
// runs again without SQLite compiling it again. SQLite recompiles a
// prepared statement at its next run when the statement's plan read a
// bound value (a bare "LIMIT ?" does) and that parameter was bound anew,
// which a prepared statement's every run does. Each statement is run
// three times on a connection of the test's own, through SQLite's C API,
// which counts the recompilations (SQLITE_STMTSTATUS_REPREPARE), inside a
// transaction rolled back.
func TestStatementsCompileOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	// The reads the API and the dispatcher make, so that the reader pool
	// prepares their statements.
	if _, _, err := s.List(ctx, orchestrator.ListFilter{Tenant: "acme", Limit: 10}); err != nil {
		t.Fatal(err)
	}
	for _, f := range planFilters() {
		if _, _, err := s.List(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Events(ctx, orchestrator.EventFilter{Tenant: "acme", After: 3, Limit: 500}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", Limit: 50}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeliveryCursor(ctx, "acme/crm"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimDeliveries(ctx, "r1", time.Now(), time.Minute, 8, nil); err != nil {
		t.Fatal(err)
	}
	qs := sqlite.PreparedSQL(s)
	if len(qs) < 20 {
		t.Fatalf("only %d statements prepared", len(qs))
	}

	tls := libc.NewTLS()
	defer tls.Close()
	cstr := func(s string) uintptr {
		p, err := libc.CString(s)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { libc.Xfree(tls, p) })
		return p
	}
	db, out := cell()
	if rc := lib.Xsqlite3_open_v2(tls, cstr(filepath.Join(dir, sqlite.FileName)), out, lib.SQLITE_OPEN_READWRITE, 0); rc != lib.SQLITE_OK {
		t.Fatalf("open: %d", rc)
	}
	defer lib.Xsqlite3_close_v2(tls, *db)
	exec := func(q string) {
		if rc := lib.Xsqlite3_exec(tls, *db, cstr(q), 0, 0, 0); rc != lib.SQLITE_OK {
			t.Fatalf("%s: %d", q, rc)
		}
	}
	exec(`BEGIN`)
	defer exec(`ROLLBACK`)
	for _, q := range qs {
		pst, out := cell()
		if rc := lib.Xsqlite3_prepare_v2(tls, *db, cstr(q), -1, out, 0); rc != lib.SQLITE_OK {
			t.Fatalf("prepare %s: %d", q, rc)
		}
		st := *pst
		for range 3 {
			for i := range lib.Xsqlite3_bind_parameter_count(tls, st) {
				lib.Xsqlite3_bind_int64(tls, st, i+1, 1)
			}
			for lib.Xsqlite3_step(tls, st) == lib.SQLITE_ROW {
			}
			lib.Xsqlite3_reset(tls, st)
		}
		if n := lib.Xsqlite3_stmt_status(tls, st, lib.SQLITE_STMTSTATUS_REPREPARE, 0); n != 0 {
			t.Errorf("compiled again %d times in 3 runs: %s", n, q)
		}
		lib.Xsqlite3_finalize(tls, st)
	}
}

// cells keeps the words cell makes on the heap, which never moves: a
// goroutine's stack may move during a call into SQLite, and the address
// it was given would then be stale.
var cells []*uintptr

// cell returns a word of Go memory for SQLite's C API to write a handle
// into, and its address as the API takes it.
func cell() (*uintptr, uintptr) {
	p := new(uintptr)
	cells = append(cells, p)
	return p, uintptr(unsafe.Pointer(p))
}
