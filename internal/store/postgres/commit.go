package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/groupcommit"
)

// Group commit (package groupcommit), as the SQLite store does it. A save
// was a transaction of its own: BEGIN, the UPDATE, the outbox lock, one
// INSERT per event, COMMIT, in two round trips, with the outbox lock held
// across the second one, so that under load the saves of every transfer
// queued behind one another's round trips and the server spent its CPU on
// many small transactions. Now saves and creates that arrive while a batch
// is being written go together in the next one: the outbox lock, one
// statement per save (its compare-and-set and its events, or its insert,
// events and idempotency link), sent as one pipeline in one round trip
// and one transaction (writeBatch). A lone save is written at once:
// nothing waits for company.
//
// Each save keeps its own verdict. A version conflict or a create whose id
// or call is taken writes nothing and is not an error inside the
// transaction (its statement matches or inserts no row, and only then
// writes its events), so it takes nothing of the others with it. A
// statement the server refuses aborts the transaction: the batch is rolled
// back (nothing of it was written), that save gets the refusal, and the
// others are written again without it. If the batch cannot be written or
// committed for any other reason, every save in it gets the failure, as in
// the SQLite store; one that found no connection to write on, or whose
// connection failed before any of it reached the server (sentNothing),
// sent nothing, and its creates say that nothing was saved.
//
// The updates of a batch (most of its saves: a transfer is created once
// and updated five times) are one statement, mergedUpdateSQL, not one
// each: the server's cost of a statement (starting its executor, opening
// the tables and their indexes, evaluating the partial indexes'
// predicates) was paid once per save, about an eighth of its CPU per save
// at 32 transfers at a time, where batches hold about eight updates
// (docs/benchmarks.md, tenth pass). Its verdicts are the
// same as the single statements': each update is a compare-and-set of its
// own, and writes its events only if it wrote its row. Should the server
// refuse the statement, it cannot say for which save, so the batch is
// written again one statement per save, which tells (commitBatch). A batch
// with two saves of one transfer is written that way too: one UPDATE
// changes a row once, whichever of its two source rows it picks, where
// single statements decide in arrival order.
//
// Locks are taken in one order so that batches of several replicas do not
// deadlock: the outbox lock first (a batch holding it only ever waits for
// row locks of transactions that do not want it), then the transfers
// updated, in id order, then the creates, in the order they arrived (of
// two creates of one call, the first wins, as in the SQLite store). The
// merged statement locks its rows in the order its plan visits them: a
// nested loop from the saves, sorted by id, to the primary key, which the
// batch's plan settings leave the planner no other choice than
// (planSQL, TestMergedUpdatePlan). A plan that visited them otherwise
// could only make a deadlock's victim of a batch, which the server rolls
// back and commitBatch writes again.

// maxBatch bounds one transaction, so that a flood of saves still commits
// in steps.
const maxBatch = 128

// commitTimeout bounds the writing of one batch: the savers wait for the
// verdict whatever their own contexts say (see commit), so a server that
// stops answering must not hold them for ever.
const commitTimeout = time.Minute

var errClosed = errors.New("store closed")

// saveReq is one save waiting for the committer.
type saveReq struct {
	id            string
	create        bool // an insert of a new transfer
	version, next int64
	owner         string
	open          bool
	created       time.Time
	updated       time.Time
	idemScope     *string // a create's idempotency reservation to link, if any
	idemKey       *string
	idemHeld      *time.Time // the created_at of the reservation the create holds, if it names one
	col           columns
	events        eventColumns
	done          chan verdict // receives exactly one verdict
	// look: read the transfer's pending signal after the batch's writes
	// (Transfer.LookForSignal), into found, before the verdict is sent.
	look  bool
	found orchestrator.Signal
	// token: the saving process's (orchestrator.Transfer.Token), which
	// the heartbeat of owner must hold (tokenHeld); "" checks nothing.
	token string
}

// tokenHeld is the condition of a save that carries its process's token
// (%[2]s) for owner %[1]s: none is carried, there is no owner (a
// hand-over), or owner's heartbeat holds no other process's token (a name
// with no heartbeat, or one without a token, an older version's, is no
// one else's: Heartbeat takes it over). Judged as of the statement's
// snapshot: a takeover that commits while the statement runs is seen by
// the saves after it (orchestrator.Store.Update). The look is one index
// lookup of the heartbeats' primary key.
const tokenHeld = `(%[2]s = '' OR %[1]s = '' OR NOT EXISTS (SELECT 1 FROM replicas WHERE name = %[1]s AND token NOT IN ('', %[2]s)))`

