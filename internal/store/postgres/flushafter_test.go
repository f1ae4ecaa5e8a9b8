package postgres_test

import (
	"context"
	"encoding/hex"
	"math/rand/v2"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/store/postgres"
)

// The store's sessions write back what they write as they go
// (backend_flush_after), so that a large purge leaves no gigabytes in the
// kernel for a checkpoint's fsync to flush while saves wait: unless
// someone set the setting, whom transferd does not override.
func TestSessionsWriteBackUnlessTheOperatorChose(t *testing.T) {
	ctx := context.Background()
	base := baseURL(t)
	var source string
	if err := connect(t, base).QueryRow(ctx,
		`SELECT source FROM pg_settings WHERE name = 'backend_flush_after'`).Scan(&source); err != nil {
		t.Fatal(err)
	}
	schemaURL := inSchema(base, newSchema(t, base))

	setting := func(t *testing.T, dbURL string) string {
		t.Helper()
		s, err := postgres.Open(ctx, dbURL)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close()
		v, err := postgres.Setting(ctx, s, "backend_flush_after")
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	t.Run("unset", func(t *testing.T) {
		if source != "default" {
			t.Skipf("the test server's backend_flush_after is set (%s)", source)
		}
		if got := setting(t, schemaURL); got != "256kB" {
			t.Errorf("backend_flush_after = %s, want 256kB", got)
		}
	})
	t.Run("the URL's options", func(t *testing.T) {
		if got := setting(t, withParam(schemaURL, "options", "-cbackend_flush_after=512kB")); got != "512kB" {
			t.Errorf("backend_flush_after = %s, want the URL's 512kB", got)
		}
	})
	t.Run("the role's", func(t *testing.T) {
		admin := connect(t, base)
		// A role of its own, with a schema of its own that DROP OWNED
		// takes with it.
		role := "transferd_test_" + hex.EncodeToString(binary8())
		if _, err := admin.Exec(ctx, "CREATE ROLE "+role+" LOGIN; ALTER ROLE "+role+" SET backend_flush_after = '64kB'; "+
			"CREATE SCHEMA "+role+" AUTHORIZATION "+role); err != nil {
			t.Skipf("cannot make a role here: %v", err)
		}
		t.Cleanup(func() {
			c, err := pgx.Connect(ctx, base)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close(ctx)
			if _, err := c.Exec(ctx, "DROP OWNED BY "+role+"; DROP ROLE "+role); err != nil {
				t.Error(err)
			}
		})
		u, err := url.Parse(inSchema(base, role))
		if err != nil || u.Scheme == "" {
			t.Skip("the test database's address is not a URL")
		}
		u.User = url.User(role)
		if c, err := pgx.Connect(ctx, u.String()); err != nil {
			t.Skipf("cannot log in as a new role here: %v", err)
		} else {
			c.Close(ctx)
		}
		if got := setting(t, u.String()); got != "64kB" {
			t.Errorf("backend_flush_after = %s, want the role's 64kB", got)
		}
	})
}

func binary8() []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return b
}
