package sqlite

import (
	"context"
	"fmt"

	"github.com/transferd/transferd/internal/orchestrator"
)

// importSQL is Import's insert: Create's, with the record's own version,
// and refused (not skipped) when the id exists.
const importSQL = `INSERT INTO transfers
		(id, version, state, provider, call_key, owner, open, created_at, updated_at, record,
		 tenant, external_id, call_domain, call_user, call_id, target)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

// Import writes transfers as they are, each with the events of its
// Outbox, in one transaction: a history copied from another store, or
// the store benchmark's generated one. Creating them one by one would
// commit each (a million took more than nine minutes); Import writes
// thousands per commit. The rows are exactly those Create and Update
// would have left: the same columns and JSON, every event with the
// record as imported. Nothing is written if any transfer cannot be (an
// id that exists, a second active transfer of one call). Import is not
// for live transfers: it links no idempotency reservation and holds the
// writer for the whole batch, so callers keep batches to a few thousand.
func (s *Store) Import(ctx context.Context, ts []*orchestrator.Transfer) error {
	const op = "import"
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fail(op, err)
	}
	defer tx.Rollback()
	ins, err := tx.PrepareContext(ctx, importSQL)
	if err != nil {
		return fail(op, err)
	}
	defer ins.Close()
	evs := tx.StmtContext(ctx, s.insertEvent)
	for _, t := range ts {
		if t.Version < 1 {
			return fail(op+" "+t.ID, fmt.Errorf("version %d: a stored transfer has version 1 or more", t.Version))
		}
		c, err := encode(t)
		if err != nil {
			return fail(op+" "+t.ID, err)
		}
		if _, err := ins.ExecContext(ctx, t.ID, t.Version, c.state, c.provider, c.callKey, c.owner, c.open, c.created, c.updated,
			c.record, c.tenant, c.externalID, c.domain, c.user, c.callID, c.target); err != nil {
			return fail(op+" "+t.ID, err)
		}
		if err := writeEvents(ctx, &batchStmts{insertEvent: evs}, &c); err != nil {
			return fail(op+" "+t.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fail(op, err)
	}
	return nil
}
