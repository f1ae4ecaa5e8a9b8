package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// querier is what the deliveries' statements need of a transaction: a
// pgx.Tx, or a pipeTx.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// pipeTx is an explicit transaction whose BEGIN is sent with its first
// statements and whose COMMIT with its last, in their pipelines, where
// pgx's Begin and Commit are a round trip each. The dispatcher's scan
// waits for every round trip of its transaction, one after another, and
// on a loaded host each costs a wake of the server's process and of
// transferd's: seven of them made a scan take about 5 ms on PostgreSQL
// (docs/benchmarks.md, twenty-ninth and thirtieth passes).
//
// Statements go through the embedded connection between the two. A
// pipeTx is ended by end, deferred: it rolls back what was not committed
// and gives the connection back.
type pipeTx struct {
	*pgxpool.Conn
}

// beginPipe acquires a connection and begins a transaction on it, with
// the statements first queues, which follow BEGIN in the same pipeline.
func (s *Store) beginPipe(ctx context.Context, first func(*pgx.Batch)) (*pipeTx, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	t := &pipeTx{conn}
	var b pgx.Batch
	b.Queue(`BEGIN`)
	first(&b)
	if err := conn.SendBatch(ctx, &b).Close(); err != nil {
		t.end(ctx)
		return nil, err
	}
	return t, nil
}

// errCommitRolledBack is a COMMIT the server answered with ROLLBACK: the
// transaction had failed (a statement's error was already returned, or
// it would not have been sent).
var errCommitRolledBack = errors.New("commit: the transaction was rolled back")

// commit sends last's statements, then COMMIT, in one pipeline. last may
// be empty.
func (t *pipeTx) commit(ctx context.Context, last *pgx.Batch) error {
	last.Queue(`COMMIT`).Exec(func(tag pgconn.CommandTag) error {
		if tag.String() == "ROLLBACK" {
			return errCommitRolledBack
		}
		return nil
	})
	if err := t.SendBatch(ctx, last).Close(); err != nil {
		return err
	}
	return committed(t.Conn)
}

// end rolls back what was not committed and releases the connection (the
// pool destroys one it finds still in a transaction).
func (t *pipeTx) end(ctx context.Context) {
	rollback(ctx, t.Conn)
	t.Release()
}
