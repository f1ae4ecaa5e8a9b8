package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The database's CPU time counts a backend's time after it has exited:
// the postmaster reaps it and its time moves into the postmaster's
// reaped children's. Counting the live processes alone, a run read a
// negative database CPU. It needs the PostgreSQL server on this host.
func TestDatabaseCPUKeepsAnExitedBackendsTime(t *testing.T) {
	base := os.Getenv("TRANSFERD_TEST_DATABASE_URL")
	if base == "" {
		t.Skip("TRANSFERD_TEST_DATABASE_URL not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	stat := fmt.Sprintf("/proc/%d/stat", pid)
	if _, err := os.Stat(stat); err != nil {
		conn.Close(ctx)
		t.Skipf("the server's backend is not a process of this host: %v", err)
	}
	before := cpuOfCommand("postgres")
	if _, err := conn.Exec(ctx, `SELECT count(*) FROM generate_series(1, 3000000)`); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(stat)
	if err != nil {
		t.Fatal(err)
	}
	used, err := parseStatCPU(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Until the postmaster has reaped the backend, its /proc entry stays.
	for {
		if _, err := os.Stat(stat); errors.Is(err, fs.ErrNotExist) {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the backend was not reaped")
		}
	}
	if after := cpuOfCommand("postgres"); after-before < used {
		t.Errorf("the database's CPU grew by %v across a backend that used %v and exited", after-before, used)
	}
}
