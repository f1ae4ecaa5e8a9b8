package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/record"
	"github.com/transferd/transferd/internal/webhooks"
)

var _ webhooks.Store = (*Store)(nil)

// DeliveryCursor implements webhooks.Store.
func (s *Store) DeliveryCursor(ctx context.Context, endpoint string) (int64, error) {
	var pos int64
	err := s.pool.QueryRow(ctx, `SELECT pos FROM webhook_cursors WHERE endpoint_key = $1`, endpoint).Scan(&pos)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, s.fail("webhook cursor", err)
	}
	return pos, nil
}

// EnqueueDeliveries implements webhooks.Store. The cursor row is locked
// (created first if missing, so that two replicas' first enqueues also
// take turns) and moved in the transaction that inserts the deliveries.
func (s *Store) EnqueueDeliveries(ctx context.Context, endpoint string, from, to int64, ds []webhooks.Delivery) error {
	const op = "enqueue deliveries"
	var cur int64
	tx, err := s.beginDeliveries(ctx, func(b *pgx.Batch) {
		b.Queue(`INSERT INTO webhook_cursors (endpoint_key, pos) VALUES ($1, 0) ON CONFLICT DO NOTHING`, endpoint)
		b.Queue(`SELECT pos FROM webhook_cursors WHERE endpoint_key = $1 FOR UPDATE`, endpoint).QueryRow(func(row pgx.Row) error {
			return row.Scan(&cur)
		})
	})
	if err != nil {
		return s.fail(op, err)
	}
	defer tx.end(ctx)
	if cur != from {
		return webhooks.ErrCursorMoved
	}
	var b pgx.Batch
	b.Queue(`UPDATE webhook_cursors SET pos = $2 WHERE endpoint_key = $1`, endpoint, to)
	var pairs [][2]string
	for _, d := range ds {
		if p := pairOf(d); !slices.Contains(pairs, p) {
			pairs = append(pairs, p)
		}
	}
	// Each pair's head is decided under its lock (pairLockSQL): by the
	// insert, which makes a pair's first new delivery ready if the pair
	// has no pending one, and then by the promote, which finds that head
	// ready and writes nothing, or makes the first pending delivery ready
	// where the insert could not (its candidate was there already).
	queueLocks(&b, pairs)
	if err := queueInsert(&b, ds); err != nil {
		return s.fail(op, err)
	}
	queuePromote(&b, pairs)
	if err := tx.commit(ctx, &b); err != nil {
		return s.fail(op, err)
	}
	return nil
}

// beginDeliveries begins a transaction of webhook delivery's writes
// (pipeTx), unsynced (unsyncedSQL), its statements planned as a batch of
// saves' are (each finds its rows by key, and the multi-row ones join
// arrays to the table), and its reads of what is due from indexes in due
// order (deliveriesPlanSQL); with the statements more queues, if not
// nil, in the same round trip.
func (s *Store) beginDeliveries(ctx context.Context, more func(*pgx.Batch)) (*pipeTx, error) {
	return s.beginPipe(ctx, func(b *pgx.Batch) {
		b.Queue(unsyncedSQL)
		b.Queue(s.deliveriesPlanSQL())
		if more != nil {
			more(b)
		}
	})
}

// unsyncedSQL makes the transaction's commit return before its WAL is
// flushed, for the writes of webhook delivery, whose loss in a crash of
// the database makes an endpoint get a delivery again, never miss one
// (see the SQLite store's beginUnsynced); redeliveries, which an operator
// is told were made, stay durable. A crash keeps a prefix of the commits.
const unsyncedSQL = `SET LOCAL synchronous_commit TO off`

// pairOf is d's endpoint key and transfer: its deliveries go in Seq
// order, one at a time.
func pairOf(d webhooks.Delivery) [2]string {
	return [2]string{webhooks.EndpointKey(d.Tenant, d.Endpoint), d.TransferID}
}

// pairLockSQL takes the lock of an endpoint and transfer, by its key
// (pairLockKey; the two-key advisory locks are apart from the one-key ones
// of the outbox and the migrations). Every transaction that may change
// which of the pair's
// deliveries is the head takes it before it reads them: an enqueue, a
// finish and a redelivery each decide the head from what they see, and
// under READ COMMITTED two of them at once could each miss the other's
// change (a finish that ends the head while an enqueue adds the next one
// would leave the next one unready for good). A claim does not change
// which delivery is the head, and takes no such lock.
const pairLockSQL = `SELECT pg_advisory_xact_lock(1919247972, $1::int4)`

// pairLockKey is p's lock key: 32 bits of the pair's SHA-256, computed
// here so that an enqueue can take its pairs' locks in key order.
func pairLockKey(p [2]string) int32 {
	sum := sha256.Sum256([]byte(p[0] + "\x00" + p[1]))
	return int32(binary.BigEndian.Uint32(sum[:4]))
}

// reheadSQL sets ready_at (schema 12) on the first pending delivery of an
// endpoint and transfer, and clears it on the others of the pair: after
// an insert, a finish that ended the head, or a redelivery, which may make
// an earlier delivery the head again. It writes only the rows whose
// ready_at changes.
const reheadSQL = `WITH head AS (SELECT id FROM webhook_deliveries
		WHERE status = 'pending' AND endpoint_key = $1 AND transfer_id = $2 ORDER BY seq LIMIT 1)
	UPDATE webhook_deliveries d SET ready_at = CASE WHEN d.id = (SELECT id FROM head) THEN greatest(d.next_attempt, d.lease_until) END
	WHERE d.status = 'pending' AND d.endpoint_key = $1 AND d.transfer_id = $2
		AND d.ready_at IS DISTINCT FROM CASE WHEN d.id = (SELECT id FROM head) THEN greatest(d.next_attempt, d.lease_until) END`

// lockPair takes p's lock (pairLockSQL).
func lockPair(ctx context.Context, tx querier, p [2]string) error {
	_, err := tx.Exec(ctx, pairLockSQL, pairLockKey(p))
	return err
}

// queueLocks queues the statements that take the locks of pairs, in the
// order of their keys, as every transaction that takes more than one
// does, so that none waits for another in a cycle: pairs share a key when
// their hashes collide, and an order of the pairs themselves would not be
// one of the keys.
func queueLocks(b *pgx.Batch, pairs [][2]string) {
	var keys []int32
	for _, p := range pairs {
		if k := pairLockKey(p); !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		b.Queue(pairLockSQL, k)
	}
}