// verdict is the committer's answer to one save.
type verdict struct {
	// saved: the save's row was updated (inserted); when false and err is
	// nil, its version did not match (its id or call was taken).
	saved bool
	// err is the failure. refused: the server refused the save's own
	// statement (err is the server's error, unwrapped), and nothing was
	// written; otherwise err is wrapped with the operation.
	err     error
	refused bool
}

// op names a save in its errors.
func (r *saveReq) op() string {
	if r.create {
		return "create " + r.id
	}
	return "update " + r.id
}

// eventColumns are the events of a save as arrays, one per column, so that
// the save's single statement inserts them all.
type eventColumns struct {
	ids, tenants, transferIDs, types, froms, tos []string
	seqs                                         []int64
	ats                                          []time.Time
}

func (e *eventColumns) len() int { return len(e.ids) }

// add appends o's events to e's.
func (e *eventColumns) add(o *eventColumns) {
	e.ids = append(e.ids, o.ids...)
	e.tenants = append(e.tenants, o.tenants...)
	e.transferIDs = append(e.transferIDs, o.transferIDs...)
	e.seqs = append(e.seqs, o.seqs...)
	e.types = append(e.types, o.types...)
	e.ats = append(e.ats, o.ats...)
	e.froms = append(e.froms, o.froms...)
	e.tos = append(e.tos, o.tos...)
}

// The statements of a save. The event INSERT reads the row the save wrote
// (RETURNING), so that a save that writes no row writes no event; the
// unnest keeps the outbox's order. The record, $6 in both, is the
// snapshot of every event of the save.
const (
	eventsFrom = `INSERT INTO events (id, tenant, transfer_id, seq, type, at, from_state, to_state, snapshot)
		SELECT ev.id, ev.tenant, ev.transfer_id, ev.seq, ev.type, ev.at, ev.from_state, ev.to_state, $6
		FROM saved, unnest($%d::text[], $%d::text[], $%d::text[], $%d::bigint[], $%d::text[], $%d::timestamptz[], $%d::text[], $%d::text[])
			WITH ORDINALITY AS ev(id, tenant, transfer_id, seq, type, at, from_state, to_state, n)
		ORDER BY ev.n`
)

var (
	// updateEventsSQL is updateSQL with the save's events.
	updateEventsSQL = `WITH saved AS (UPDATE transfers SET version = $1, state = $2, owner = $3, open = $4, updated_at = $5, record = $6
		WHERE id = $7 AND version = $8 AND ` + fmt.Sprintf(tokenHeld, "$3::text", "$17::text") + ` RETURNING id),
	written AS (` + fmt.Sprintf(eventsFrom, 9, 10, 11, 12, 13, 14, 15, 16) + `)
	SELECT count(*) FROM saved`

	// createSQL inserts a transfer with its keys (the columns lists filter
	// on, in a table of their own: migration 7) and its events, and links
	// its idempotency reservation. ON CONFLICT DO NOTHING covers both
	// unique indexes: a create whose id is taken, or whose call has an
	// active transfer (the partial unique index on call_key, which decides
	// between concurrent creates across replicas), inserts nothing and is
	// told apart afterwards (Create).
	//
	// A create that holds its reservation ($26, its created_at) inserts
	// only while that reservation is pending and unlinked: held locks it,
	// so that a settle deleting it either went first (held finds nothing:
	// nothing is inserted) or waits for this transaction and then finds
	// it linked. The parameters carry casts: in INSERT … SELECT nothing
	// else gives them their columns' types.
	//
	// holding is the call's transfers that hold it, as of the statement's
	// snapshot: its active one (transfers_active_call), and an ended one
	// that owes it its end state (owingSQL). The create then inserts
	// nothing. The active one is looked for too, though the insert's
	// conflict with it would refuse the create: an active transfer that
	// ends owing the call as the create runs commits before the insert's
	// conflict is decided, which then finds no active transfer and would
	// save a second transfer of a call still owed
	// (TestCreateRefusedAsTheActiveTransferEndsOwingTheCall).
	createSQL = `WITH held AS (SELECT 1 FROM idempotency WHERE scope = $16 AND key = $17 AND created_at = $26
			AND transfer_id IS NULL AND status IS NULL FOR UPDATE),
	holding AS (` + fmt.Sprintf(holdingSQL, "$4::text") + `),
	saved AS (INSERT INTO transfers (id, version, state, provider, call_key, owner, open, updated_at, record, tenant)
		SELECT $1::text, 1, $2::text, $3::text, $4::text, $5::text, $7::boolean, $9::timestamptz, $6::json, $10::text
		WHERE ($26::timestamptz IS NULL OR EXISTS (SELECT 1 FROM held)) AND NOT EXISTS (SELECT 1 FROM holding)
			AND ` + fmt.Sprintf(tokenHeld, "$5::text", "$27::text") + `
		ON CONFLICT DO NOTHING RETURNING id),
	keyed AS (INSERT INTO transfer_keys (id, tenant, provider, external_id, call_domain, call_user, call_id, target, created_at)
		SELECT id, $10, $3, $11, $12, $13, $14, $15, $8 FROM saved),
	linked AS (UPDATE idempotency SET transfer_id = saved.id FROM saved WHERE scope = $16 AND key = $17),
	written AS (` + fmt.Sprintf(eventsFrom, 18, 19, 20, 21, 22, 23, 24, 25) + `)
	SELECT count(*) FROM saved`

	// holdingSQL selects the call's transfers that hold it: its active one
	// and the newest ended one that owes it (owingSQL); %[1]s is the call's
	// key.
	holdingSQL = `SELECT id FROM transfers WHERE call_key = %[1]s AND ` + nonTerminal + `
		UNION ALL (` + owingSQL + `)`
)

