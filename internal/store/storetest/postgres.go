package storetest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresSchema returns TRANSFERD_TEST_DATABASE_URL with a schema of its
// own (search_path), named prefix and the time, dropped when the test
// ends, or skips the test when the variable is not set.
func PostgresSchema(t testing.TB, prefix string) *url.URL {
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
	schema := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
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
	return u
}
