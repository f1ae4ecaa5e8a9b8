package orchestrator_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
	"github.com/transferd/transferd/internal/store/storetest"
)

// openPostgres opens the PostgreSQL store of TRANSFERD_TEST_DATABASE_URL
// in a schema of its own (search_path), dropped when the test ends, or
// skips the test when the variable is not set. Replicas run on
// PostgreSQL: the tests of what several replicas do run on it too.
func openPostgres(t *testing.T) orchestrator.Store {
	t.Helper()
	return openPostgresAt(t, postgresSchema(t))
}

// openPostgresAt opens another Store on the database and schema of url,
// as another replica's, closed when the test ends.
func openPostgresAt(t *testing.T, url string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// postgresSchema returns the URL of a schema of its own on
// TRANSFERD_TEST_DATABASE_URL, dropped when the test ends, or skips the
// test when the variable is not set.
func postgresSchema(t *testing.T) string {
	t.Helper()
	return storetest.PostgresSchema(t, "orchestrator").String()
}

// cutEveryConnection ends every connection to the database of url but
// its own, as a restart or a failover of the server does: the pools'
// connections and the listeners' at once.
func cutEveryConnection(t *testing.T, url string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND datname = current_database() AND backend_type = 'client backend'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no connection to cut")
	}
}