// mergedUpdateSQL is updateEventsSQL for several updates at once, their
// columns as arrays ($1-$8 and their tokens $18, one element per save, in
// lock order) and their events as arrays ($9-$16) with the position of
// each event's save among them ($17). It returns the positions of the
// saves that wrote their rows. The events are inserted in the arrays'
// order: the saves' order, then each outbox's.
var mergedUpdateSQL = `WITH saving AS (
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::boolean[], $7::timestamptz[], $8::json[],
				$18::text[])
			WITH ORDINALITY AS s(id, version, next, state, owner, open, updated_at, record, token, n)),
	saved AS (UPDATE transfers t SET version = s.next, state = s.state, owner = s.owner, open = s.open, updated_at = s.updated_at,
			record = s.record
		FROM saving s WHERE t.id = s.id AND t.version = s.version AND ` + fmt.Sprintf(tokenHeld, "s.owner", "s.token") + `
		RETURNING s.n, s.record),
	written AS (INSERT INTO events (id, tenant, transfer_id, seq, type, at, from_state, to_state, snapshot)
		SELECT ev.id, ev.tenant, ev.transfer_id, ev.seq, ev.type, ev.at, ev.from_state, ev.to_state, saved.record
		FROM unnest($9::text[], $10::text[], $11::text[], $12::bigint[], $13::text[], $14::timestamptz[], $15::text[], $16::text[],
				$17::bigint[])
			WITH ORDINALITY AS ev(id, tenant, transfer_id, seq, type, at, from_state, to_state, save, k)
		JOIN saved ON saved.n = ev.save
		ORDER BY ev.k)
	SELECT n FROM saved`

