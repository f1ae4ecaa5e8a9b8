package postgres_test

import (
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
