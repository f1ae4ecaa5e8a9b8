package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/transferd/transferd/internal/orchestrator"
)

// Group commit. Every transition of every transfer is a durable write
// (synchronous=FULL: an fsync per commit), and SQLite has one writer, so
// one commit per save caps a busy process at a few hundred transfers a
// second and spends most of its CPU committing. Saves that arrive while a
// commit is running are written together in the next transaction: one
// fsync for the batch. Each save still gets its own compare-and-set on its
// version, and its own verdict. A lone save is committed at once: nothing
// waits for company.

// maxBatch bounds one transaction, so that a flood of saves still commits
// in steps.
const maxBatch = 128

var errClosed = errors.New("store closed")

// updateReq is one save waiting for the committer.
type updateReq struct {
	id            string
	version, next int64
	col           columns
	done          chan error // receives exactly one verdict
}

// commitLoop runs until Close. The request channel is unbuffered: a save is
// either taken by the loop (and gets a verdict) or not handed over at all.
func (s *Store) commitLoop() {
	defer close(s.committed)
	for {
		var first *updateReq
		select {
		case first = <-s.updates:
		case <-s.quit:
			return
		}
		batch := []*updateReq{first}
	gather:
		for len(batch) < maxBatch {
			select {
			case r := <-s.updates:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		s.commitBatch(batch)
	}
}

// commitBatch writes a batch in one transaction and answers every save.
func (s *Store) commitBatch(batch []*updateReq) {
	ctx := context.Background() // bounded by busy_timeout; callers wait for the verdict
	verdicts := make([]error, len(batch))
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		for _, r := range batch {
			r.done <- fail("update "+r.id, err)
		}
		return
	}
	stmt, insertEvent := tx.StmtContext(ctx, s.update), tx.StmtContext(ctx, s.insertEvent)
	for i, r := range batch {
		verdicts[i] = s.updateIn(ctx, tx, stmt, insertEvent, r)
	}
	if err := tx.Commit(); err != nil {
		// Nothing of the batch was saved.
		for i, r := range batch {
			if verdicts[i] == nil {
				verdicts[i] = fail("update "+r.id, err)
			}
		}
	}
	for i, r := range batch {
		r.done <- verdicts[i]
	}
}

// updateIn is one compare-and-set inside the batch's transaction, with
// the save's events. A failed statement (a constraint) does not abort the
// transaction: SQLite rolls back just that statement. A save with events
// runs in a savepoint, so that an event that cannot be written takes its
// record's change back with it, and nothing of the other saves.
func (s *Store) updateIn(ctx context.Context, tx *sql.Tx, stmt, insertEvent *sql.Stmt, r *updateReq) error {
	if len(r.col.events) == 0 {
		return s.casIn(ctx, tx, stmt, r)
	}
	op := "update " + r.id
	if _, err := tx.ExecContext(ctx, `SAVEPOINT save`); err != nil {
		return fail(op, err)
	}
	err := s.casIn(ctx, tx, stmt, r)
	if err == nil {
		if err = writeEvents(ctx, insertEvent, &r.col); err != nil {
			err = fail(op, err)
		}
	}
	if err != nil {
		if _, rerr := tx.ExecContext(ctx, `ROLLBACK TO save`); rerr != nil {
			return errors.Join(err, fail(op, rerr))
		}
	}
	if _, rerr := tx.ExecContext(ctx, `RELEASE save`); rerr != nil {
		return errors.Join(err, fail(op, rerr))
	}
	return err
}

// casIn is the compare-and-set of one save.
func (s *Store) casIn(ctx context.Context, tx *sql.Tx, stmt *sql.Stmt, r *updateReq) error {
	op := "update " + r.id
	c := r.col
	res, err := stmt.ExecContext(ctx, r.next, c.state, c.owner, c.open, c.updated, c.record, r.id, r.version)
	if isUnique(err) {
		// Only possible when a terminal transfer is made active again
		// while another one holds its call.
		var id string
		if tx.QueryRowContext(ctx, `SELECT id FROM transfers WHERE call_key = ? AND `+nonTerminal, c.callKey).Scan(&id) == nil {
			return kindErr(op, orchestrator.KindConflict, &orchestrator.ActiveTransferError{ID: id})
		}
	}
	if err != nil {
		return fail(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fail(op, err)
	}
	if n == 0 {
		var one int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM transfers WHERE id = ?`, r.id).Scan(&one)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return kindErr(op, orchestrator.KindNotFound, errNotFound)
		case err != nil:
			return fail(op, err)
		}
		return kindErr(op, orchestrator.KindConflict, orchestrator.ErrVersionConflict)
	}
	return nil
}