// A batch's statements are planned under settings of their own, for the
// rest of its transaction only (set_config's is_local: the pipeline up to
// its Sync is one transaction, so a connection's settings are back to the
// server's defaults after it, for the reads that share the pool). Every
// statement of a batch finds its rows by primary key or unique key, so
// its plan must not depend on what the planner knows of the tables:
//
//   - No sequential scan, hash join or merge join. In a new database, with
//     a few transfers and no statistics yet, the planner reads the merged
//     updates' join as a hash join over a sequential scan of transfers.
//     A connection caches that plan at its first batch and keeps it until
//     something invalidates it (an autovacuum's analyze, a minute or more
//     later), while the table grows: in a 15 s benchmark run, 2,101 batches
//     read 6.6 million rows so (docs/benchmarks.md, eleventh pass). Such a
//     plan also locked rows in table order, not in the saves' id order.
//     With the three off, the plan is the nested loop from the saves to
//     the primary key, whatever the statistics (TestMergedUpdatePlan).
//
//   - The generic plan, planned once per connection (plan_cache_mode, from
//     PostgreSQL 12: an older server is left to choose, Store.planMode).
//     Left to choose, the server planned the merged updates again at most
//     executions: a custom plan knows the length of the arrays it was
//     sent, so it is estimated cheaper than the generic plan, which
//     assumes ten rows. That planning was 30 % of the statement's time on
//     the server (TestMergedUpdatesPlannedOnce).
//
//   - No parallel workers: a batch's statements read a few rows each,
//     and starting workers costs more than any of them (about 50 ms on a
//     2-core host, seen in a webhook claim's plan).
//
// The same statement bounds each statement of the transaction on the
// server at commitTimeout (statement_timeout), as the client bounds the
// batch: pgx gives up on a statement by closing its connection, which
// the server notices only once the statement ends, and a statement
// waiting for a lock that a stuck session holds would keep, until then,
// the locks the transaction took before (the outbox's, a transfer's rows,
// webhook deliveries' pairs), and every save waiting on them.
var (
	planSettings = `set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true),
		set_config('enable_mergejoin', 'off', true), set_config('max_parallel_workers_per_gather', '0', true),
		set_config('statement_timeout', '` + strconv.FormatInt(commitTimeout.Milliseconds(), 10) + `', true)`
	// deliveriesSettings are webhook delivery's (beginDeliveries): a
	// batch's, and no bitmap scan and no sort where an index can give the
	// rows in order. A claim reads the earliest due deliveries from an
	// index in due order, as many as it takes. Its generic plan, made
	// without the time or the limit, expects a third of the table to be
	// due: with a store's statistics (nearly every delivery delivered,
	// none ready), the planner chose to fetch every due row by bitmap and
	// sort them, in parallel workers: 50 ms for a claim that found
	// nothing, every scan, at 760,000 deliveries.
	deliveriesSettings = planSettings + `, set_config('enable_bitmapscan', 'off', true), set_config('enable_sort', 'off', true)`
)

// planSQL returns the statement that sets a batch's plan settings.
func (s *Store) planSQL() string { return s.settingsSQL(planSettings) }

// deliveriesPlanSQL returns the statement that sets the plan settings of
// webhook delivery's transactions. Every transaction that runs a
// statement of theirs sets them: a connection caches one plan per
// statement text, made under the settings of its first execution.
func (s *Store) deliveriesPlanSQL() string { return s.settingsSQL(deliveriesSettings) }

// settingsSQL sets settings, the generic plan where the server has
// plan_cache_mode (Store.planMode), and no JIT compilation where it has
// JIT (Store.jitMode). A generic plan's cost is estimated without the
// parameters' values: over a store's history, a claim's read of what is
// due was estimated at 300,000, past jit_above_cost, and compiled at
// every execution, 5 ms of a claim that read one index page (18 ms the
// first time).
func (s *Store) settingsSQL(settings string) string {
	q := `SELECT ` + settings
	if s.jitMode {
		q += `, set_config('jit', 'off', true)`
	}
	if s.planMode {
		q += `, set_config('plan_cache_mode', 'force_generic_plan', true)`
	}
	return q
}

// updateColumns are the updates of a batch as mergedUpdateSQL's arrays.
type updateColumns struct {
	ids, states, owners, tokens []string
	versions, nexts             []int64
	opens                       []bool
	updated                     []time.Time
	records                     [][]byte
	events                      eventColumns
	saveOf                      []int64 // of each event, its save's position (from 1)
}

// mergeUpdates returns the columns of saves, updates in lock order, for
// one mergedUpdateSQL.
func mergeUpdates(saves []*saveReq) *updateColumns {
	u := &updateColumns{}
	for i, r := range saves {
		u.ids = append(u.ids, r.id)
		u.versions = append(u.versions, r.version)
		u.nexts = append(u.nexts, r.next)
		u.states = append(u.states, r.col.state)
		u.owners = append(u.owners, r.owner)
		u.tokens = append(u.tokens, r.token)
		u.opens = append(u.opens, r.open)
		u.updated = append(u.updated, r.updated)
		u.records = append(u.records, r.col.record)
		u.events.add(&r.events)
		for range r.events.len() {
			u.saveOf = append(u.saveOf, int64(i+1))
		}
	}
	return u
}

