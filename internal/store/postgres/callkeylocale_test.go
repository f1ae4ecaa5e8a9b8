package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
)

// Schema 10 folds call keys as orchestrator.CallKey does, with Go's
// strings.ToLower (locale-free), whatever the database's locale. Its
// first version used PostgreSQL's lower(), which follows the locale: in a
// database created with a Turkish one (ICU tr-TR here; glibc tr_TR.UTF-8
// does the same), lower('I') is the dotless 'ı', so a key holding an 'I'
// was folded into one no Create computes, and the transfer active across
// the upgrade no longer blocked a second transfer of its call (found by
// review).
func TestMigrationFoldsLikeGoInATurkishDatabase(t *testing.T) {
	ctx := context.Background()
	base := baseURL(t)
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	b := make([]byte, 6)
	rand.Read(b)
	db := "transferd_tr_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+db+" TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'tr-TR' LOCALE 'C.UTF-8'"); err != nil {
		t.Skipf("cannot create a tr-TR database: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			t.Errorf("drop database %s: %v", db, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP DATABASE "+db+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", db, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db
	dbURL := u.String()

	s, err := postgres.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	first := &orchestrator.Transfer{ID: orchestrator.NewID(now), State: orchestrator.StatePending, CreatedAt: now, UpdatedAt: now,
		Request: orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "tiger.example", User: "1000"}, Target: "1010"}}
	if err := s.Create(ctx, first); err != nil {
		t.Fatal(err)
	}
	s.Close()

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// What the release before schema 10 wrote for a call spelt TIGER.example.
	if _, err := conn.Exec(ctx, `UPDATE transfers SET call_key = 'default|netsapiens|TIGER.example|1000' WHERE id = $1`, first.ID); err != nil {
		t.Fatal(err)
	}
	undoSchema12(t, conn)
	if _, err := conn.Exec(ctx, `DELETE FROM schema_migrations WHERE version >= 10`); err != nil {
		t.Fatal(err)
	}

	s, err = postgres.Open(ctx, dbURL) // runs schema 10
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var key string
	if err := conn.QueryRow(ctx, `SELECT call_key FROM transfers WHERE id = $1`, first.ID).Scan(&key); err != nil {
		t.Fatal(err)
	}
	second := &orchestrator.Transfer{ID: orchestrator.NewID(now.Add(time.Millisecond)), State: orchestrator.StatePending, CreatedAt: now, UpdatedAt: now,
		Request: orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "TIGER.example", User: "1000"}, Target: "1010"}}
	err = s.Create(ctx, second)
	var active *orchestrator.ActiveTransferError
	if !errors.As(err, &active) || active.ID != first.ID {
		t.Fatalf("schema 10 folded the key to %q, CallKey computes %q: a second transfer of the call TIGER.example/1000, active across the upgrade: Create = %v, want the active transfer %s",
			key, orchestrator.TenantCallKey(second), err, first.ID)
	}
}
