package sqlite

import (
	"context"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// TerminalList is exported for the test that checks it against the
// orchestrator.
const TerminalList = terminalList

// UpdateSQL is a save's compare-and-set.
const UpdateSQL = updateSQL

// NonTerminal is the predicate of transfers_active_call, as queries spell it.
const NonTerminal = nonTerminal

// Ended is the states' half of the predicate of transfers_owing_call, as
// queries spell it.
const Ended = ended

// SetSlices sets what Purge's slices do: each holds the writer until
// budget has passed on clock, deleting purgeChunk rows or giving back
// vacuumChunk pages a step.
func SetSlices(s *Store, budget time.Duration, purgeChunk, vacuumChunk int, clock func() time.Time) {
	s.budget, s.purgeChunk, s.vacuumChunk, s.clock = budget, purgeChunk, vacuumChunk, clock
}

// Slices is the number of slices the store has committed, Checkpoints
// the number of checkpoints run between them, and FileSyncs the flushes
// of the database file after those.
func Slices(s *Store) int64      { return s.slices.Load() }
func Checkpoints(s *Store) int64 { return s.checkpoints.Load() }
func FileSyncs(s *Store) int64   { return s.syncs.Load() }

// Reclaim gives the free pages back to the file system, as Purge does
// after deleting.
func Reclaim(ctx context.Context, s *Store) error { return s.reclaim(ctx) }

// WriterPragma is the value of a pragma on the writer's connection.
func WriterPragma(ctx context.Context, s *Store, name string) (int, error) {
	var n int
	err := s.w.QueryRowContext(ctx, `PRAGMA `+name).Scan(&n)
	return n, err
}

// ListQuery, EventsQuery and DeliveriesQuery are the statements of List,
// Events and Deliveries, for the tests that check their plans.
var (
	ListQuery       = listQuery
	EventsQuery     = eventsQuery
	LastEventQuery  = lastEventQuery
	DeliveriesQuery = deliveriesQuery
)

// PurgeDeliveriesSQL is the statement of PurgeDeliveries, for the test
// of its plan.
const PurgeDeliveriesSQL = purgeDeliveriesSQL

// CreateInOneBatch creates ts in one group commit, in order, as the
// committer does when their Creates arrive together, and returns each
// verdict. It calls the batch directly, so which saves share a transaction
// does not depend on timing.
func CreateInOneBatch(s *Store, ts ...*orchestrator.Transfer) []error {
	return inOneBatch(s, createReq, ts)
}

// UpdateInOneBatch saves ts in one group commit, in order, and returns
// each verdict; a saved transfer's Version is advanced as Update does.
func UpdateInOneBatch(s *Store, ts ...*orchestrator.Transfer) []error {
	errs := inOneBatch(s, updateReqOf, ts)
	for i, t := range ts {
		if errs[i] == nil {
			t.Version++
		}
	}
	return errs
}

func inOneBatch(s *Store, req func(*orchestrator.Transfer) (*updateReq, error), ts []*orchestrator.Transfer) []error {
	batch := make([]*updateReq, len(ts))
	for i, t := range ts {
		r, err := req(t)
		if err != nil {
			panic(err)
		}
		batch[i] = r
	}
	release := s.commits.Hold(nil)
	s.commitBatch(batch)
	release()
	errs := make([]error, len(ts))
	for i, r := range batch {
		errs[i] = <-r.done
	}
	return errs
}

// SetEventFault makes the writing of every event for which fault returns
// an error fail, as a full disk would.
func SetEventFault(s *Store, fault func(eventID string) error) { s.eventFault = fault }

// Rewrites counts the batches written again with a savepoint per save.
func Rewrites(s *Store) int64 { return s.rewrites.Load() }

// HoldTurn takes the turn to commit, as a committer writing a batch holds
// it, until the returned release is called. Each save queued meanwhile is
// reported on queued.
func HoldTurn(s *Store) (queued <-chan struct{}, release func()) {
	q := make(chan struct{}, 1024)
	return q, s.commits.Hold(func() { q <- struct{}{} })
}

// Batches is the number of transactions of saves the store has written.
func Batches(s *Store) int64 { return s.batches.Load() }

// The statements of ClaimDeliveries and of the upkeep of ready_at, for
// the test of their plans.
const (
	EarliestDueSQL    = earliestDueSQL
	ClaimRecordsSQL   = claimRecordsSQL
	EndpointDueSQL    = endpointDueSQL
	ReadyEndpointsSQL = readyEndpointsSQL
	ReheadSQL         = reheadSQL
	PromoteSQL        = promoteSQL
	InsertDeliverySQL = insertDeliverySQL
)

// UnsyncedLevel is the synchronous level inside a transaction of
// beginUnsynced, the one webhook delivery's writes commit in.
func UnsyncedLevel(ctx context.Context, s *Store) (int, error) {
	tx, done, err := s.beginUnsynced(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	var n int
	err = tx.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&n)
	return n, err
}

// HoldFinishTurn takes the turn to write a batch of webhook results, as
// FinishDelivery's committer holds it, until release is called; each
// result queued meanwhile is reported on queued. FinishBatches counts
// the batches of results written.
func HoldFinishTurn(s *Store) (queued <-chan struct{}, release func()) {
	q := make(chan struct{}, 1024)
	return q, s.finishes.Hold(func() { q <- struct{}{} })
}

func FinishBatches(s *Store) int64 { return s.finishBatches.Load() }

// Unprepared counts the statements of webhook delivery the writer ran by
// their text, not prepared (prepared.go).
func Unprepared(s *Store) int64 { return s.unprepared.Load() }

// ReadStmts is how many statements of the reader pool are prepared; a
// SetMaxReadStmts of n keeps at most n.
func ReadStmts(s *Store) int {
	s.reads.mu.Lock()
	defer s.reads.mu.Unlock()
	return len(s.reads.m)
}

func SetMaxReadStmts(s *Store, n int) {
	s.reads.mu.Lock()
	defer s.reads.mu.Unlock()
	s.reads.max = n
}

// HoldingSQL is a create's look at the transfers that hold its call,
// and SignalledSQL the poll for signals, for the tests of their plans.
const (
	HoldingSQL   = holdingSQL
	SignalledSQL = signalledSQL
)

// PreparedSQL is every statement the store keeps prepared: the writer's,
// and those the reader pool has prepared so far.
func PreparedSQL(s *Store) []string {
	qs := append([]string{updateSQL, insertEventSQL, insertSQL, linkIdemSQL, lookSignalSQL, holdingSQL},
		preparedSQL...)
	s.reads.mu.Lock()
	defer s.reads.mu.Unlock()
	for q := range s.reads.m {
		qs = append(qs, q)
	}
	return qs
}

// Autocheckpoint is the writer's wal_autocheckpoint.
const Autocheckpoint = autocheckpoint

// OnSignalTaken implements storetest.SignalTaker.
func (s *Store) OnSignalTaken(f func()) { s.signalTaken = f }

// HoldWriter takes the writer connection until release.
func HoldWriter(ctx context.Context, s *Store) (release func(), err error) {
	c, err := s.w.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return func() { _ = c.Close() }, nil
}

// WriterWaits counts the waits for the writer connection so far.
func WriterWaits(s *Store) int64 { return s.w.Stats().WaitCount }