// queue adds the merged updates' statement to b.
func (u *updateColumns) queue(b *pgx.Batch) {
	e := &u.events
	b.Queue(mergedUpdateSQL, u.ids, u.versions, u.nexts, u.states, u.owners, u.opens, u.updated, u.records,
		e.ids, e.tenants, e.transferIDs, e.seqs, e.types, e.ats, e.froms, e.tos, u.saveOf, u.tokens)
}

// mergeable returns how many of saves (in lock order) one mergedUpdateSQL
// writes: their leading updates, if there are at least two and no two of
// one transfer; 0 otherwise.
func mergeable(saves []*saveReq) int {
	n := 0
	for n < len(saves) && !saves[n].create {
		if n > 0 && saves[n].id == saves[n-1].id {
			return 0
		}
		n++
	}
	if n < 2 {
		return 0
	}
	return n
}

// queue adds the save's statement to b.
func (r *saveReq) queue(b *pgx.Batch) {
	c, e := &r.col, &r.events
	switch {
	case r.create:
		b.Queue(createSQL, r.id, c.state, c.provider, c.callKey, r.owner, c.record, r.open, r.created, r.updated,
			c.tenant, c.externalID, c.domain, c.user, c.callID, c.target, r.idemScope, r.idemKey,
			e.ids, e.tenants, e.transferIDs, e.seqs, e.types, e.ats, e.froms, e.tos, r.idemHeld, r.token)
	case e.len() > 0:
		b.Queue(updateEventsSQL, r.next, c.state, r.owner, r.open, r.updated, c.record, r.id, r.version,
			e.ids, e.tenants, e.transferIDs, e.seqs, e.types, e.ats, e.froms, e.tos, r.token)
	default:
		b.Queue(updateSQL, r.next, c.state, r.owner, r.open, r.updated, c.record, r.id, r.version, r.token)
	}
}

// result reads the save's statement's result: whether it wrote its row.
func (r *saveReq) result(br pgx.BatchResults) (bool, error) {
	if !r.create && r.events.len() == 0 {
		tag, err := br.Exec()
		return tag.RowsAffected() == 1, err
	}
	var n int64
	err := br.QueryRow().Scan(&n)
	return n == 1, err
}

// commit queues a save and waits for its verdict (groupcommit.Commit: once
// queued, it is waited for even if ctx ends). A save that was never queued
// (its context ended first, or the store is closed) wrote nothing: a
// create says so (notSaved).
func (s *Store) commit(ctx context.Context, req *saveReq) verdict {
	if err := ctx.Err(); err != nil {
		return verdict{err: req.notSaved(s.fail(req.op(), err))}
	}
	v, ok := groupcommit.Commit(s.commits, req, req.done)
	if !ok {
		return verdict{err: req.notSaved(s.fail(req.op(), errClosed))}
	}
	return v
}

// notSaved is the error of a save that wrote nothing, for certain: a
// create's says so (orchestrator.ErrNotSaved), so that the engine does not
// look for the transfer afterwards as it does for a save whose answer was
// lost; an update's is err.
func (r *saveReq) notSaved(err error) error {
	if !r.create {
		return err
	}
	return kindErr(r.op(), orchestrator.KindUnavailable, fmt.Errorf("%w: %w", orchestrator.ErrNotSaved, err))
}

