package main

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// readRowWrites counts what another client wrote once it has gone (a
// backend may hold its counts for up to a second while it is connected,
// and reports them as it exits), and only then.
func TestReadRowWrites(t *testing.T) {
	base := os.Getenv("TRANSFERD_TEST_DATABASE_URL")
	if base == "" {
		t.Skip("TRANSFERD_TEST_DATABASE_URL not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url, drop, err := freshDatabase(ctx, base, fmt.Sprintf("transferbench_rowwrites_%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer drop()
	w0, err := readRowWrites(ctx, url)
	if err != nil || w0 != (rowWrites{}) {
		t.Fatalf("before any table: %+v, %v", w0, err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE webhook_deliveries (id int PRIMARY KEY, n int)`,
		`INSERT INTO webhook_deliveries SELECT i, 0 FROM generate_series(1, 4) i`,
		`UPDATE webhook_deliveries SET n = 1 WHERE id <= 3`,
		`UPDATE webhook_deliveries SET n = 2 WHERE id = 1`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	// While the writer is connected its counts may not be reported yet:
	// the reading waits for it to go.
	early, cancelEarly := context.WithTimeout(ctx, 200*time.Millisecond)
	if w, err := readRowWrites(early, url); err == nil {
		t.Fatalf("read %+v with the writer still connected", w)
	}
	cancelEarly()
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	w, err := readRowWrites(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if got := w.since(w0); got != (rowWrites{inserted: 4, updated: 4}) {
		t.Fatalf("counted %+v, want 4 inserted and 4 updates", got)
	}
	if s := w.since(w0).String(); s != "1.000 row updates per delivery inserted (4 inserted, 4 updates)" {
		t.Errorf("String() = %q", s)
	}
}