// promoteSQL makes the first pending delivery of each endpoint and
// transfer of the arrays ready if it is not (the pairs are distinct): all
// an enqueue or a finish has to do, as in the SQLite store. An enqueue
// adds deliveries after every pending one of their transfer (its events
// come in order), so the head, if any, stays, and the insert made a new
// pair's head ready (insertDeliveriesSQL); a finish that ended the head
// leaves none ready, and the next becomes the head. (A redelivery may
// put an earlier delivery first, and reheads.) Each pair costs one
// look in webhook_deliveries_head and at most one row written, where
// reheadSQL reads the pair's every pending delivery; the pairs are one
// statement. Under delivery's plan settings (deliveriesPlanSQL) the plan
// is a nested loop from the arrays (TestDeliveryWritePlans).
const promoteSQL = `UPDATE webhook_deliveries d SET ready_at = greatest(d.next_attempt, d.lease_until)
	FROM unnest($1::text[], $2::text[]) AS p(endpoint_key, transfer_id),
		LATERAL (SELECT h.id FROM webhook_deliveries h
			WHERE h.status = 'pending' AND h.endpoint_key = p.endpoint_key AND h.transfer_id = p.transfer_id
			ORDER BY h.seq LIMIT 1) AS head
	WHERE d.id = head.id AND d.ready_at IS NULL`

// queuePromote queues promoteSQL for pairs, if any.
func queuePromote(b *pgx.Batch, pairs [][2]string) {
	if len(pairs) == 0 {
		return
	}
	keys, transfers := pairColumns(pairs)
	b.Queue(promoteSQL, keys, transfers)
}

// pairColumns are pairs as the arrays of promoteSQL and headsSQL: the
// endpoint keys and the transfers.
func pairColumns(pairs [][2]string) (keys, transfers []string) {
	keys, transfers = make([]string, len(pairs)), make([]string, len(pairs))
	for i, p := range pairs {
		keys[i], transfers[i] = p[0], p[1]
	}
	return keys, transfers
}

// insertDeliveriesSQL inserts the deliveries of an enqueue, one statement
// for all: a statement each was, with every event delivered, the largest
// share of the database's CPU after the updates (docs/benchmarks.md,
// twenty-sixth pass). A delivery already there (the same event enqueued
// again) is left as it is. A pair's candidate head ($14,
// webhooks.HeadCandidates) is inserted ready if the pair has no pending
// delivery: the statement runs under the pairs' locks, and its snapshot,
// taken after them, sees every change to the pairs but its own inserts.
// Before, promoteSQL wrote that row again (a new version and its index
// entries) in the same transaction.
const insertDeliveriesSQL = `INSERT INTO webhook_deliveries (id, tenant, endpoint_key, transfer_id, seq, pos, status,
		next_attempt, lease_until, created_at, failing, finished_at, rec, ready_at)
	SELECT u.id, u.tenant, u.endpoint_key, u.transfer_id, u.seq, u.pos, u.status,
		u.next_attempt, u.lease_until, u.created_at, u.failing, u.finished_at, u.rec,
		CASE WHEN u.head AND NOT EXISTS (SELECT FROM webhook_deliveries h
			WHERE h.status = 'pending' AND h.endpoint_key = u.endpoint_key AND h.transfer_id = u.transfer_id)
		THEN greatest(u.next_attempt, u.lease_until) END
	FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[],
		$8::timestamptz[], $9::timestamptz[], $10::timestamptz[], $11::boolean[], $12::timestamptz[], $13::json[],
		$14::boolean[]) AS u(id, tenant, endpoint_key, transfer_id, seq, pos, status,
		next_attempt, lease_until, created_at, failing, finished_at, rec, head)
	ON CONFLICT (id) DO NOTHING`

// insertPayloadsSQL writes the deliveries' payloads, once, with their
// insert (schema 15): if a delivery was there, so is its payload.
const insertPayloadsSQL = `INSERT INTO webhook_payloads (id, payload) SELECT * FROM unnest($1::text[], $2::bytea[])
	ON CONFLICT (id) DO NOTHING`

// queueInsert queues the inserts of ds and of their payloads.
func queueInsert(b *pgx.Batch, ds []webhooks.Delivery) error {
	cols, err := insertColumns(ds)
	if err != nil {
		return err
	}
	b.Queue(insertDeliveriesSQL, cols...)
	var ids []string
	var payloads [][]byte
	for _, d := range ds {
		if len(d.Payload) > 0 {
			ids, payloads = append(ids, d.ID), append(payloads, d.Payload)
		}
	}
	if len(ids) > 0 {
		b.Queue(insertPayloadsSQL, ids, payloads)
	}
	return nil
}

// insertColumns are ds as insertDeliveriesSQL's arguments.
func insertColumns(ds []webhooks.Delivery) ([]any, error) {
	n := len(ds)
	var (
		ids, tenants, keys, transfers, statuses = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		seqs, poss                              = make([]int64, n), make([]int64, n)
		nexts, leases, created                  = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
		failings                                = make([]bool, n)
		finished                                = make([]*time.Time, n)
		records                                 = make([][]byte, n)
	)
	for i, d := range ds {
		rec, err := deliveryRecord(d)
		if err != nil {
			return nil, err
		}
		ids[i], tenants[i], keys[i], transfers[i], statuses[i] = d.ID, d.Tenant, webhooks.EndpointKey(d.Tenant, d.Endpoint), d.TransferID, string(d.Status)
		seqs[i], poss[i] = d.Seq, d.Pos
		nexts[i], leases[i], created[i] = d.NextAttempt, d.LeaseUntil, d.CreatedAt
		failings[i], finished[i], records[i] = failing(d), finishedAt(d), rec
	}
	return []any{ids, tenants, keys, transfers, seqs, poss, statuses, nexts, leases, created, failings, finished, records,
		webhooks.HeadCandidates(ds)}, nil
}

