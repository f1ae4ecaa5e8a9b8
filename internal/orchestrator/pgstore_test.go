package orchestrator_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
)

// openPostgres opens the PostgreSQL store of TRANSFERD_TEST_DATABASE_URL
// in a schema of its own (search_path), dropped when the test ends, or
// skips the test when the variable is not set. Replicas run on
// PostgreSQL: the tests of what several replicas do run on it too.
func openPostgres(t *testing.T) orchestrator.Store {
	t.Helper()
	admin := os.Getenv("TRANSFERD_TEST_DATABASE_URL")
	if admin == "" {
		t.Skip("TRANSFERD_TEST_DATABASE_URL is not set (postgres://…)")
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	schema := fmt.Sprintf("orchestrator_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Error(err)
		}
	})
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	s, err := postgres.Open(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}
