package postgres

import (
	"context"

	"github.com/transferd/transferd/internal/orchestrator"
)

// TerminalList is exported for the test that checks it against the
// orchestrator.
const TerminalList = terminalList

// SetPurgeBatch makes Purge delete at most n rows per statement.
func SetPurgeBatch(s *Store, n int) { s.purgeBatch = n }

// ListQuery and EventsQuery are the statements of List and Events, for the
// tests that check their plans.
var (
	ListQuery   = listQuery
	EventsQuery = eventsQuery
)

// MaxConns is the size of the store's pool.
func MaxConns(s *Store) int32 { return s.pool.Config().MaxConns }

// SaveInOneBatch saves ts in one group commit, in order, as the committer
// does when their saves arrive together, and returns each verdict: a
// transfer at version 0 is created, any other updated. It calls the batch
// directly, so which saves share a transaction does not depend on timing.
func SaveInOneBatch(s *Store, ts ...*orchestrator.Transfer) []error {
	ctx := context.Background()
	batch := make([]*saveReq, len(ts))
	for i, t := range ts {
		var err error
		if t.Version == 0 {
			batch[i], err = createReq(t)
		} else {
			batch[i], err = updateReq(t)
		}
		if err != nil {
			panic(err)
		}
	}
	s.commitBatch(batch)
	errs := make([]error, len(ts))
	for i, r := range batch {
		v := <-r.done
		if r.create {
			_, errs[i] = s.created(ctx, ts[i], r, v)
		} else {
			errs[i] = s.updated(ctx, ts[i], r, v)
		}
	}
	return errs
}
