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
