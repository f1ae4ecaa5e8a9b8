package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/groupcommit"
)

// Group commit (package groupcommit). Every transition of every transfer
// is a durable write (synchronous=FULL: an fsync per commit), and SQLite
// has one writer, so one commit per save caps a busy process at a few
// hundred transfers a second and spends most of its CPU committing. Saves
// that arrive while a commit is running are written together in the next
// transaction: one fsync for the batch. Each save still gets its own
// compare-and-set on its version, and its own verdict. Creates go the same
// way (they were a transaction and an fsync of their own, a tenth of
// transferd's CPU per transfer under load): a refused create writes
// nothing and takes nothing of the other saves with it (see commitBatch).

// maxBatch bounds one transaction, so that a flood of saves still commits
// in steps.
const maxBatch = 128

var errClosed = errors.New("store closed")

// updateReq is one save waiting for the committer.
type updateReq struct {
	id        string
	create    bool // an insert of a new transfer (version and next unused)
	idemScope string
	idemKey   string // a create's idempotency reservation to link, if any
	// idemHeld is the created_at of the reservation the create holds
	// (orchestrator.Transfer.IdempotencyReservedAt), if it names one.
	idemHeld      sql.NullString
	version, next int64
	col           columns
	done          chan error // receives exactly one verdict
	// look: read the transfer's pending signal after the write
	// (Transfer.LookForSignal), into found, before the verdict is sent.
	look  bool
	found orchestrator.Signal
	// token: the saving process's (orchestrator.Transfer.Token), which
	// the heartbeat of the record's owner must hold; "" checks nothing.
	token string
}

// op names a save in its errors.
func (r *updateReq) op() string {
	if r.create {
		return "create " + r.id
	}
	return "update " + r.id
}

// commit queues a save and waits for its verdict (groupcommit.Commit: once
// queued, it is waited for even if ctx ends). A save that was never queued
// (its context ended first, or the store is closed) wrote nothing: a
// create says so (notSaved).
func (s *Store) commit(ctx context.Context, r *updateReq) error {
	if err := ctx.Err(); err != nil {
		return notSaved(r, fail(r.op(), err))
	}
	err, ok := groupcommit.Commit(s.commits, r, r.done)
	if !ok {
		return notSaved(r, fail(r.op(), errClosed))
	}
	return err
}

// commitBatch writes a batch in one transaction and answers every save.
//
// Each save must be all or nothing, and must not take the others with it.
// A save that is refused is refused by its first statement (a create's
// insert, an update's compare-and-set), which SQLite rolls back alone, so
// the batch is written without savepoints: they cost a statement journal
// and three statements per save, about 7 % of transferd's CPU. Any other
// failure — a save that fails after its first statement wrote (an event
// or link that cannot be written), or an error that may have ended the
// transaction (disk full, I/O: SQLite may roll it all back, and the next
// statements would then commit on their own) — rolls the transaction back,
// and the batch is written again as before this change: a savepoint per
// save, which takes back just the failed one.
func (s *Store) commitBatch(batch []*updateReq) {
	s.batches.Add(1)
	if !s.writeBatch(batch, false) {
		s.rewrites.Add(1)
		s.writeBatch(batch, true)
	}
}

// writeBatch writes batch in one transaction, each save in a savepoint if
// savepoints is set. It answers every save and returns true, or, without
// savepoints, returns false having answered none and written nothing when
// a save failed otherwise than by a refusal of its first statement.
func (s *Store) writeBatch(batch []*updateReq, savepoints bool) bool {
	ctx := context.Background() // bounded by busy_timeout; callers wait for the verdict
	verdicts := make([]error, len(batch))
	// undone marks the saves whose failure took back all they wrote: once
	// the transaction commits, a create among them is known not saved.
	undone := make([]bool, len(batch))
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		for _, r := range batch {
			r.done <- notSaved(r, fail(r.op(), err))
		}
		return true
	}
	st := batchStmts{update: tx.StmtContext(ctx, s.update), insert: tx.StmtContext(ctx, s.insert),
		insertEvent: tx.StmtContext(ctx, s.insertEvent), link: tx.StmtContext(ctx, s.linkIdem),
		look: tx.StmtContext(ctx, s.look), holding: tx.StmtContext(ctx, s.holding), tokenOf: tx.StmtContext(ctx, s.tokenOf),
		fault: s.eventFault}
	for i, r := range batch {
		write := func(wrote *bool) error {
			if r.create {
				return createIn(ctx, tx, &st, r, wrote)
			}
			return updateIn(ctx, tx, &st, r, wrote)
		}
		if savepoints {
			undone[i], verdicts[i] = saveIn(ctx, tx, r, write)
			continue
		}
		var wrote bool
		verdicts[i] = write(&wrote)
		if err := verdicts[i]; err != nil && (wrote || !refusal(err)) {
			_ = tx.Rollback()
			return false
		}
	}
	if err := tx.Commit(); err != nil {
		// Nothing of the batch was saved, and a refusal reached against
		// the batch's own writes (a create refused for a call that a create
		// earlier in the batch took) would name a transfer that does not
		// exist: every save of the batch gets the failure.
		for i, r := range batch {
			verdicts[i], undone[i] = fail(r.op(), err), false
		}
	}
	for i, r := range batch {
		if undone[i] {
			verdicts[i] = notSaved(r, verdicts[i])
		}
		r.done <- verdicts[i]
	}
	return true
}

