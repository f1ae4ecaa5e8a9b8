package sqlite

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/record"
	"github.com/transferd/transferd/internal/webhooks"
)

var _ webhooks.Store = (*Store)(nil)

// Cursor implements webhooks.Store.
func (s *Store) DeliveryCursor(ctx context.Context, endpoint string) (int64, error) {
	var pos int64
	err := s.reads.queryRow(ctx, cursorSQL, endpoint).Scan(&pos)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fail("webhook cursor", err)
	}
	return pos, nil
}

const (
	cursorSQL     = `SELECT pos FROM webhook_cursors WHERE endpoint_key = ?`
	moveCursorSQL = `INSERT INTO webhook_cursors (endpoint_key, pos) VALUES (?, ?)
		ON CONFLICT (endpoint_key) DO UPDATE SET pos = excluded.pos`
)

// Enqueue implements webhooks.Store: the cursor moves in the same
// transaction as the inserts, on the single writer.
func (s *Store) EnqueueDeliveries(ctx context.Context, endpoint string, from, to int64, ds []webhooks.Delivery) error {
	const op = "enqueue deliveries"
	tx, done, err := s.beginUnsynced(ctx)
	if err != nil {
		return fail(op, err)
	}
	defer done()
	t := s.in(ctx, tx)
	var cur int64
	if err := t.queryRow(cursorSQL, endpoint).Scan(&cur); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fail(op, err)
	}
	if cur != from {
		return webhooks.ErrCursorMoved
	}
	if _, err := t.exec(moveCursorSQL, endpoint, to); err != nil {
		return fail(op, err)
	}
	// Each pair's candidate head goes in first, ready if the pair has no
	// pending delivery (insertDeliverySQL): its look must not see the
	// others of the batch. The promote then finds the head ready and
	// writes nothing, or makes the first pending delivery ready where the
	// insert could not (its candidate was there already).
	heads := webhooks.HeadCandidates(ds)
	for _, first := range []bool{true, false} {
		for i, d := range ds {
			if heads[i] != first {
				continue
			}
			if err := insertDelivery(t, d, heads[i]); err != nil {
				return fail(op, err)
			}
		}
	}
	var pairs [][2]string
	for _, d := range ds {
		if p := pairOf(d); !slices.Contains(pairs, p) {
			pairs = append(pairs, p)
		}
	}
	for _, p := range pairs {
		if err := promote(t, p); err != nil {
			return fail(op, err)
		}
	}
	return fail2(op, tx.Commit())
}

// beginUnsynced begins a transaction of the writer that SQLite commits
// without syncing the WAL (synchronous=NORMAL), for the writes of webhook
// delivery whose loss in a power cut (not a killed process: the kernel
// has them) makes an endpoint get a delivery again, never miss one: an
// enqueue lost with its cursor is enqueued again from the outbox, a lost
// claim's lease is gone, a lost result is tried again. Delivery is at
// least once anyway. A durable commit after them (every save) syncs the
// WAL, theirs included, and a power cut keeps a prefix of the commits.
// An fsync for each of them (a transfer's events made five or six
// deliveries, each a claim's share, a result and an enqueue's share) cost
// more than the transfer's own saves. Redeliveries, which an operator is
// told were made, stay durable.
//
// The level is the connection's, and SQLite refuses to change it within
// a transaction: see beginWith.
func (s *Store) beginUnsynced(ctx context.Context) (tx *sql.Tx, done func(), err error) {
	return s.beginWith(ctx, []string{`PRAGMA synchronous = NORMAL`}, []string{`PRAGMA synchronous = FULL`})
}

// pairOf is d's endpoint key and transfer: its deliveries go in Seq
// order, one at a time.
func pairOf(d webhooks.Delivery) [2]string {
	return [2]string{webhooks.EndpointKey(d.Tenant, d.Endpoint), d.TransferID}
}

