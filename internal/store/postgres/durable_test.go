package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/store/postgres"
)

// A commit the server answered must survive the server's crash: the
// store's sessions commit with synchronous_commit on where the URL (or
// the server, the database, the role) says off, and keep every other
// value, each of which waits for the WAL's flush. Found by the storm
// that crashes the server (TRANSFERD_STORM_DB_CRASHES), run on a server
// whose default is off (CI's): seed 2713304399349194 on three replicas
// lost acknowledged steps in its 15 crashes, and two callers were left
// held, one transfer reported cancelled with its caller back.
func TestSessionsCommitDurably(t *testing.T) {
	ctx := context.Background()
	base := inSchema(baseURL(t), newSchema(t, baseURL(t)))
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var server string
	if err := conn.QueryRow(ctx, `SELECT current_setting('synchronous_commit')`).Scan(&server); err != nil {
		t.Fatal(err)
	}
	serverWant := server
	if server == "off" {
		serverWant = "on"
	}
	for _, c := range []struct{ url, want string }{
		{"", serverWant}, // the server's default, whatever it is
		{"off", "on"},
		{"local", "local"},
		{"remote_write", "remote_write"},
		{"on", "on"},
		{"remote_apply", "remote_apply"},
	} {
		url := base
		if c.url != "" {
			url = withParam(base, "synchronous_commit", c.url)
		}
		s, err := postgres.Open(ctx, url)
		if err != nil {
			t.Fatalf("Open with synchronous_commit %q: %v", c.url, err)
		}
		got, err := postgres.SessionSetting(ctx, s, "synchronous_commit")
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("synchronous_commit %q in the URL (server default %q): the store's sessions have %q, want %q", c.url, server, got, c.want)
		}
	}
}

// A replica stopped in the middle of a transaction (a paused VM) held its
// row locks until it woke, and the transfers whose rows it locked could
// not be claimed meanwhile, their callers perhaps on hold: the store's
// sessions end a transaction left idle after 30 s unless the URL (or the
// server, the database, the role) sets a timeout of its own, which is
// kept. A session left idle in its transaction is ended.
func TestSessionsEndTransactionsLeftIdle(t *testing.T) {
	ctx := context.Background()
	base := inSchema(baseURL(t), newSchema(t, baseURL(t)))
	for _, c := range []struct{ url, want string }{{"", "30s"}, {"5min", "5min"}} {
		url := base
		if c.url != "" {
			url = withParam(base, "idle_in_transaction_session_timeout", c.url)
		}
		s, err := postgres.Open(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		got, err := postgres.SessionSetting(ctx, s, "idle_in_transaction_session_timeout")
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("idle_in_transaction_session_timeout %q in the URL: the store's sessions have %q, want %q", c.url, got, c.want)
		}
	}

	s, err := postgres.Open(ctx, withParam(base, "idle_in_transaction_session_timeout", "100ms"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ended, err := postgres.IdleInTransaction(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if !ended {
		t.Error("a transaction left idle past the timeout is still open")
	}
}