// notSaved is the verdict on r, which failed with err and wrote nothing
// that was committed: a create's failure of its own (not a refusal, which
// has its kind already) says that nothing was saved (ErrNotSaved), so
// that the engine does not look for the transfer for minutes. Once, a
// failed SQLite create was looked for as if its commit's answer was lost.
func notSaved(r *updateReq, err error) error {
	if !r.create || orchestrator.KindOf(err) != orchestrator.KindInternal {
		return err
	}
	return kindErr(r.op(), orchestrator.KindUnavailable, fmt.Errorf("%w: %w", orchestrator.ErrNotSaved, err))
}

// refusal reports whether err is a save's own verdict on its first
// statement (a conflict, an unknown transfer), after which the batch's
// transaction goes on.
func refusal(err error) bool {
	k := orchestrator.KindOf(err)
	return k == orchestrator.KindConflict || k == orchestrator.KindNotFound
}

// batchStmts are the store's prepared statements bound to a batch's
// transaction.
type batchStmts struct {
	update, insert, insertEvent, link, look, holding, tokenOf *sql.Stmt
	fault                                                     func(eventID string) error // tests: an event that cannot be written
}

// updateIn is one compare-and-set inside the batch's transaction, with
// the save's events. A failed statement (a constraint) does not abort the
// transaction: SQLite rolls back just that statement. *wrote is set once
// the compare-and-set has changed the row.
func updateIn(ctx context.Context, tx *sql.Tx, st *batchStmts, r *updateReq, wrote *bool) error {
	if err := tokenFreeIn(ctx, st, r); err != nil {
		return err
	}
	if err := casIn(ctx, tx, st.update, r); err != nil {
		return err
	}
	*wrote = true
	if err := writeEvents(ctx, st, &r.col); err != nil {
		return fail(r.op(), err)
	}
	if r.look {
		// The writer's transaction orders this look after every PutSignal
		// that committed before the write, and before any later one,
		// which then finds the version moved on.
		var sig string
		switch err := st.look.QueryRowContext(ctx, r.id).Scan(&sig); {
		case errors.Is(err, sql.ErrNoRows):
			r.found = orchestrator.SignalNone
		case err != nil:
			return fail(r.op(), err)
		default:
			r.found = orchestrator.Signal(sig)
		}
	}
	return nil
}

// saveIn runs the statements of one save in a savepoint of the batch's
// transaction: when write fails, everything it wrote is taken back, and
// nothing of the other saves. undone reports a failure whose writes were
// all taken back (or never made).
func saveIn(ctx context.Context, tx *sql.Tx, r *updateReq, write func(wrote *bool) error) (undone bool, err error) {
	op := r.op()
	if _, err := tx.ExecContext(ctx, `SAVEPOINT save`); err != nil {
		return true, fail(op, err)
	}
	var wrote bool
	err = write(&wrote)
	if err != nil && wrote {
		if _, rerr := tx.ExecContext(ctx, `ROLLBACK TO save`); rerr != nil {
			return false, errors.Join(err, fail(op, rerr))
		}
	}
	if _, rerr := tx.ExecContext(ctx, `RELEASE save`); rerr != nil {
		return false, errors.Join(err, fail(op, rerr))
	}
	return err != nil, err
}