// reheadSQL sets ready_at (schema 11) on the first pending delivery of an
// endpoint and transfer, and clears it on the others of the pair: after
// an insert, a finish that ended the head, or a redelivery, which may
// make an earlier delivery the head again. It writes only the rows whose
// ready_at changes.
const reheadSQL = `WITH head(id) AS (SELECT id FROM webhook_deliveries
		WHERE status = 'pending' AND endpoint_key = ?1 AND transfer_id = ?2 ORDER BY seq LIMIT 1)
	UPDATE webhook_deliveries SET ready_at = CASE WHEN id = (SELECT id FROM head) THEN max(next_attempt, lease_until) END
	WHERE status = 'pending' AND endpoint_key = ?1 AND transfer_id = ?2
		AND ready_at IS NOT CASE WHEN id = (SELECT id FROM head) THEN max(next_attempt, lease_until) END`

func rehead(t *wtx, p [2]string) error {
	_, err := t.exec(reheadSQL, p[0], p[1])
	return err
}

// promoteSQL makes the first pending delivery of an endpoint and transfer
// ready if it is not: all an enqueue or a finish has to do. An enqueue
// adds deliveries after every pending one of their transfer (its events
// come in order), so the head, if any, stays, and the insert made a new
// pair's head ready (insertDeliverySQL); a finish that ended the head
// leaves none ready, and the next becomes the head. (A redelivery
// may put an earlier delivery first, and reheads.) It costs one index
// look and at most one row, where rehead reads the pair's every pending
// delivery: a rehead at each result was an eighth of transferd's CPU
// with every event delivered.
const promoteSQL = `UPDATE webhook_deliveries SET ready_at = max(next_attempt, lease_until)
	WHERE id = (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND endpoint_key = ?1 AND transfer_id = ?2
		ORDER BY seq LIMIT 1) AND ready_at IS NULL`

func promote(t *wtx, p [2]string) error {
	_, err := t.exec(promoteSQL, p[0], p[1])
	return err
}

const (
	// A pair's candidate head (?13, webhooks.HeadCandidates) is inserted
	// ready (?14) if the pair has no pending delivery; the single writer
	// holds the database from this look to the commit, so nothing changes
	// the pair meanwhile. Before, promoteSQL wrote that row a second time.
	insertDeliverySQL = `INSERT INTO webhook_deliveries (id, tenant, endpoint_key, transfer_id, seq, pos, status,
			next_attempt, lease_until, created_at, finished_at, rec, ready_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,
			CASE WHEN ?13 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries
				WHERE status = 'pending' AND endpoint_key = ?3 AND transfer_id = ?4) THEN ?14 END)
			ON CONFLICT (id) DO NOTHING`
	// A delivery's payload is written once, with its insert (schema 13):
	// if the delivery was there, so is its payload.
	insertPayloadSQL = `INSERT INTO webhook_payloads (id, payload) VALUES (?, ?) ON CONFLICT (id) DO NOTHING`
	// A head stays the head while it is pending, claimable from its new
	// ReadyAt; a delivery that is not stays unready (promote or rehead
	// decides).
	updateDeliverySQL = `UPDATE webhook_deliveries SET status = ?1, next_attempt = ?2, lease_until = ?3, finished_at = ?4,
		rec = ?5, ready_at = CASE WHEN ?1 = 'pending' AND ready_at IS NOT NULL THEN ?6 END
		WHERE id = ?7`
	getDeliverySQL = `SELECT rec FROM webhook_deliveries WHERE id = ?`
)

// insertDelivery inserts d, its payload with it (schema 13); head says
// whether d is its pair's candidate head (insertDeliverySQL).
func insertDelivery(t *wtx, d webhooks.Delivery, head bool) error {
	rec, err := deliveryRecord(d)
	if err != nil {
		return err
	}
	_, err = t.exec(insertDeliverySQL,
		d.ID, d.Tenant, webhooks.EndpointKey(d.Tenant, d.Endpoint), d.TransferID, d.Seq, d.Pos, string(d.Status),
		ts(d.NextAttempt), ts(d.LeaseUntil), ts(d.CreatedAt), finishedAt(d), rec, head, ts(webhooks.ReadyAt(d)))
	if err == nil && len(d.Payload) > 0 {
		_, err = t.exec(insertPayloadSQL, d.ID, d.Payload)
	}
	return err
}