// putDeliveriesSQL rewrites stored deliveries, one statement for all. A
// head stays the head while it is pending, claimable from its new
// ReadyAt; a delivery that is not stays unready (promote or rehead
// decides), but for one its transaction made the head ($9, headsSQL),
// which the claim that takes it makes ready with its own write. The ids
// are distinct. Under delivery's plan settings (deliveriesPlanSQL) the
// plan is a nested loop from the arrays to the primary key
// (TestDeliveryWritePlans).
const putDeliveriesSQL = `UPDATE webhook_deliveries d SET status = u.status, next_attempt = u.next_attempt,
		lease_until = u.lease_until, failing = u.failing, finished_at = u.finished_at, rec = u.rec,
		ready_at = CASE WHEN u.status = 'pending' AND (d.ready_at IS NOT NULL OR u.head) THEN u.ready_at END
	FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::boolean[], $6::timestamptz[], $7::json[],
		$8::timestamptz[], $9::boolean[]) AS u(id, status, next_attempt, lease_until, failing, finished_at, rec, ready_at, head)
	WHERE d.id = u.id`

// queuePut queues putDeliveriesSQL for ds, if any; heads are the ids of
// those its transaction made heads (headsSQL).
func queuePut(b *pgx.Batch, ds []webhooks.Delivery, heads map[string]bool) error {
	if len(ds) == 0 {
		return nil
	}
	n := len(ds)
	var (
		ids, statuses           = make([]string, n), make([]string, n)
		nexts, leases, readyAts = make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
		failings, isHead        = make([]bool, n), make([]bool, n)
		finished                = make([]*time.Time, n)
		records                 = make([][]byte, n)
	)
	for i, d := range ds {
		rec, err := deliveryRecord(d)
		if err != nil {
			return err
		}
		ids[i], statuses[i] = d.ID, string(d.Status)
		nexts[i], leases[i], readyAts[i] = d.NextAttempt, d.LeaseUntil, webhooks.ReadyAt(d)
		failings[i], finished[i], records[i], isHead[i] = failing(d), finishedAt(d), rec, heads[d.ID]
	}
	b.Queue(putDeliveriesSQL, ids, statuses, nexts, leases, failings, finished, records, readyAts, isHead)
	return nil
}

// headsSQL reads the first pending delivery of each endpoint and
// transfer of the arrays that is not ready: the rows promoteSQL would
// write, read instead, so that a claim in the same transaction may take
// them (webhooks.WithHeads) and write each it takes once; markReadySQL
// then writes the others. A result that ends a transfer's delivery makes
// its next the head, and the claim that follows in the settle's
// transaction took about two in five of those heads under load
// (docs/benchmarks.md, thirty-second pass): each was written twice. The
// pairs' locks, which the settle holds, keep every other transaction
// from changing which delivery is their head, and no other claim can see
// these rows until they are marked ready.
const headsSQL = `SELECT h.id, h.endpoint_key, greatest(h.next_attempt, h.lease_until), h.pos
	FROM unnest($1::text[], $2::text[]) AS p(endpoint_key, transfer_id),
		LATERAL (SELECT d.id, d.endpoint_key, d.next_attempt, d.lease_until, d.pos, d.ready_at FROM webhook_deliveries d
			WHERE d.status = 'pending' AND d.endpoint_key = p.endpoint_key AND d.transfer_id = p.transfer_id
			ORDER BY d.seq LIMIT 1) AS h
	WHERE h.ready_at IS NULL`

// markReadySQL makes the heads headsSQL read and no claim took ready.
const markReadySQL = `UPDATE webhook_deliveries SET ready_at = greatest(next_attempt, lease_until)
	WHERE id = ANY($1) AND ready_at IS NULL`

// queueHeads queues headsSQL for pairs, if any, its rows read into
// heads.
func queueHeads(b *pgx.Batch, pairs [][2]string, heads *[]webhooks.Ready) {
	if len(pairs) == 0 {
		return
	}
	keys, transfers := pairColumns(pairs)
	b.Queue(headsSQL, keys, transfers).Query(func(rows pgx.Rows) error {
		rs, err := readies(rows, nil)
		*heads = rs
		return err
	})
}

// deliveryRecord is d as stored in rec: whole but for its payload, which
// is stored apart (schema 15).
func deliveryRecord(d webhooks.Delivery) ([]byte, error) {
	d.Payload = nil
	rec, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	return jsonbSafe(rec), nil
}

// failing is the column the operators' "failing" filter reads.
func failing(d webhooks.Delivery) bool {
	return d.Status == webhooks.StatusPending && d.LastError != ""
}

// finishedAt is the finished_at column of d (schema 9): when it stopped
// being pending, the UpdatedAt of the attempt that delivered it or gave it
// up; NULL while it is pending (a redelivery clears it).
func finishedAt(d webhooks.Delivery) *time.Time {
	if d.Status == webhooks.StatusPending {
		return nil
	}
	return &d.UpdatedAt
}