// commitBatch writes a batch in one transaction and answers every save.
func (s *Store) commitBatch(batch []*saveReq) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	verdicts := make(map[*saveReq]verdict, len(batch))
	pending := lockOrder(batch)
	merge := true
	for rollbacks := 0; len(pending) > 0; {
		saved, refused, err := s.writeBatch(ctx, pending, merge)
		if refused == refusedMerged {
			// Nothing was written, and the server did not say which of
			// the merged updates it refused: one statement each will.
			merge = false
			continue
		}
		if err == nil {
			for i, r := range pending {
				verdicts[r] = verdict{saved: saved[i]}
			}
			break
		}
		if refused < 0 && rolledBack(err) && rollbacks < maxRollbacks && ctx.Err() == nil {
			// The server chose this transaction as a deadlock's victim
			// (with a replica's batch, or an Import) or could not
			// serialize it, and rolled all of it back: nothing is wrong
			// with the saves, and the same batch is likely to go through
			// now that the other transaction has its locks.
			rollbacks++
			continue
		}
		if refused == unsent {
			// No connection to write on, or one that failed before any of
			// the batch reached the server: nothing of this attempt was
			// sent, and every attempt before it was rolled back. Nothing of the
			// batch was saved, for certain, as when SQLite cannot begin a
			// batch's transaction: a create says so (notSaved). As the
			// connection's error, of no kind, it said its save was unknown,
			// and through a restart or a failover of the server every
			// create was looked for in the background for minutes.
			for _, r := range batch {
				verdicts[r] = verdict{err: r.notSaved(s.fail(r.op(), err))}
			}
			break
		}
		if refused < 0 {
			// The batch may have been saved (an answer lost), and a save
			// refused in an earlier attempt may have been refused because
			// of a save of the batch: every save gets the failure.
			for _, r := range batch {
				verdicts[r] = verdict{err: s.fail(r.op(), err)}
			}
			break
		}
		verdicts[pending[refused]] = verdict{err: err, refused: true}
		pending = slices.Delete(slices.Clone(pending), refused, refused+1)
	}
	for _, r := range batch {
		r.done <- verdicts[r]
	}
}

// lockOrder returns the saves in the order their statements run: the
// updates by id, then the creates as they came.
func lockOrder(batch []*saveReq) []*saveReq {
	out := slices.Clone(batch)
	slices.SortStableFunc(out, func(a, b *saveReq) int {
		switch {
		case a.create && b.create:
			return 0
		case a.create:
			return 1
		case b.create:
			return -1
		}
		if a.id < b.id {
			return -1
		}
		if a.id > b.id {
			return 1
		}
		return 0
	})
	return out
}

// refusedMerged is writeBatch's refused when the server refused the
// statement of the merged updates; unsent when it sent nothing, having no
// connection to send on or one that failed before sending (sentNothing).
const (
	refusedMerged = -2
	unsent        = -3
)

// writeBatch writes saves in one transaction, sent as one pipeline; with
// merge, their leading updates as one statement (mergeable). It reports
// which saves wrote their rows, or the failure: refused is the index of
// the save whose statement the server refused (nothing was written),
// refusedMerged when it was the merged updates', unsent when nothing was
// sent, or -1 when the batch failed as a whole.
func (s *Store) writeBatch(ctx context.Context, saves []*saveReq, merge bool) (saved []bool, refused int, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, unsent, err
	}
	// A connection left in a transaction (a failed rollback) is destroyed
	// by the pool rather than reused.
	defer conn.Release()
	// No BEGIN and no COMMIT: the statements of a pipeline up to its Sync
	// (pgx sends one, after the last) are one implicit transaction, which
	// the server commits at the Sync, or rolls back whole at the first
	// statement that fails, as it would an explicit one. A failure to
	// commit (a deferred constraint) is the server's answer to the Sync,
	// which Close returns. The two statements were a fifth of a batch's
	// statements.
	var b pgx.Batch
	// Statements whose results are only checked: the plan settings, and
	// the outbox lock (writeEvents' comment in store.go), the first lock
	// the batch takes, with the notification of the batch's events to
	// every replica's listener, sent if the batch commits (notify.go).
	b.Queue(s.planSQL())
	leading := 1
	if payload := s.notifyPayload(saves); payload != "" && !s.notifyOff {
		b.Queue(`SELECT pg_advisory_xact_lock($1), pg_notify($2, $3)`, eventsLock, s.channel, payload)
		leading++
	} else if payload != "" {
		b.Queue(`SELECT pg_advisory_xact_lock($1)`, eventsLock)
		leading++
	}
	merged := 0
	if merge {
		merged = mergeable(saves)
	}
	if merged > 0 {
		mergeUpdates(saves[:merged]).queue(&b)
	}
	for _, r := range saves[merged:] {
		r.queue(&b)
	}
	// The join's last look for a cancel, after every write: a statement
	// of its own, so that its snapshot is taken after the writes, which
	// waited for any PutSignal holding their rows (FOR SHARE) to commit.
	var looking []string
	for _, r := range saves {
		if r.look {
			looking = append(looking, r.id)
		}
	}
	if len(looking) > 0 {
		b.Queue(`SELECT transfer_id, signal FROM signals WHERE transfer_id = ANY($1)`, looking)
	}
	br := conn.SendBatch(ctx, &b)
	saved, refused, err = readBatch(br, saves, leading, merged)
	if err == nil && len(looking) > 0 {
		err = readLooks(br, saves)
	}
	if cerr := br.Close(); err == nil && cerr != nil {
		refused, err = -1, cerr
	}
	if err == nil {
		// Not committed if the server is still in a transaction (a
		// statement of the batch opened one, which no save does).
		if err = committed(conn); err != nil {
			refused = -1
		}
	}
	if err != nil {
		rollback(ctx, conn)
		if refused == -1 && sentNothing(err) {
			refused = unsent
		}
		return nil, refused, err
	}
	return saved, -1, nil
}