// putDelivery rewrites d's record, never its payload (schema 13).
func putDelivery(t *wtx, d webhooks.Delivery) error {
	rec, err := deliveryRecord(d)
	if err != nil {
		return err
	}
	_, err = t.exec(updateDeliverySQL, string(d.Status), ts(d.NextAttempt), ts(d.LeaseUntil), finishedAt(d), rec, ts(webhooks.ReadyAt(d)), d.ID)
	return err
}

// deliveryRecord is d as stored in rec: whole but for its payload, which
// is stored apart (schema 13).
func deliveryRecord(d webhooks.Delivery) (string, error) {
	d.Payload = nil
	rec, err := json.Marshal(d)
	return string(rec), err
}

// finishedAt is the finished_at column of d (schema 8): when it stopped
// being pending, the UpdatedAt of the attempt that delivered it or gave it
// up; NULL while it is pending (a redelivery clears it).
func finishedAt(d webhooks.Delivery) any {
	if d.Status == webhooks.StatusPending {
		return nil
	}
	return ts(d.UpdatedAt)
}

func fail2(op string, err error) error {
	if err != nil {
		return fail(op, err)
	}
	return nil
}

// scanDeliveries reads the rows of a statement that selects rec and,
// with payloads, the payload (NULL if none).
func scanDeliveries(rows *sql.Rows, payloads bool) ([]webhooks.Delivery, error) {
	defer rows.Close()
	var out []webhooks.Delivery
	for rows.Next() {
		var rec string
		var payload []byte
		dest := []any{&rec}
		if payloads {
			dest = append(dest, &payload)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		d, err := record.DecodeDelivery([]byte(rec))
		if err != nil {
			return nil, err
		}
		// A delivery stored before schema 13 may have its payload in
		// its record as well, the same.
		if payload != nil {
			d.Payload = payload
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// ClaimDeliveries implements webhooks.Store, on the single writer.
func (s *Store) ClaimDeliveries(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Delivery, error) {
	_, claimed, err := s.settle(ctx, nil, owner, now, lease, limit, skip)
	if err != nil {
		return nil, fail("claim deliveries", err)
	}
	return claimed, nil
}

// SettleDeliveries implements webhooks.Store (settle).
func (s *Store) SettleDeliveries(ctx context.Context, results []webhooks.Delivery, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Finished, []webhooks.Delivery, error) {
	vs, claimed, err := s.settle(ctx, results, owner, now, lease, limit, skip)
	if err != nil {
		return nil, nil, fail("settle deliveries", err)
	}
	return vs, claimed, nil
}

// settle writes results and makes a claim (claimIn) in one transaction
// of the writer, unsynced (see beginUnsynced). The dispatcher's results
// written on their own, in group commits, were a transaction for every
// four or five of them, about as many transactions as its claims made.
func (s *Store) settle(ctx context.Context, results []webhooks.Delivery, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Finished, []webhooks.Delivery, error) {
	if len(results) == 0 && limit <= 0 {
		return nil, nil, nil
	}
	tx, done, err := s.beginUnsynced(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer done()
	t := s.in(ctx, tx)
	vs := make([]webhooks.Finished, len(results))
	for i, d := range results {
		if vs[i].Delivery, vs[i].OK, err = finishOne(t, d); err != nil {
			return nil, nil, err
		}
	}
	claimed, err := claimIn(t, owner, now, lease, limit, skip)
	if err != nil {
		return nil, nil, err
	}
	if len(results) == 0 && len(claimed) == 0 {
		return nil, nil, nil // nothing written
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, err
	}
	return vs, claimed, nil
}

// claimIn claims within t. It reads the ready deliveries (schema 11),
// never the pending ones waiting behind another of their transfer, nor
// those in back-off.
func claimIn(t *wtx, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Delivery, error) {
	if limit <= 0 {
		return nil, nil
	}
	picked, err := webhooks.PickDue(now, limit, skip, nil, dueLookup(t, ts(now)))
	if err != nil || len(picked) == 0 {
		return nil, err
	}
	ids := make([]string, len(picked))
	for i, r := range picked {
		ids[i] = r.ID
	}
	idsJSON, err := json.Marshal(ids)
	if err != nil {
		return nil, err
	}
	rows, err := t.query(claimRecordsSQL, string(idsJSON))
	if err != nil {
		return nil, err
	}
	ds, err := scanDeliveries(rows, true)
	if err != nil {
		return nil, err
	}
	// In the order picked.
	slices.SortFunc(ds, func(a, b webhooks.Delivery) int { return slices.Index(ids, a.ID) - slices.Index(ids, b.ID) })
	for i := range ds {
		ds[i].Attempts++
		ds[i].Owner, ds[i].LeaseUntil = owner, now.Add(lease)
		if err := putDelivery(t, ds[i]); err != nil {
			return nil, err
		}
	}
	return ds, nil
}

// dueLookup answers webhooks.PickDue from webhook_deliveries_ready (the
// earliest due, any endpoint) and webhook_deliveries_ready_endpoint (each
// endpoint's), inside tx.
func dueLookup(t *wtx, now string) webhooks.DueLookup {
	return webhooks.DueLookup{
		// Read row by row: SQLite reads no further than the claim needs.
		Earliest: func(n int, each func(webhooks.Ready) bool) error {
			return readies(t.query(earliestDueSQL, now, n))(each)
		},
		Endpoints: func() ([]webhooks.Ready, error) {
			return collect(readies(t.query(readyEndpointsSQL)))
		},
		OfEndpoint: func(key string, n int) ([]webhooks.Ready, error) {
			return collect(readies(t.query(endpointDueSQL, key, now, n)))
		},
	}
}

const (
	claimRecordsSQL = `SELECT d.rec, p.payload FROM webhook_deliveries d LEFT JOIN webhook_payloads p ON p.id = d.id
		WHERE d.id IN (SELECT value FROM json_each(?))`
	earliestDueSQL = `SELECT id, endpoint_key, ready_at, pos FROM webhook_deliveries
		WHERE ready_at IS NOT NULL AND ready_at <= ? ORDER BY ready_at, pos, id ` + limitArg
	endpointDueSQL = `SELECT id, endpoint_key, ready_at, pos FROM webhook_deliveries
		WHERE endpoint_key = ? AND ready_at IS NOT NULL AND ready_at <= ? ORDER BY ready_at, pos, id ` + limitArg
	// readyEndpointsSQL hops from one endpoint key to the next in
	// webhook_deliveries_ready_endpoint, a seek each, rather than reading
	// every ready delivery, and takes each one's earliest ready_at.
	readyEndpointsSQL = `WITH RECURSIVE e(k) AS (
			SELECT min(endpoint_key) FROM webhook_deliveries WHERE ready_at IS NOT NULL
			UNION ALL
			SELECT (SELECT min(endpoint_key) FROM webhook_deliveries WHERE ready_at IS NOT NULL AND endpoint_key > e.k)
			FROM e WHERE e.k IS NOT NULL)
		SELECT '', k, (SELECT min(ready_at) FROM webhook_deliveries WHERE ready_at IS NOT NULL AND endpoint_key = e.k), 0
		FROM e WHERE k IS NOT NULL`
)

// readies passes the rows of a statement that selects id, endpoint_key,
// ready_at and pos to each, until it returns false.
func readies(rows *sql.Rows, err error) func(each func(webhooks.Ready) bool) error {
	return func(each func(webhooks.Ready) bool) error {
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r webhooks.Ready
			var at string
			if err := rows.Scan(&r.ID, &r.Endpoint, &at, &r.Pos); err != nil {
				return err
			}
			if r.At, err = parseTS(at); err != nil {
				return err
			}
			if !each(r) {
				return nil
			}
		}
		return rows.Err()
	}
}

func collect(read func(each func(webhooks.Ready) bool) error) ([]webhooks.Ready, error) {
	var out []webhooks.Ready
	err := read(func(r webhooks.Ready) bool {
		out = append(out, r)
		return true
	})
	return out, err
}

// FinishDelivery implements webhooks.Store: in a group commit of results
// (webhooks.Finishes).
func (s *Store) FinishDelivery(ctx context.Context, d webhooks.Delivery) (webhooks.Delivery, bool, error) {
	const op = "finish delivery"
	if err := ctx.Err(); err != nil {
		return webhooks.Delivery{}, false, fail(op, err)
	}
	cur, ok, err := s.finishes.Finish(d)
	if err != nil {
		return webhooks.Delivery{}, false, fail(op, err)
	}
	return cur, ok, nil
}

// maxFinishes bounds a batch of results, so that saves never wait long
// behind one.
const maxFinishes = 16

// finishBatch writes a batch of FinishDelivery's results in one
// transaction (settle).
func (s *Store) finishBatch(ds []webhooks.Delivery) ([]webhooks.Finished, error) {
	vs, _, err := s.settle(context.Background(), ds, "", time.Time{}, 0, 0, nil)
	if err != nil {
		return nil, err
	}
	s.finishBatches.Add(1)
	return vs, nil
}

// finishOne stores the result of d's attempt within tx, if the stored
// delivery is still pending with d's Attempts (see webhooks.Store).
func finishOne(t *wtx, d webhooks.Delivery) (webhooks.Delivery, bool, error) {
	cur, err := getDelivery(t, d.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return webhooks.Delivery{}, false, nil
	}
	if err != nil {
		return webhooks.Delivery{}, false, err
	}
	cur, ok := webhooks.ApplyResult(cur, d)
	if !ok {
		return webhooks.Delivery{}, false, nil
	}
	if err := putDelivery(t, cur); err != nil {
		return webhooks.Delivery{}, false, err
	}
	if cur.Status != webhooks.StatusPending {
		if err := promote(t, pairOf(cur)); err != nil {
			return webhooks.Delivery{}, false, err
		}
	}
	return cur, true, nil
}

func getDelivery(t *wtx, id string) (webhooks.Delivery, error) {
	var rec string
	if err := t.queryRow(getDeliverySQL, id).Scan(&rec); err != nil {
		return webhooks.Delivery{}, err
	}
	return record.DecodeDelivery([]byte(rec))
}

// Deliveries implements webhooks.Store. A cursor that names no delivery
// of the tenant lists nothing (deliveriesQuery), so only an empty page
// after a cursor looks it up, to tell the client so.
func (s *Store) Deliveries(ctx context.Context, f webhooks.DeliveryFilter) ([]webhooks.Delivery, bool, error) {
	const op = "list deliveries"
	q, args := deliveriesQuery(f)
	rows, err := s.reads.query(ctx, q, args...)
	if err != nil {
		return nil, false, fail(op, err)
	}
	ds, err := scanDeliveries(rows, false)
	if err != nil {
		return nil, false, fail(op, err)
	}
	if len(ds) == 0 && f.After != "" && f.AfterPos == 0 {
		var one int
		switch err := s.reads.queryRow(ctx, listCursorSQL, f.After, f.Tenant).Scan(&one); {
		case errors.Is(err, sql.ErrNoRows):
			return nil, false, kindErr(op, orchestrator.KindInvalid, webhooks.ErrUnknownCursor)
		case err != nil:
			return nil, false, fail(op, err)
		}
	}
	if f.Limit > 0 && len(ds) > f.Limit {
		return ds[:f.Limit], true, nil
	}
	return ds, false, nil
}

// listCursorSQL finds the delivery a list's cursor names among the
// tenant's.
const listCursorSQL = `SELECT 1 FROM webhook_deliveries WHERE id = ? AND tenant = ?`

// kindConds are the conditions of the kinds of deliveries a list reads
// apart (webhooks.ListKinds), each the text of its index's predicate,
// literals included: SQLite uses a partial index only where the query
// repeats its terms (schema 14).
var kindConds = map[webhooks.ListKind]string{
	webhooks.ListPending: `status = 'pending' AND status <> 'delivered'`,
	webhooks.ListDead:    `status = 'dead' AND status <> 'delivered'`,
	webhooks.ListFailing: `status = 'pending' AND json_extract(rec, '$.LastError') <> ''`,
}

// deliveriesQuery is the statement of Deliveries: a tenant's deliveries
// in (pos, id) order, descending. The cursor compares the whole key:
// every endpoint's delivery of an event has the event's pos, and
// comparing pos alone skipped the cursor's siblings. Where it reads them
// from (schema 14):
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
	// The cursor is the tenant's own: another tenant's delivery (or none)
	// bounds nothing, and the list is empty. Looked up across tenants, it
	// listed the tenant's deliveries older than another tenant's, and
	// told by that whether the other's delivery existed.
	cursor, cursorArgs := ` AND (pos, id) < (SELECT pos, id FROM webhook_deliveries WHERE id = ? AND tenant = ?)`, []any{f.After, f.Tenant}
	if f.AfterPos != 0 {
		// The key itself: nothing of another tenant is read.
		cursor, cursorArgs = ` AND (pos, id) < (?, ?)`, []any{f.AfterPos, f.After}
	}
	// One more than asked tells whether more follow.
	limit := func(q string, args []any) (string, []any) {
		if f.Limit > 0 {
			return q + ` ` + limitArg, append(args, f.Limit+1)
		}
		return q, args
	}
	if kinds := webhooks.ListKinds(f); kinds != nil {
		branch := func(col string, k webhooks.ListKind) (string, []any) {
			q := `SELECT ` + col + ` FROM webhook_deliveries WHERE tenant = ? AND ` + kindConds[k]
			args := []any{f.Tenant}
			if f.After != "" {
				q += cursor
				args = append(args, cursorArgs...)
			}
			return limit(q+order, args)
		}
		if len(kinds) == 1 {
			return branch("rec", kinds[0])
		}
		var (
			branches []string
			args     []any
		)
		for _, k := range kinds {
			q, a := branch("id", k)
			branches = append(branches, `SELECT * FROM (`+q+`)`)
			args = append(args, a...)
		}
		return limit(`SELECT rec FROM webhook_deliveries WHERE id IN (`+strings.Join(branches, " UNION ALL ")+`)`+order, args)
	}
	q := `SELECT rec FROM webhook_deliveries WHERE tenant = ?`
	args := []any{f.Tenant}
	if f.TransferID != "" {
		// Named: without statistics SQLite may take the tenant's index,
		// which has the same order, and read all of the tenant's rows.
		q = `SELECT rec FROM webhook_deliveries INDEXED BY webhook_deliveries_transfer WHERE transfer_id = ? AND tenant = ?`
		args = []any{f.TransferID, f.Tenant}
	}
	if len(f.Statuses) > 0 || f.Failing {
		var or []string
		// The same set of statuses, however a client repeats or orders
		// it, is one text, one statement prepared (readStmts).
		for _, st := range slices.Compact(slices.Sorted(slices.Values(f.Statuses))) {
			or = append(or, `status = ?`)
			args = append(args, string(st))
		}
		if f.Failing {
			or = append(or, `(`+kindConds[webhooks.ListFailing]+`)`)
		}
		q += ` AND (` + strings.Join(or, " OR ") + `)`
	}
	if f.After != "" {
		q += cursor
		args = append(args, cursorArgs...)
	}
	return limit(q+order, args)
}

// Redeliver implements webhooks.Store.
func (s *Store) Redeliver(ctx context.Context, tenant, id string, now, deadline time.Time, allow func(webhooks.Delivery) error) (webhooks.Delivery, error) {
	const op = "redeliver"
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return webhooks.Delivery{}, fail(op, err)
	}
	defer tx.Rollback()
	t := s.in(ctx, tx)
	d, err := getDelivery(t, id)
	if errors.Is(err, sql.ErrNoRows) || err == nil && d.Tenant != tenant {
		return webhooks.Delivery{}, kindErr(op, orchestrator.KindNotFound, errors.New("no such delivery"))
	}
	if err != nil {
		return webhooks.Delivery{}, fail(op, err)
	}
	if allow != nil {
		if err := allow(d); err != nil {
			return webhooks.Delivery{}, err
		}
	}
	if d.Status != webhooks.StatusPending || !d.LeaseUntil.After(now) {
		// A delivery in flight keeps its claim; its FinishDelivery sees
		// Redelivered moved and keeps it pending.
		d.Owner, d.LeaseUntil = "", time.Time{}
	}
	d.Status, d.NextAttempt, d.Deadline, d.Redelivered, d.UpdatedAt = webhooks.StatusPending, now, deadline, d.Attempts, now
	d.Unconfigured = time.Time{}
	// Resend, as Redelivered cannot tell a delivery never attempted yet
	// (Attempts 0) redelivered from one never redelivered.
	d.Resend = true
	if err := putDelivery(t, d); err != nil {
		return webhooks.Delivery{}, fail(op, err)
	}
	// It may be the head again, before the one that was.
	if err := rehead(t, pairOf(d)); err != nil {
		return webhooks.Delivery{}, fail(op, err)
	}
	return d, fail2(op, tx.Commit())
}

// Backlog implements webhooks.Store.
func (s *Store) DeliveryBacklog(ctx context.Context) (int, time.Time, error) {
	var n int
	var oldest sql.NullString
	if err := s.reads.queryRow(ctx, `SELECT count(*), min(created_at) FROM webhook_deliveries WHERE status = 'pending'`).Scan(&n, &oldest); err != nil {
		return 0, time.Time{}, fail("webhook backlog", err)
	}
	if !oldest.Valid {
		return n, time.Time{}, nil
	}
	t, err := parseTS(oldest.String)
	return n, t, fail2("webhook backlog", err)
}

// purgeDeliveriesSQL deletes up to ? finished deliveries whose finished_at
// is before ?, oldest first. It reads webhook_deliveries_finished (whose
// predicate it repeats word for word, so that SQLite may use it) for the
// rowids, without touching the table: no scan, whatever the number of
// pending deliveries.
const purgeDeliveriesSQL = `DELETE FROM webhook_deliveries WHERE rowid IN (SELECT rowid FROM webhook_deliveries
	WHERE status <> 'pending' AND finished_at < ? ORDER BY finished_at ` + limitArg + `)`

// PurgeDeliveries implements webhooks.Store in slices (Store.slice) of
// s.purgeChunk rows a step, as Purge deletes transfers: a slice holds the
// writer for at most the slice budget, so that saves and deliveries'
// writes never wait long behind it. The pages freed are then given back
// to the file system, in slices too.
func (s *Store) PurgeDeliveries(ctx context.Context, before time.Time, limit int) (int, error) {
	const op = "purge deliveries"
	total, err := s.deleteInSlices(ctx, limit, purgeDeliveriesSQL, ts(before))
	if err != nil {
		return total, fail(op, err)
	}
	if total > 0 {
		if err := s.reclaim(ctx); err != nil {
			return total, fail(op, err)
		}
	}
	return total, nil
}

// movePayloads copies the payloads of the deliveries stored before schema
// 13, in their records, to webhook_payloads, within the migration's
// transaction tx; a slice of rows at a time, in rowid order, so that
// memory does not grow with the table. Their records keep the copy until
// their next write.
func movePayloads(ctx context.Context, tx *sql.Tx) error {
	const slice = 1000
	type moved struct {
		id      string
		payload []byte
	}
	var after int64
	for {
		rows, err := tx.QueryContext(ctx, `SELECT rowid, id, rec ->> '$.Payload' FROM webhook_deliveries
			WHERE rowid > ? AND rec ->> '$.Payload' <> '' ORDER BY rowid LIMIT ?`, after, slice)
		if err != nil {
			return err
		}
		var ms []moved
		for rows.Next() {
			var m moved
			var b64 string
			if err := rows.Scan(&after, &m.id, &b64); err != nil {
				rows.Close()
				return err
			}
			// encoding/json wrote []byte in standard base64.
			if m.payload, err = base64.StdEncoding.DecodeString(b64); err != nil {
				rows.Close()
				return fmt.Errorf("delivery %s: payload: %w", m.id, err)
			}
			ms = append(ms, m)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		for _, m := range ms {
			if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_payloads (id, payload) VALUES (?, ?)`, m.id, m.payload); err != nil {
				return err
			}
		}
		if len(ms) < slice {
			return nil
		}
	}
}