func collectDeliveries(rows pgx.Rows) ([]webhooks.Delivery, error) {
	defer rows.Close()
	var out []webhooks.Delivery
	for rows.Next() {
		var rec []byte
		if err := rows.Scan(&rec); err != nil {
			return nil, err
		}
		d, err := record.DecodeDelivery(rec)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// ClaimDeliveries implements webhooks.Store. It reads the ready
// deliveries (schema 12), never the pending ones waiting behind another of
// their transfer, nor those in back-off; then locks those it picked, SKIP
// LOCKED so that replicas claim at once: a delivery another transaction
// holds is passed over, and one another replica claimed since is no
// longer due when its lock is taken, and is left. It then picks again
// without them, so that a claim comes back short only when nothing more
// is due (the dispatcher stops claiming until its next scan on a short
// claim): two replicas claiming at once read the same earliest deliveries.
func (s *Store) ClaimDeliveries(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Delivery, error) {
	_, claimed, err := s.settle(ctx, nil, owner, now, lease, limit, skip)
	if err != nil {
		return nil, s.fail("claim deliveries", err)
	}
	return claimed, nil
}

// claimIn makes ClaimDeliveries' claim within tx: it picks the due
// deliveries and locks them, and returns them claimed (their Attempts,
// Owner and LeaseUntil set), for the caller to write with its COMMIT
// (queuePut): until then their row locks keep every other claim off
// them, and a later pick passes over them (PickDue's except). ahead, if
// not nil, answers the first pick's read of the earliest (readAhead).
// heads are deliveries the transaction made heads without marking them
// ready (headsSQL), which the claim may take as if they were.
func claimIn(ctx context.Context, tx querier, owner string, now time.Time, lease time.Duration, limit int, skip []string, ahead *readAhead, heads []webhooks.Ready) ([]webhooks.Delivery, error) {
	var claimed []webhooks.Delivery
	tried := map[string]bool{}
	// A round that set right deliveries an older replica left ready
	// (collectDue's stale) does not count: those are not picked again,
	// and a claim that came back short for them would make the
	// dispatcher wait for its next scan, where the next ones would do the
	// same. maxClaimPicks bounds the transaction.
	lost := 0
	for pick := 0; pick < maxClaimPicks && lost < claimRounds && len(claimed) < limit; pick++ {
		want := limit - len(claimed)
		picked, err := webhooks.PickDue(now, want, skip, tried, webhooks.WithHeads(dueLookup(ctx, tx, now, ahead), now, heads))
		if err != nil {
			return nil, err
		}
		if len(picked) == 0 {
			break
		}
		ids := make([]string, len(picked))
		for i, r := range picked {
			ids[i] = r.ID
			tried[r.ID] = true
		}
		rows, err := tx.Query(ctx, claimLockSQL, ids)
		if err != nil {
			return nil, err
		}
		locked, stale, err := collectDue(rows, now, heads)
		if err != nil {
			return nil, err
		}
		if len(stale) > 0 {
			if _, err := tx.Exec(ctx, fixReadyOfSQL, stale); err != nil {
				return nil, err
			}
		} else {
			lost++
		}
		// In the order picked.
		slices.SortFunc(locked, func(a, b webhooks.Delivery) int { return slices.Index(ids, a.ID) - slices.Index(ids, b.ID) })
		for i := range locked {
			locked[i].Attempts++
			locked[i].Owner, locked[i].LeaseUntil = owner, now.Add(lease)
		}
		claimed = append(claimed, locked...)
		if len(picked) < want {
			break // nothing more is due
		}
	}
	return claimed, nil
}

// claimLockSQL locks the deliveries a claim picked, by their ids alone,
// so that the plan reads the primary key (TestDeliveryClaimPlansUseIndexes):
// with the test of ready_at here, the planner could read the ready
// deliveries' index for every due one, and with a test of the status, a
// partial index whole (32 ms a claim, measured). collectDue keeps those
// still due.
const claimLockSQL = `SELECT d.rec, d.ready_at, p.payload FROM webhook_deliveries d LEFT JOIN webhook_payloads p ON p.id = d.id
	WHERE d.id = ANY($1) FOR UPDATE OF d SKIP LOCKED`

// collectDue reads claimLockSQL's rows and keeps the deliveries still due
// at now once locked: ready (the head of their pair, ready_at) by now,
// and due by what makes a delivery due. A delivery another claim or a
// result changed since it was picked is left. One whose ready_at says due
// while the delivery is not is stale: a replica of a version before
// schema 12, during a rolling upgrade, claims a head without moving its
// ready_at, and finishes one without clearing it. Its id is returned, to
// be set right (fixReadyOfSQL) under the row lock the claim holds. A
// delivery not kept stays locked until the commit. One of heads, which
// its transaction made the head of its pair without marking it ready,
// is due by what makes a delivery due.
func collectDue(rows pgx.Rows, now time.Time, heads []webhooks.Ready) (due []webhooks.Delivery, stale []string, err error) {
	defer rows.Close()
	for rows.Next() {
		var rec, payload []byte
		var readyAt *time.Time
		if err := rows.Scan(&rec, &readyAt, &payload); err != nil {
			return nil, nil, err
		}
		if readyAt != nil && readyAt.After(now) {
			continue
		}
		d, err := record.DecodeDelivery(rec)
		if err != nil {
			return nil, nil, err
		}
		// A delivery stored before schema 15 may have its payload in
		// its record as well, the same.
		if payload != nil {
			d.Payload = payload
		}
		isDue := d.Status == webhooks.StatusPending && !webhooks.ReadyAt(d).After(now)
		switch {
		case readyAt == nil:
			// Not ready: kept only if the transaction made it a head.
			if isDue && slices.ContainsFunc(heads, func(h webhooks.Ready) bool { return h.ID == d.ID }) {
				due = append(due, d)
			}
		case isDue:
			due = append(due, d)
		default:
			stale = append(stale, d.ID)
		}
	}
	return due, stale, rows.Err()
}

// claimRounds bounds how often a claim picks again for the deliveries
// other transactions held: replicas that keep taking the same ones from
// under it leave it short, for its next claim.
const claimRounds = 4

// maxClaimPicks bounds the rounds of a claim, those that set right what
// an older replica left included.
const maxClaimPicks = 16

// readAhead is earliestDueSQL's answer to a claim's first read of the
// earliest (webhooks.FirstWalk), queued after the statements that come
// before the claim (BEGIN's settings, or the results' writes), in their
// round trip: it runs after them, in the same transaction, and sees what
// they wrote.
type readAhead struct {
	n    int
	rs   []webhooks.Ready
	used bool
}

// queueAhead queues the read of a claim of up to limit at now, which
// skips the endpoints of skip.
func queueAhead(b *pgx.Batch, now time.Time, limit int, skip []string) *readAhead {
	a := &readAhead{n: webhooks.FirstWalk(limit, skip)}
	b.Queue(earliestDueSQL, now, a.n).Query(func(rows pgx.Rows) error {
		var err error
		a.rs, err = readies(rows, nil)
		return err
	})
	return a
}

// dueLookup answers webhooks.PickDue from webhook_deliveries_ready (the
// earliest due, any endpoint) and webhook_deliveries_ready_endpoint (each
// endpoint's), inside tx; the first read of the earliest from ahead, if
// it was read.
func dueLookup(ctx context.Context, tx querier, now time.Time, ahead *readAhead) webhooks.DueLookup {
	return webhooks.DueLookup{
		Earliest: func(n int, each func(webhooks.Ready) bool) error {
			var rs []webhooks.Ready
			var err error
			if ahead != nil && !ahead.used && n == ahead.n {
				ahead.used = true
				rs = ahead.rs
			} else {
				rs, err = readies(tx.Query(ctx, earliestDueSQL, now, n))
			}
			for _, r := range rs {
				if !each(r) {
					break
				}
			}
			return err
		},
		Endpoints: func() ([]webhooks.Ready, error) {
			return readies(tx.Query(ctx, readyEndpointsSQL))
		},
		OfEndpoint: func(key string, n int) ([]webhooks.Ready, error) {
			return readies(tx.Query(ctx, endpointDueSQL, key, now, n))
		},
	}
}

const (
	earliestDueSQL = `SELECT id, endpoint_key, ready_at, pos FROM webhook_deliveries
		WHERE ready_at IS NOT NULL AND ready_at <= $1 ORDER BY ready_at, pos, id LIMIT $2`
	endpointDueSQL = `SELECT id, endpoint_key, ready_at, pos FROM webhook_deliveries
		WHERE endpoint_key = $1 AND ready_at IS NOT NULL AND ready_at <= $2 ORDER BY ready_at, pos, id LIMIT $3`
	// readyEndpointsSQL hops from one endpoint key to the next in
	// webhook_deliveries_ready_endpoint, a seek each, rather than reading
	// every ready delivery, and takes each one's earliest ready_at.
	readyEndpointsSQL = `WITH RECURSIVE e(k) AS (
			(SELECT endpoint_key FROM webhook_deliveries WHERE ready_at IS NOT NULL ORDER BY endpoint_key LIMIT 1)
			UNION ALL
			SELECT (SELECT endpoint_key FROM webhook_deliveries WHERE ready_at IS NOT NULL AND endpoint_key > e.k
				ORDER BY endpoint_key LIMIT 1)
			FROM e WHERE e.k IS NOT NULL)
		SELECT '', k, (SELECT min(ready_at) FROM webhook_deliveries WHERE ready_at IS NOT NULL AND endpoint_key = e.k), 0::bigint
		FROM e WHERE k IS NOT NULL`
)

func readies(rows pgx.Rows, err error) ([]webhooks.Ready, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []webhooks.Ready
	for rows.Next() {
		var r webhooks.Ready
		if err := rows.Scan(&r.ID, &r.Endpoint, &r.At, &r.Pos); err != nil {
			return nil, err
		}
		r.At = r.At.UTC()
		out = append(out, r)
	}
	return out, rows.Err()
}

// getDelivery reads a delivery for update.
func getDelivery(ctx context.Context, tx querier, id string) (webhooks.Delivery, error) {
	var rec []byte
	if err := tx.QueryRow(ctx, `SELECT rec FROM webhook_deliveries WHERE id = $1 FOR UPDATE`, id).Scan(&rec); err != nil {
		return webhooks.Delivery{}, err
	}
	return record.DecodeDelivery(rec)
}

// FinishDelivery implements webhooks.Store: in a group commit of results
// (webhooks.Finishes), as the SQLite store writes them: with every event
// delivered, a transaction of four statements for each result was the
// largest share of the database's CPU (docs/benchmarks.md, twenty-sixth
// pass).
func (s *Store) FinishDelivery(ctx context.Context, d webhooks.Delivery) (webhooks.Delivery, bool, error) {
	const op = "finish delivery"
	if err := ctx.Err(); err != nil {
		return webhooks.Delivery{}, false, s.fail(op, err)
	}
	cur, ok, err := s.finishes.Finish(d)
	if err != nil {
		return webhooks.Delivery{}, false, s.fail(op, err)
	}
	return cur, ok, nil
}

// maxFinishes bounds a batch of results.
const maxFinishes = 16

// finishGrace is how much longer than the server transferd waits for a
// batch of results (finishBatch).
const finishGrace = 5 * time.Second

// finishBatch writes a batch of results in one transaction (settle).
func (s *Store) finishBatch(batch []webhooks.Delivery) ([]webhooks.Finished, error) {
	vs, _, err := s.settle(context.Background(), batch, "", time.Time{}, 0, 0, nil)
	if err != nil {
		return nil, err
	}
	s.finishBatches.Add(1)
	return vs, nil
}

// SettleDeliveries implements webhooks.Store (settle).
func (s *Store) SettleDeliveries(ctx context.Context, results []webhooks.Delivery, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Finished, []webhooks.Delivery, error) {
	vs, claimed, err := s.settle(ctx, results, owner, now, lease, limit, skip)
	if err != nil {
		return nil, nil, s.fail("settle deliveries", err)
	}
	return vs, claimed, nil
}

// settle writes results and makes a claim (claimIn) in one transaction,
// unsynced: the pairs' locks of the results (in key order), then their
// deliveries read and locked in one statement, the results applied in
// their order (webhooks.ApplyResult), the changed deliveries written in
// one statement and the heads that replace those that ended read in
// another (headsSQL); then the claim, which may take those heads
// (webhooks.WithHeads), and whose locks (SKIP LOCKED) never wait; with
// its writes, the heads it left are marked ready (markReadySQL). It is four round trips (pipeTx): BEGIN with the results' reads,
// their writes with the claim's first read (readAhead), the claim's
// locks, and its writes with COMMIT; a claim alone is three.
func (s *Store) settle(ctx context.Context, results []webhooks.Delivery, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Finished, []webhooks.Delivery, error) {
	if len(results) == 0 && limit <= 0 {
		return nil, nil, nil
	}
	// Bounded as a batch of saves is (commitTimeout): a transaction that
	// cannot go on (a lock a stuck replica holds, a server that stopped
	// answering) must not hold its results, Close, or the dispatcher's
	// scan, for ever. The server gives up first (statement_timeout,
	// below), so that the transaction is rolled back, and its locks let
	// go, before the results fail; transferd gives up a little later,
	// for a server that stopped answering.
	ctx, cancel := context.WithTimeout(ctx, s.finishTimeout+finishGrace)
	defer cancel()
	var pairs [][2]string
	var ids []string
	for _, d := range results {
		if p := pairOf(d); !slices.Contains(pairs, p) {
			pairs = append(pairs, p)
		}
		if !slices.Contains(ids, d.ID) {
			ids = append(ids, d.ID)
		}
	}
	stored := map[string]webhooks.Delivery{}
	var ahead *readAhead
	tx, err := s.beginDeliveries(ctx, func(b *pgx.Batch) {
		// The server gives up before the client (deliveriesPlanSQL).
		b.Queue(`SELECT set_config('statement_timeout', $1, true)`, strconv.FormatInt(s.finishTimeout.Milliseconds(), 10))
		if len(results) == 0 {
			ahead = queueAhead(b, now, limit, skip)
			return
		}
		// The pairs' locks first, as every transaction that decides a
		// pair's head takes them before any of its rows.
		queueLocks(b, pairs)
		b.Queue(`SELECT rec FROM webhook_deliveries WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids).Query(func(rows pgx.Rows) error {
			ds, err := collectDeliveries(rows)
			for _, d := range ds {
				stored[d.ID] = d
			}
			return err
		})
	})
	if err != nil {
		return nil, nil, err
	}
	defer tx.end(ctx)
	vs := make([]webhooks.Finished, len(results))
	var changed []string
	var ended [][2]string
	for i, d := range results {
		cur, ok := stored[d.ID]
		if !ok {
			continue // gone: purged, the claim lost
		}
		if vs[i].Delivery, vs[i].OK = webhooks.ApplyResult(cur, d); !vs[i].OK {
			continue
		}
		stored[d.ID] = vs[i].Delivery
		if !slices.Contains(changed, d.ID) {
			changed = append(changed, d.ID)
		}
		if p := pairOf(cur); vs[i].Delivery.Status != webhooks.StatusPending && !slices.Contains(ended, p) {
			ended = append(ended, p)
		}
	}
	puts := make([]webhooks.Delivery, len(changed))
	for i, id := range changed {
		puts[i] = stored[id]
	}
	var b pgx.Batch
	if err := queuePut(&b, puts, nil); err != nil {
		return nil, nil, err
	}
	var claimed []webhooks.Delivery
	if limit > 0 {
		// The heads the results made are read, for the claim to take
		// (headsSQL), and those it leaves marked ready with its writes.
		var heads []webhooks.Ready
		queueHeads(&b, ended, &heads)
		if ahead == nil {
			ahead = queueAhead(&b, now, limit, skip)
		}
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return nil, nil, err
		}
		if claimed, err = claimIn(ctx, tx, owner, now, lease, limit, skip, ahead, heads); err != nil {
			return nil, nil, err
		}
		isHead := make(map[string]bool, len(heads))
		for _, h := range heads {
			isHead[h.ID] = true
		}
		b = pgx.Batch{}
		if err := queuePut(&b, claimed, isHead); err != nil {
			return nil, nil, err
		}
		var left []string
		for _, h := range heads {
			if !slices.ContainsFunc(claimed, func(d webhooks.Delivery) bool { return d.ID == h.ID }) {
				left = append(left, h.ID)
			}
		}
		if len(left) > 0 {
			b.Queue(markReadySQL, left)
		}
	} else {
		queuePromote(&b, ended)
	}
	if err := tx.commit(ctx, &b); err != nil {
		return nil, nil, err
	}
	return vs, claimed, nil
}

// Deliveries implements webhooks.Store. A cursor that names no delivery
// of the tenant lists nothing (deliveriesQuery), so only an empty page
// after a cursor looks it up, to tell the client so.
func (s *Store) Deliveries(ctx context.Context, f webhooks.DeliveryFilter) ([]webhooks.Delivery, bool, error) {
	const op = "list deliveries"
	q, args := deliveriesQuery(f)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, false, s.fail(op, err)
	}
	ds, err := collectDeliveries(rows)
	if err != nil {
		return nil, false, s.fail(op, err)
	}
	if len(ds) == 0 && f.After != "" && f.AfterPos == 0 {
		var one int
		switch err := s.pool.QueryRow(ctx, `SELECT 1 FROM webhook_deliveries WHERE id = $1 AND tenant = $2`, f.After, f.Tenant).Scan(&one); {
		case errors.Is(err, pgx.ErrNoRows):
			return nil, false, kindErr(op, orchestrator.KindInvalid, webhooks.ErrUnknownCursor)
		case err != nil:
			return nil, false, s.fail(op, err)
		}
	}
	if f.Limit > 0 && len(ds) > f.Limit {
		return ds[:f.Limit], true, nil
	}
	return ds, false, nil
}

// kindConds are the conditions of the kinds of deliveries a list reads
// apart (webhooks.ListKinds). Each implies its index's predicate with
// literals: a generic plan, made without the parameters' values, could
// not use a partial index for a status given as one (schema 16).
var kindConds = map[webhooks.ListKind]string{
	webhooks.ListPending: `status = 'pending' AND status <> 'delivered'`,
	webhooks.ListDead:    `status = 'dead' AND status <> 'delivered'`,
	webhooks.ListFailing: `failing`,
}

// deliveriesQuery is the statement of Deliveries: a tenant's deliveries
// in (pos, id) order, descending. The cursor compares the whole key (a
// row comparison, which the indexes serve): every endpoint's delivery of
// an event has the event's pos, and comparing pos alone skipped the
// cursor's siblings. Where it reads them from (schema 16):
//   - one transfer's: webhook_deliveries_transfer, every other filter a
//     condition on its few rows;
//   - a list of kinds that exclude delivered ones (webhooks.ListKinds:
//     the default failing and dead ones, the pending ones): each kind's
//     own index, a branch per kind bounded by the page, the branches
//     merged;
//   - the others (every delivery, or delivered ones, which are most of
//     them): webhook_deliveries_tenant, whose columns are that order.
func deliveriesQuery(f webhooks.DeliveryFilter) (string, []any) {
	const order = ` ORDER BY pos DESC, id DESC`
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	// The cursor is the tenant's own: another tenant's delivery (or none)
	// bounds nothing, and the list is empty. Looked up across tenants, it
	// listed the tenant's deliveries older than another tenant's, and
	// told by that whether the other's delivery existed.
	cursor := func() string {
		if f.AfterPos != 0 {
			// The key itself: nothing of another tenant is read.
			return ` AND (pos, id) < (` + arg(f.AfterPos) + `, ` + arg(f.After) + `)`
		}
		return ` AND (pos, id) < (SELECT pos, id FROM webhook_deliveries WHERE id = ` + arg(f.After) + ` AND tenant = ` + arg(f.Tenant) + `)`
	}
	// One more than asked tells whether more follow.
	limit := func() string {
		if f.Limit > 0 {
			return ` LIMIT ` + arg(f.Limit+1)
		}
		return ""
	}
	if kinds := webhooks.ListKinds(f); kinds != nil {
		branch := func(col string, k webhooks.ListKind) string {
			q := `SELECT ` + col + ` FROM webhook_deliveries WHERE tenant = ` + arg(f.Tenant) + ` AND ` + kindConds[k]
			if f.After != "" {
				q += cursor()
			}
			return q + order + limit()
		}
		if len(kinds) == 1 {
			return branch("rec", kinds[0]), args
		}
		var branches []string
		for _, k := range kinds {
			branches = append(branches, `(`+branch("id", k)+`)`)
		}
		q := `SELECT rec FROM webhook_deliveries WHERE id IN (` + strings.Join(branches, " UNION ALL ") + `)` + order
		return q + limit(), args
	}
	q := `SELECT rec FROM webhook_deliveries WHERE tenant = ` + arg(f.Tenant)
	if f.TransferID != "" {
		q += ` AND transfer_id = ` + arg(f.TransferID)
	}
	if len(f.Statuses) > 0 || f.Failing {
		sts := make([]string, 0, len(f.Statuses))
		for _, st := range f.Statuses {
			sts = append(sts, string(st))
		}
		// Statuses and Failing widen each other, as in the other stores.
		q += ` AND (status = ANY(` + arg(sts) + `::text[]) OR (` + arg(f.Failing) + `::boolean AND failing))`
	}
	if f.After != "" {
		q += cursor()
	}
	return q + order + limit(), args
}

// Redeliver implements webhooks.Store. A delivery in flight keeps its
// claim; its FinishDelivery sees Redelivered moved and keeps it pending.
func (s *Store) Redeliver(ctx context.Context, tenant, id string, now, deadline time.Time, allow func(webhooks.Delivery) error) (webhooks.Delivery, error) {
	const op = "redeliver"
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return webhooks.Delivery{}, s.fail(op, err)
	}
	defer tx.Rollback(ctx)
	// Planned as the other writes of deliveries are (deliveriesPlanSQL):
	// a connection caches one plan for a statement text, which claims and
	// results share with this one. It stays durable: an operator is told
	// the redelivery was made.
	if _, err := tx.Exec(ctx, s.deliveriesPlanSQL()); err != nil {
		return webhooks.Delivery{}, s.fail(op, err)
	}
	// The pair's lock before the row's (see pairLockSQL): its columns
	// never change, so they can be read before. Only the tenant's own:
	// another tenant's delivery is not found at once, as a missing one
	// is, not after a wait for its pair's lock.
	var p [2]string
	err = tx.QueryRow(ctx, `SELECT endpoint_key, transfer_id FROM webhook_deliveries WHERE id = $1 AND tenant = $2`, id, tenant).Scan(&p[0], &p[1])
	if err == nil {
		err = lockPair(ctx, tx, p)
	}
	var d webhooks.Delivery
	if err == nil {
		d, err = getDelivery(ctx, tx, id)
	}
	if errors.Is(err, pgx.ErrNoRows) || err == nil && d.Tenant != tenant {
		return webhooks.Delivery{}, kindErr(op, orchestrator.KindNotFound, errors.New("no such delivery"))
	}
	if err != nil {
		return webhooks.Delivery{}, s.fail(op, err)
	}
	if allow != nil {
		if err := allow(d); err != nil {
			return webhooks.Delivery{}, err
		}
	}
	if d.Status != webhooks.StatusPending || !d.LeaseUntil.After(now) {
		d.Owner, d.LeaseUntil = "", time.Time{}
	}
	d.Status, d.NextAttempt, d.Deadline, d.Redelivered, d.UpdatedAt = webhooks.StatusPending, now, deadline, d.Attempts, now
	d.Unconfigured = time.Time{}
	// Resend, as Redelivered cannot tell a delivery never attempted yet
	// (Attempts 0) redelivered from one never redelivered.
	d.Resend = true
	var b pgx.Batch
	if err := queuePut(&b, []webhooks.Delivery{d}, nil); err != nil {
		return webhooks.Delivery{}, s.fail(op, err)
	}
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return webhooks.Delivery{}, s.fail(op, err)
	}
	// It may be the head again, before the one that was.
	if _, err := tx.Exec(ctx, reheadSQL, p[0], p[1]); err != nil {
		return webhooks.Delivery{}, s.fail(op, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return webhooks.Delivery{}, s.fail(op, err)
	}
	return d, nil
}

var _ webhooks.HeadRepairer = (*Store)(nil)

// RepairHeads implements webhooks.HeadRepairer. A replica of a version
// before schema 12 sharing the database during a rolling upgrade inserts
// deliveries without ready_at, delivers a head without marking the next,
// finishes a delivery without clearing its ready_at, and claims one
// without moving it. The first two would wait for good once their
// transfer makes no more events (a promote comes only with an enqueue or
// a finish of the pair); the third is claimed again and delivered twice,
// once; the fourth is passed over by every claim while its lease runs
// (collectDue) and taken by the first after. A claim sets right the last
// two among those it picks. An older replica's redelivery makes an
// earlier delivery pending again without a rehead: its pair has two
// ready deliveries. Every committed state this
// version writes has a ready head for each pair with a pending delivery,
// due at greatest(next_attempt, lease_until), and no other delivery
// ready, so what this finds was left by an older replica. It reads every
// pending delivery once, in webhook_deliveries_head, and every ready one.
func (s *Store) RepairHeads(ctx context.Context) (int, error) {
	const op = "repair webhook heads"
	tag, err := s.pool.Exec(ctx, fixReadySQL)
	if err != nil {
		return 0, s.fail(op, err)
	}
	total := int(tag.RowsAffected())
	for range maxRepairRounds {
		rows, err := s.pool.Query(ctx, wrongHeadsSQL, repairBatch)
		if err != nil {
			return total, s.fail(op, err)
		}
		pairs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) ([2]string, error) {
			var p [2]string
			err := row.Scan(&p[0], &p[1])
			return p, err
		})
		if err != nil {
			return total, s.fail(op, err)
		}
		if len(pairs) == 0 {
			break
		}
		n, err := s.rehead(ctx, pairs)
		if err != nil {
			return total, s.fail(op, err)
		}
		total += n
		if len(pairs) < repairBatch || n == 0 {
			break
		}
	}
	return total, nil
}

// rehead decides the heads of pairs again (reheadSQL), under their locks,
// in one transaction, and returns how many deliveries it changed.
func (s *Store) rehead(ctx context.Context, pairs [][2]string) (int, error) {
	tx, err := s.beginDeliveries(ctx, func(b *pgx.Batch) { queueLocks(b, pairs) })
	if err != nil {
		return 0, err
	}
	defer tx.end(ctx)
	var b pgx.Batch
	n := 0
	for _, p := range pairs {
		b.Queue(reheadSQL, p[0], p[1]).Exec(func(tag pgconn.CommandTag) error {
			n += int(tag.RowsAffected())
			return nil
		})
	}
	if err := tx.commit(ctx, &b); err != nil {
		return 0, err
	}
	return n, nil
}

const (
	// repairBatch is how many pairs one transaction of RepairHeads
	// reheads; maxRepairRounds bounds a RepairHeads (the next goes on).
	repairBatch     = 200
	maxRepairRounds = 50
	// wrongHeadsSQL finds the pairs whose first pending delivery is not
	// ready (the first of each pair in webhook_deliveries_head), and those
	// with a ready delivery that is not the first pending one (an older
	// replica's redelivery makes an earlier delivery pending again without
	// a rehead): each ready one, in webhook_deliveries_ready's order, and
	// its pair's first in webhook_deliveries_head.
	wrongHeadsSQL = `(SELECT endpoint_key, transfer_id FROM (
			SELECT DISTINCT ON (endpoint_key, transfer_id) endpoint_key, transfer_id, ready_at FROM webhook_deliveries
			WHERE status = 'pending' ORDER BY endpoint_key, transfer_id, seq) h
		WHERE h.ready_at IS NULL LIMIT $1)
		UNION
		(SELECT r.endpoint_key, r.transfer_id FROM webhook_deliveries r,
			LATERAL (SELECT e.seq FROM webhook_deliveries e WHERE e.status = 'pending' AND e.endpoint_key = r.endpoint_key
				AND e.transfer_id = r.transfer_id ORDER BY e.seq LIMIT 1) first
		WHERE r.ready_at IS NOT NULL AND r.status = 'pending' AND first.seq < r.seq
		ORDER BY r.ready_at, r.pos, r.id LIMIT $1)`
	// fixReadySQL sets right the ready deliveries whose ready_at an older
	// replica left: it unmarks the finished ones and moves a claimed
	// head's to its lease's end. It reads the ready ones in
	// webhook_deliveries_ready's order (never the finished ones, which
	// retention keeps by the hundred thousand). It needs no pair's lock:
	// it does not change which delivery is a pair's head, and a row
	// another transaction changed meanwhile is tested again once its
	// lock is taken.
	fixReadySQL = fixReadyUpdate + `ANY(ARRAY(SELECT id FROM webhook_deliveries WHERE ready_at IS NOT NULL ORDER BY ready_at, pos, id))` + fixReadyWhere
	// fixReadyOfSQL is fixReadySQL for the deliveries of ids, which a
	// claim found stale (collectDue).
	fixReadyOfSQL = fixReadyUpdate + `ANY($1)` + fixReadyWhere
	// The two statements differ only in the ids they look at.
	fixReadyUpdate = `UPDATE webhook_deliveries SET ready_at = ` + readyAtOfRow + ` WHERE id = `
	fixReadyWhere  = ` AND ready_at IS NOT NULL AND ready_at IS DISTINCT FROM ` + readyAtOfRow
	// readyAtOfRow is a ready delivery's right ready_at: when it is due
	// if pending, none if finished.
	readyAtOfRow = `CASE WHEN status = 'pending' THEN greatest(next_attempt, lease_until) END`
)

// DeliveryBacklog implements webhooks.Store.
func (s *Store) DeliveryBacklog(ctx context.Context) (int, time.Time, error) {
	var n int
	var oldest *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT count(*), min(created_at) FROM webhook_deliveries WHERE status = 'pending'`).Scan(&n, &oldest); err != nil {
		return 0, time.Time{}, s.fail("webhook backlog", err)
	}
	if oldest == nil {
		return n, time.Time{}, nil
	}
	return n, oldest.UTC(), nil
}

// purgeDeliveriesSQL deletes up to $2 finished deliveries whose
// finished_at is before $1, oldest first, found in
// webhook_deliveries_finished (whose predicate it repeats): no scan,
// whatever the number of pending deliveries. The ids are an array, which
// the delete looks up in the primary key: with id IN (subquery) the
// planner may join the subquery to a scan of the whole table (it did, on
// a table it had no statistics of). SKIP LOCKED lets replicas purge at
// once without waiting on each other, nor on a delivery being redelivered
// (which then stays); a delivery redelivered after the statement read it
// no longer matches the WHERE clause when its lock is taken, and stays
// too. Their payloads go with them (schema 15), in the same statement;
// it returns how many deliveries went.
const purgeDeliveriesSQL = `WITH gone AS (DELETE FROM webhook_deliveries WHERE id = ANY(ARRAY(SELECT id FROM webhook_deliveries
		WHERE status <> 'pending' AND finished_at < $1 ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED)) RETURNING id),
	payloads AS (DELETE FROM webhook_payloads WHERE id = ANY(ARRAY(SELECT id FROM gone)))
	SELECT count(*) FROM gone`

// PurgeDeliveries implements webhooks.Store in statements (each its own
// transaction) of at most s.purgeBatch rows, paced as Purge's.
func (s *Store) PurgeDeliveries(ctx context.Context, before time.Time, limit int) (int, error) {
	const op = "purge deliveries"
	total := 0
	for limit <= 0 || total < limit {
		n := s.purgeBatch
		if limit > 0 {
			n = min(n, limit-total)
		}
		var gone int
		start := s.clock()
		if err := s.pool.QueryRow(ctx, purgeDeliveriesSQL, before, n).Scan(&gone); err != nil {
			return total, s.fail(op, err)
		}
		total += gone
		if gone < n {
			break
		}
		if err := s.pace(ctx, start); err != nil {
			return total, s.fail(op, err)
		}
	}
	return total, nil
}
