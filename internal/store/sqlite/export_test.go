package sqlite

import "github.com/transferd/transferd/internal/orchestrator"

// TerminalList is exported for the test that checks it against the
// orchestrator.
const TerminalList = terminalList

// SetPurgeBatch makes Purge delete at most n rows per transaction.
func SetPurgeBatch(s *Store, n int) { s.purgeBatch = n }

// ListQuery and EventsQuery are the statements of List and Events, for the
// tests that check their plans.
var (
	ListQuery   = listQuery
	EventsQuery = eventsQuery
)

// CreateInOneBatch creates ts in one group commit, in order, as the
// committer does when their Creates arrive together, and returns each
// verdict. It calls the batch directly, so which saves share a transaction
// does not depend on timing.
func CreateInOneBatch(s *Store, ts ...*orchestrator.Transfer) []error {
	batch := make([]*updateReq, len(ts))
	for i, t := range ts {
		r, err := createReq(t)
		if err != nil {
			panic(err)
		}
		batch[i] = r
	}
	s.commitBatch(batch)
	errs := make([]error, len(ts))
	for i, r := range batch {
		errs[i] = <-r.done
	}
	return errs
}