// sentNothing reports whether err, a batch's failure, came before any of
// its statements reached the server, as the driver can prove it: its
// connection failed before writing a byte of them, or was busy or closed,
// or the batch's context had ended (pgconn.SafeToRetry); or the failure was
// pgx's preparing of the statements (ErrPreprocessingBatch: their Parse
// and Describe, on a connection that had not prepared them yet, or the
// encoding of their arguments), which executes nothing and comes before
// they are sent. A connection that fails once anything of the statements
// was written may have had them committed: that stays unknown.
func sentNothing(err error) bool {
	var pre pgx.ErrPreprocessingBatch
	return pgconn.SafeToRetry(err) || errors.As(err, &pre)
}

// readBatch reads the results of writeBatch's pipeline: the leading
// statements', then the merged updates' (the first merged saves), then the
// other saves'.
func readBatch(br pgx.BatchResults, saves []*saveReq, leading, merged int) (saved []bool, refused int, err error) {
	for range leading {
		if _, err := br.Exec(); err != nil {
			return nil, -1, err
		}
	}
	saved = make([]bool, len(saves))
	if merged > 0 {
		if err := readMerged(br, saved[:merged]); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && !rolledBack(err) {
				return nil, refusedMerged, err
			}
			return nil, -1, err
		}
	}
	for i := merged; i < len(saves); i++ {
		if saved[i], err = saves[i].result(br); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && !rolledBack(err) {
				return nil, i, err
			}
			return nil, -1, err
		}
	}
	return saved, -1, nil
}

// readLooks reads the pending signals of the saves that look for theirs
// (saveReq.look) into their found.
func readLooks(br pgx.BatchResults, saves []*saveReq) error {
	for _, r := range saves {
		r.found = orchestrator.SignalNone
	}
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id, sig string
		if err := rows.Scan(&id, &sig); err != nil {
			return err
		}
		for _, r := range saves {
			if r.look && r.id == id {
				r.found = orchestrator.Signal(sig)
			}
		}
	}
	return rows.Err()
}

// readMerged reads mergedUpdateSQL's result into saved: the positions of
// the updates that wrote their rows.
func readMerged(br pgx.BatchResults, saved []bool) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			return err
		}
		if n < 1 || n > int64(len(saved)) {
			return fmt.Errorf("merged updates: the server returned save %d of %d", n, len(saved))
		}
		saved[n-1] = true
	}
	return rows.Err()
}

// maxRollbacks bounds how often one batch is written again after the
// server rolled it back (rolledBack).
const maxRollbacks = 3

// rolledBack reports whether err is the server's refusal of the whole
// transaction, not of one save's statement: SQLSTATE class 40 (a
// deadlock's victim, a serialization failure).
func rolledBack(err error) bool {
	code, _ := pgCode(err)
	return strings.HasPrefix(code, "40")
}

// committed fails unless the server is out of any transaction on conn,
// after what should have been a commit.
func committed(conn *pgxpool.Conn) error {
	if st := conn.Conn().PgConn().TxStatus(); st != 'I' {
		return fmt.Errorf("commit: the server is in transaction status %q", st)
	}
	return nil
}

// rollback ends the failed transaction of a batch on its connection.
func rollback(ctx context.Context, conn *pgxpool.Conn) {
	if conn.Conn().PgConn().TxStatus() == 'I' {
		return
	}
	if _, err := conn.Exec(ctx, `ROLLBACK`); err != nil {
		// Release destroys a connection still in a transaction.
		_ = conn.Conn().Close(ctx)
	}
}