// createIn inserts a new transfer with its events and the link from its
// idempotency reservation. The partial unique index on call_key decides
// which of two creates for one call wins, in one batch or across batches.
// *wrote is set once the transfer's row is inserted.
func createIn(ctx context.Context, tx *sql.Tx, st *batchStmts, r *updateReq, wrote *bool) error {
	op := r.op()
	c := &r.col
	if err := tokenFreeIn(ctx, st, r); err != nil {
		return err
	}
	if held, err := callFreeIn(ctx, st, r.id, c); err != nil {
		return fail(op, err)
	} else if held != nil {
		return kindErr(op, orchestrator.KindConflict, held)
	}
	res, err := st.insert.ExecContext(ctx, r.id, c.state, c.provider, c.callKey, c.owner, c.open, c.created, c.updated, c.record,
		c.tenant, c.externalID, c.domain, c.user, c.callID, c.target)
	if isUnique(err) {
		// The batch's transaction holds the write lock: the transfer that
		// holds the call (committed, or created earlier in this batch) is
		// there to be named.
		var id string
		if err := tx.QueryRowContext(ctx, `SELECT id FROM transfers WHERE call_key = ? AND `+nonTerminal, c.callKey).Scan(&id); err != nil {
			return fail(op, err)
		}
		return kindErr(op, orchestrator.KindConflict, &orchestrator.ActiveTransferError{ID: id})
	}
	if err != nil {
		return fail(op, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fail(op, err)
	} else if n == 0 {
		return kindErr(op, orchestrator.KindConflict, errors.New("a transfer with this id exists"))
	}
	*wrote = true
	if err := writeEvents(ctx, st, c); err != nil {
		return fail(op, err)
	}
	if r.idemKey != "" {
		res, err := st.link.ExecContext(ctx, r.id, r.idemScope, r.idemKey, r.idemHeld, r.idemHeld)
		if err != nil {
			return fail(op, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fail(op, err)
		}
		if n == 0 && r.idemHeld.Valid {
			// The reservation was settled (and the key may be a retry's
			// now): the savepoint takes the transfer back.
			return kindErr(op, orchestrator.KindUnavailable, orchestrator.ErrReservationLost)
		}
	}
	return nil
}

// tokenFreeIn refuses a save that carries a token (updateReq.token) when
// the heartbeat of the record's owner holds another: a process started
// under the name took it over (orchestrator.Store.Update). The data
// directory's lock keeps a second process out, unless its lock file was
// removed by hand; the writer's transaction orders the look with the
// heartbeat's write. A refusal, before anything of the save is written.
func tokenFreeIn(ctx context.Context, st *batchStmts, r *updateReq) error {
	if r.token == "" || r.col.owner == "" {
		return nil
	}
	var tok string
	switch err := st.tokenOf.QueryRowContext(ctx, r.col.owner).Scan(&tok); {
	case errors.Is(err, sql.ErrNoRows):
		return nil // no heartbeat under the name: no other process's
	case err != nil:
		return fail(r.op(), err)
	case tok != "" && tok != r.token: // none: an older version's heartbeat, no alarm (as Heartbeat)
		return kindErr(r.op(), orchestrator.KindConflict, orchestrator.ErrSupersededSave)
	}
	return nil
}

// casIn is the compare-and-set of one save.
// callFreeIn returns an ActiveTransferError when a transfer of the call
// holds it (orchestrator.Transfer.HoldsCall): its active one, or one that
// ended owing it its end state. The writer's transaction orders it with
// the saves: no transfer of the call can end owing it between this look
// and the insert.
func callFreeIn(ctx context.Context, st *batchStmts, id string, c *columns) (*orchestrator.ActiveTransferError, error) {
	var active, owing sql.NullString
	if err := st.holding.QueryRowContext(ctx, c.callKey).Scan(&active, &owing); err != nil {
		return nil, err
	}
	// The transfer itself is a create again of a stored transfer, which
	// the insert refuses as such.
	switch {
	case active.Valid && active.String != id:
		return &orchestrator.ActiveTransferError{ID: active.String}, nil
	case owing.Valid && owing.String != id:
		return &orchestrator.ActiveTransferError{ID: owing.String, CleaningUp: true}, nil
	}
	return nil, nil
}

func casIn(ctx context.Context, tx *sql.Tx, stmt *sql.Stmt, r *updateReq) error {
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
