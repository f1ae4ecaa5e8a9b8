package postgres_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/transferd/transferd/internal/store/postgres"
)

// Unavailable tells what waiting may cure (a server that does not answer
// or will not take a connection yet) from what it never will.
func TestUnavailable(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", fmt.Errorf("postgres: open: %w", refused), true},
		{"name not resolved", &net.DNSError{Err: "no such host", Name: "db", IsNotFound: true}, true},
		{"connection ended", fmt.Errorf("failed to receive message: %w", io.ErrUnexpectedEOF), true},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"not yet accepting connections", &pgconn.PgError{Severity: "FATAL", Code: "57P03"}, true},
		{"shutting down", &pgconn.PgError{Severity: "FATAL", Code: "57P01"}, true},
		{"crash shutdown", &pgconn.PgError{Severity: "FATAL", Code: "57P02"}, true},
		{"too many connections", &pgconn.PgError{Severity: "FATAL", Code: "53300"}, true},
		{"connection failure", &pgconn.PgError{Severity: "FATAL", Code: "08006"}, true},
		{"a standby (read-only)", fmt.Errorf("failed to connect: %w", pgconn.ErrReadOnlyConnection), true},
		{"a connection pgx knows is closed", fmt.Errorf("postgres: open: migrate: %w", pgconn.ErrConnClosed), true},
		{"wrong password", &pgconn.PgError{Severity: "FATAL", Code: "28P01"}, false},
		{"no such database", &pgconn.PgError{Severity: "FATAL", Code: "3D000"}, false},
		{"no privilege", &pgconn.PgError{Severity: "ERROR", Code: "42501"}, false},
		{"certificate", fmt.Errorf("tls: %w", x509.UnknownAuthorityError{}), false},
		{"a URL that does not parse", errors.New("postgres: open: parse the database URL: invalid port"), false},
	} {
		if got := postgres.Unavailable(c.err); got != c.want {
			t.Errorf("%s (%v): Unavailable = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// TestOpenThroughAConnectionClosedUnderIt: the storm's CI run of the
// fifty-seventh pass restarted a replica while its database's connections
// were being ended, and the replica exited: "opening the PostgreSQL store:
// postgres: open: migrate: conn closed". pgx says "conn closed" of a
// connection it already knows has ended, which waiting cures as any ended
// connection does, but Unavailable did not know it, so the start did not
// wait and try again. The connection is closed under the migration's
// first read here; the open fails, Unavailable, and the next one opens.
func TestOpenThroughAConnectionClosedUnderIt(t *testing.T) {
	url := inSchema(baseURL(t), newSchema(t, baseURL(t)))
	ctx := context.Background()
	s, err := postgres.OpenClosingAt(ctx, url, "COALESCE(MAX(version), 0) FROM schema_migrations")
	if err == nil {
		s.Close()
		t.Fatal("the open went through a connection closed under it")
	}
	if !errors.Is(err, pgconn.ErrConnClosed) {
		t.Fatalf("the open failed otherwise than on the closed connection: %v", err)
	}
	if !postgres.Unavailable(err) {
		t.Fatalf("Unavailable(%v) = false: a start would exit instead of trying again", err)
	}
	s, err = postgres.Open(ctx, url)
	if err != nil {
		t.Fatalf("the next open: %v", err)
	}
	s.Close()
}
