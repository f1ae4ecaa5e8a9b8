package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/transferd/transferd/internal/orchestrator"
)

// TerminalList is exported for the test that checks it against the
// orchestrator.
const TerminalList = terminalList

// PurgeSQL and PurgeIdempotencySQL are the statements of Purge's batches,
// for the test of their plans.
var (
	PurgeSQL            = purgeSQL
	PurgeIdempotencySQL = purgeIdempotencySQL
)

// SetPurgeBatch makes Purge delete at most n rows per statement.
func SetPurgeBatch(s *Store, n int) { s.purgeBatch = n }

// SetPurgePace replaces the clock a purge times its batches by and the
// rest it takes after each full one.
func SetPurgePace(s *Store, clock func() time.Time, rest func(context.Context, time.Duration) error) {
	s.clock, s.rest = clock, rest
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

// MergedUpdateSQL is the statement of a batch's updates, for the test of
// its plan.
var MergedUpdateSQL = mergedUpdateSQL

// WriteUpdates writes the updates of ts in one batch as the committer
// does; with merged, it fails unless they were one merged statement (which
// a refusal by the server would have undone), without, they are one
// statement each. It returns which saves wrote their rows, in the order of
// ts, and sets the versions of those.
func WriteUpdates(s *Store, merged bool, ts ...*orchestrator.Transfer) ([]bool, error) {
	reqs := make([]*saveReq, len(ts))
	for i, t := range ts {
		var err error
		if reqs[i], err = updateReq(t); err != nil {
			return nil, err
		}
	}
	ordered := lockOrder(reqs)
	if merged && mergeable(ordered) != len(ordered) {
		return nil, errors.New("the updates are not mergeable")
	}
	saved, refused, err := s.writeBatch(context.Background(), ordered, merged)
	if err != nil {
		return nil, fmt.Errorf("refused %d: %w", refused, err)
	}
	out := make([]bool, len(ts))
	for i, r := range reqs {
		out[i] = saved[slices.Index(ordered, r)]
		if out[i] {
			ts[i].Version = r.next
		}
	}
	return out, nil
}

// Plans returns how often the connections of the store's pool planned sql
// as a prepared statement, generic and custom plans apart, and whether a
// connection's planner settings that a batch sets are their defaults:
// with a pool of one connection, the connection of every statement the
// store ran.
func Plans(s *Store, sql string) (generic, custom int64, defaults bool, err error) {
	ctx := context.Background()
	err = s.pool.QueryRow(ctx, `SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0),
			(SELECT bool_and(setting = reset_val) FROM pg_settings
				WHERE name IN ('plan_cache_mode', 'enable_seqscan', 'enable_hashjoin', 'enable_mergejoin'))
		FROM pg_prepared_statements WHERE statement = $1`, sql).Scan(&generic, &custom, &defaults)
	return generic, custom, defaults, err
}

// PlanMode reports whether the store found the server's plan_cache_mode;
// SetPlanMode makes it act as if it had or had not.
func PlanMode(s *Store) bool           { return s.planMode }
func SetPlanMode(s *Store, found bool) { s.planMode = found }

// PlanSQL is the statement that sets a batch's plan settings.
func PlanSQL(s *Store) string { return s.planSQL() }

// DeliveriesPlanSQL is the statement that sets the plan settings of
// webhook delivery's transactions.
func DeliveriesPlanSQL(s *Store) string { return s.deliveriesPlanSQL() }

// The statements of ClaimDeliveries and of the upkeep of ready_at, for
// the test of their plans.
const (
	EarliestDueSQL      = earliestDueSQL
	EndpointDueSQL      = endpointDueSQL
	ReadyEndpointsSQL   = readyEndpointsSQL
	ReheadSQL           = reheadSQL
	PromoteSQL          = promoteSQL
	InsertDeliveriesSQL = insertDeliveriesSQL
	HeadsSQL            = headsSQL
	MarkReadySQL        = markReadySQL
	PutDeliveriesSQL    = putDeliveriesSQL
	WrongHeadsSQL       = wrongHeadsSQL
	FixReadySQL         = fixReadySQL
	ClaimLockSQL        = claimLockSQL
)

// HoldFinishTurn takes the turn to write a batch of webhook results, as
// FinishDelivery's committer holds it, until release is called; each
// result queued meanwhile is reported on queued. FinishBatches counts
// the transactions of results written.
func HoldFinishTurn(s *Store) (queued <-chan struct{}, release func()) {
	q := make(chan struct{}, 64)
	return q, s.finishes.Hold(func() { q <- struct{}{} })
}

func FinishBatches(s *Store) int64 { return s.finishBatches.Load() }

// PairLockKey is the advisory lock key of a delivery's endpoint key and
// transfer, for the test of the order enqueues take them in.
func PairLockKey(endpoint, transfer string) int32 { return pairLockKey([2]string{endpoint, transfer}) }

// SetFinishTimeout bounds a batch of webhook results at d.
func SetFinishTimeout(s *Store, d time.Duration) { s.finishTimeout = d }

// CachedPutPlan returns the plan a connection of the pool (a test opens
// the store with one) runs putDeliveriesSQL with, under the settings of a
// transaction of delivery writes: its prepared statement of that text,
// which every caller on the connection shares, explained with EXECUTE, so
// that a generic plan cached on it is the one shown.
func CachedPutPlan(s *Store) (string, error) {
	ctx := context.Background()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return "", err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, s.planSQL()); err != nil {
		return "", err
	}
	var name string
	if err := tx.QueryRow(ctx, `SELECT name FROM pg_prepared_statements WHERE statement = $1`, putDeliveriesSQL).Scan(&name); err != nil {
		return "", err
	}
	rows, err := tx.Query(ctx, `EXPLAIN EXECUTE `+pgx.Identifier{name}.Sanitize()+
		`('{a}', '{pending}', '{2026-01-01}', '{2026-01-01}', '{f}', '{NULL}', '{"{}"}', '{2026-01-01}', '{f}')`)
	if err != nil {
		return "", err
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return strings.Join(lines, "\n"), err
}

// HoldingSQL is the create's look at the call's transfers that hold it,
// with the call's key as $1, for the test of its plans.
var HoldingSQL = fmt.Sprintf(holdingSQL, "$1")

// SignalledSQL is Signalled's statement, for the test of its plan.
const SignalledSQL = signalledSQL

// RoundTrips counts the store's exchanges with the server: each query,
// statement and pipeline (a batch) is one, with its statements prepared
// beforehand (pgx prepares a new statement text in an exchange of its
// own, which is not counted).
type RoundTrips struct{ n atomic.Int64 }

// N is the count so far.
func (r *RoundTrips) N() int64 { return r.n.Load() }

func (r *RoundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}

func (r *RoundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *RoundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}

func (r *RoundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (r *RoundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// OpenCounting is Open, with the store's round trips counted in r.
func OpenCounting(ctx context.Context, dbURL string, r *RoundTrips) (*Store, error) {
	return open(ctx, dbURL, func(cfg *pgxpool.Config) { cfg.ConnConfig.Tracer = r }, time.Now)
}

// TookClock takes a reading of the server's clock made between this
// replica's readings before and after, as a measurement does.
func TookClock(s *Store, before, server, after time.Time) { s.tookClock(before, server, after, 0) }

// SessionSetting is the current value of a setting in a session of the
// store's pool.
func SessionSetting(ctx context.Context, s *Store, name string) (string, error) {
	var v string
	err := s.pool.QueryRow(ctx, `SELECT current_setting($1)`, name).Scan(&v)
	return v, err
}

// IdleInTransaction opens a transaction on a session of the store's pool,
// leaves it idle, and reports whether the server ends that session
// (idle_in_transaction_session_timeout, which must be short) within half
// a minute, watched from another session.
func IdleInTransaction(ctx context.Context, s *Store) (bool, error) {
	idle, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	defer idle.Release()
	tx, err := idle.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(ctx)
	var pid int32
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		return false, err
	}
	watch, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	defer watch.Release()
	for range 1500 {
		var alive bool
		if err := watch.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1), pg_sleep(0.02)`, pid).Scan(&alive, nil); err != nil {
			return false, err
		}
		if !alive {
			return true, nil
		}
	}
	return false, nil
}

// OpenReadOnlyAfter is Open, with every connection made while readOnly
// holds a session of a read-only server (default_transaction_read_only,
// as a hot standby's are): what a replica's new connections reach while a
// failover points its host name at the demoted primary. ResetPool ends
// the pool's connections, so that the next statement connects anew.
func OpenReadOnlyAfter(ctx context.Context, dbURL string, readOnly *atomic.Bool) (*Store, error) {
	return open(ctx, dbURL, func(cfg *pgxpool.Config) {
		cfg.BeforeConnect = func(_ context.Context, c *pgx.ConnConfig) error {
			if readOnly.Load() {
				c.RuntimeParams["default_transaction_read_only"] = "on"
			}
			return nil
		}
	}, time.Now)
}

// ResetPool ends every connection of the store's pool.
func ResetPool(s *Store) { s.pool.Reset() }

// ListenerPID is the server process of the listener's connection
// (ListenEvents): the last it listened on.
func ListenerPID(s *Store) uint32 { return s.listenPID.Load() }

// SetNotify turns the notifications of saved events on or off (a
// benchmark compares the two).
func SetNotify(s *Store, on bool) { s.notifyOff = !on }

// ListenerStarted reports whether ListenEvents started the listener.
func ListenerStarted(s *Store) bool {
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	return s.listenStop != nil
}

// ErrNotDelivered is why a listener whose probe is not heard is not
// listening.
var ErrNotDelivered = errNotDelivered

// SetQuietCheck makes the listener check its connection and probe after
// each quiet spell of d; it is set before ListenEvents.
func SetQuietCheck(s *Store, d time.Duration) { s.quietCheck = d }

// SetProbeWait makes the listener wait d for a probe to be heard, from
// the next probe it awaits on.
func SetProbeWait(s *Store, d time.Duration) { s.probeWithin.Store(int64(d)) }

// SetDeaf has the listener drop every notification it receives (deaf),
// as one behind a pooler in transaction mode receives none, or receive
// them again.
func SetDeaf(s *Store, deaf bool) { s.deaf.Store(deaf) }

// Channel is the channel of the store's notifications, and ProbePrefix
// how its probes' payloads begin (their number follows).
func Channel(s *Store) string     { return s.channel }
func ProbePrefix(s *Store) string { return s.token + probeMark }

// OpenClosingAt is Open, with the connection that runs the first
// statement containing sql closed under it as the statement starts: what a
// connection the server or the network ended looks like to pgx once it
// knows, "conn closed".
func OpenClosingAt(ctx context.Context, dbURL, sql string) (*Store, error) {
	return open(ctx, dbURL, func(cfg *pgxpool.Config) { cfg.ConnConfig.Tracer = &closingAt{sql: sql} }, time.Now)
}

type closingAt struct {
	sql  string
	done atomic.Bool
}

func (c *closingAt) TraceQueryStart(ctx context.Context, conn *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, c.sql) && c.done.CompareAndSwap(false, true) {
		_ = conn.PgConn().Close(ctx)
	}
	return ctx
}

func (c *closingAt) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// Where a BatchFault fails a batch's connection.
const (
	// FaultBefore: the connection fails at the first write of the batch,
	// having written nothing (a socket the peer had already reset).
	FaultBefore int32 = iota + 1
	// FaultAfter: the batch's statements are written whole, then the
	// connection ends before their answer is read: the server may have
	// committed them.
	FaultAfter
	// FaultAfterTimeout: the batch's statements are written whole, then
	// the read of their answer times out (a server that stopped
	// answering, a network that dropped it): the server may have
	// committed them, as for FaultAfter, with an error pgconn calls a
	// timeout.
	FaultAfterTimeout
)

// BatchFault fails the connection of the next batch that creates a
// transfer, once armed, where Arm says.
type BatchFault struct{ mode atomic.Int32 }

// Arm makes the next batch with a create fail at mode.
func (f *BatchFault) Arm(mode int32) { f.mode.Store(mode) }

// OpenFaulty is Open, with f able to fail a batch's connection.
func OpenFaulty(ctx context.Context, dbURL string, f *BatchFault) (*Store, error) {
	return open(ctx, dbURL, func(cfg *pgxpool.Config) {
		dial := cfg.ConnConfig.DialFunc
		cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &faultConn{Conn: c}, nil
		}
		cfg.ConnConfig.Tracer = &batchFaults{f: f}
	}, time.Now)
}

type batchFaults struct{ f *BatchFault }

func (b *batchFaults) TraceBatchStart(ctx context.Context, conn *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	creates := slices.ContainsFunc(d.Batch.QueuedQueries, func(q *pgx.QueuedQuery) bool {
		return strings.Contains(q.SQL, "INSERT INTO transfers")
	})
	if c, ok := conn.PgConn().Conn().(*faultConn); ok && creates {
		c.mode.Store(b.f.mode.Swap(0))
	}
	return ctx
}

func (b *batchFaults) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (b *batchFaults) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}
func (b *batchFaults) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (b *batchFaults) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// faultConn is a connection that fails as its mode says, once.
type faultConn struct {
	net.Conn
	mode atomic.Int32
}

func (c *faultConn) Write(p []byte) (int, error) {
	switch m := c.mode.Load(); {
	case m == FaultBefore && c.mode.CompareAndSwap(m, 0):
		c.Conn.Close()
		return 0, &net.OpError{Op: "write", Net: "tcp", Err: syscall.ECONNRESET}
	case m == FaultAfter && len(p) > 0 && p[0] == 'B' && c.mode.CompareAndSwap(m, 0):
		// The statements' own write, Bind first: on a new connection
		// pgx first prepares them (Parse…) in a write of its own, whose
		// loss would say that nothing of the batch was sent.
		n, err := c.Conn.Write(p)
		c.Conn.Close()
		return n, err
	case m == FaultAfterTimeout && len(p) > 0 && p[0] == 'B' && c.mode.CompareAndSwap(m, 0):
		n, err := c.Conn.Write(p)
		c.Conn.SetReadDeadline(time.Unix(1, 0))
		return n, err
	}
	return c.Conn.Write(p)
}

// OnSignalTaken implements storetest.SignalTaker.
func (s *Store) OnSignalTaken(f func()) { s.signalTaken = f }

// OpenWithAcquireHook is Open, with hook, if it holds a function, taken
// and called at the start of the pool's next acquisition of a
// connection.
func OpenWithAcquireHook(ctx context.Context, dbURL string, hook *atomic.Pointer[func()]) (*Store, error) {
	return open(ctx, dbURL, func(cfg *pgxpool.Config) { cfg.ConnConfig.Tracer = &acquireHook{hook: hook} }, time.Now)
}

type acquireHook struct{ hook *atomic.Pointer[func()] }

func (a *acquireHook) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	if f := a.hook.Swap(nil); f != nil {
		(*f)()
	}
	return ctx
}

func (a *acquireHook) TraceAcquireEnd(context.Context, *pgxpool.Pool, pgxpool.TraceAcquireEndData) {}
func (a *acquireHook) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (a *acquireHook) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// HoldConn takes a connection of the store's pool until release.
func HoldConn(ctx context.Context, s *Store) (release func(), err error) {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	return c.Release, nil
}

// PgCode returns the SQLSTATE and constraint of a server error.
func PgCode(err error) (code, constraint string) { return pgCode(err) }
