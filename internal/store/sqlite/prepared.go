package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
)

// The statements webhook delivery runs on the writer are prepared once,
// at Open, and reused, as the saves' statements are. The driver prepares
// a statement run by its text every time, and SQLite compiles it anew:
// with every event delivered, compiling them took more of transferd's CPU
// than running them, a tenth of the whole (docs/benchmarks.md,
// twenty-sixth pass).
var preparedSQL = []string{
	cursorSQL, moveCursorSQL, insertDeliverySQL, insertPayloadSQL, updateDeliverySQL, getDeliverySQL, promoteSQL, reheadSQL,
	earliestDueSQL, endpointDueSQL, readyEndpointsSQL, claimRecordsSQL,
}

// prepare prepares preparedSQL on the writer.
func (s *Store) prepare(ctx context.Context) error {
	s.prepared = make(map[string]*sql.Stmt, len(preparedSQL))
	for _, q := range preparedSQL {
		st, err := s.w.PrepareContext(ctx, q)
		if err != nil {
			return err
		}
		s.prepared[q] = st
	}
	return nil
}

// wtx is a transaction of the writer that runs the statements of
// preparedSQL as the writer's connection prepared them (a statement
// prepared on the writer is prepared again only on a new connection).
// Any other statement runs by its text, and is counted.
type wtx struct {
	ctx        context.Context
	tx         *sql.Tx
	prepared   map[string]*sql.Stmt
	unprepared *atomic.Int64
	// bound are the prepared statements bound to tx, made at their first
	// use in it.
	bound map[string]*sql.Stmt
}

// in returns tx, a transaction of the writer, as a wtx.
func (s *Store) in(ctx context.Context, tx *sql.Tx) *wtx {
	return &wtx{ctx: ctx, tx: tx, prepared: s.prepared, unprepared: &s.unprepared}
}

func (t *wtx) stmt(q string) *sql.Stmt {
	if st := t.bound[q]; st != nil {
		return st
	}
	p := t.prepared[q]
	if p == nil {
		t.unprepared.Add(1)
		return nil
	}
	if t.bound == nil {
		t.bound = make(map[string]*sql.Stmt, 4)
	}
	st := t.tx.StmtContext(t.ctx, p)
	t.bound[q] = st
	return st
}

func (t *wtx) exec(q string, args ...any) (sql.Result, error) {
	if st := t.stmt(q); st != nil {
		return st.ExecContext(t.ctx, args...)
	}
	return t.tx.ExecContext(t.ctx, q, args...)
}

func (t *wtx) query(q string, args ...any) (*sql.Rows, error) {
	if st := t.stmt(q); st != nil {
		return st.QueryContext(t.ctx, args...)
	}
	return t.tx.QueryContext(t.ctx, q, args...)
}

func (t *wtx) queryRow(q string, args ...any) *sql.Row {
	if st := t.stmt(q); st != nil {
		return st.QueryRowContext(t.ctx, args...)
	}
	return t.tx.QueryRowContext(t.ctx, q, args...)
}

// readStmts are the reader pool's statements, prepared at their first run
// and reused, by their text: each connection of the pool prepares one at
// its first use of it. A list's text depends on its filters, so there are
// at most a few hundred; past max a statement runs by its text.
type readStmts struct {
	db     *sql.DB
	max    int // maxReadStmts; tests set less
	mu     sync.Mutex
	m      map[string]*sql.Stmt
	closed bool
}

// maxReadStmts bounds readStmts.
const maxReadStmts = 512

// stmt returns q prepared, or nil if there is no room for it or it could
// not be prepared (running it by its text then says why). It prepares q
// without holding the lock: preparing waits for a connection of the pool,
// and the reads whose statements are prepared must not wait for it.
func (c *readStmts) stmt(ctx context.Context, q string) *sql.Stmt {
	c.mu.Lock()
	st, ok := c.m[q]
	full := len(c.m) >= c.max
	c.mu.Unlock()
	if ok {
		return st
	}
	if full {
		return nil
	}
	st, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.m[q]; ok || c.closed || len(c.m) >= c.max {
		// Another read prepared it meanwhile, or there is no room.
		_ = st.Close()
		return prev
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[q] = st
	return st
}

func (c *readStmts) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := c.stmt(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return c.db.QueryContext(ctx, q, args...)
}

func (c *readStmts) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if st := c.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return c.db.QueryRowContext(ctx, q, args...)
}

// close closes the prepared statements.
func (c *readStmts) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, st := range c.m {
		errs = append(errs, st.Close())
	}
	c.m, c.closed = nil, true
	return errors.Join(errs...)
}
