package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/orchestrator"
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
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return s.fail(op, err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO webhook_cursors (endpoint_key, pos) VALUES ($1, 0) ON CONFLICT DO NOTHING`, endpoint); err != nil {
		return s.fail(op, err)
	}
	var cur int64
	if err := tx.QueryRow(ctx, `SELECT pos FROM webhook_cursors WHERE endpoint_key = $1 FOR UPDATE`, endpoint).Scan(&cur); err != nil {
		return s.fail(op, err)
	}
	if cur != from {
		return webhooks.ErrCursorMoved
	}
	var b pgx.Batch
	b.Queue(`UPDATE webhook_cursors SET pos = $2 WHERE endpoint_key = $1`, endpoint, to)
	for _, d := range ds {
		rec, err := deliveryRecord(d)
		if err != nil {
			return s.fail(op, err)
		}
		b.Queue(`INSERT INTO webhook_deliveries (id, tenant, endpoint_key, transfer_id, seq, pos, status,
			next_attempt, lease_until, created_at, failing, finished_at, record)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
			ON CONFLICT (id) DO NOTHING`,
			d.ID, d.Tenant, webhooks.EndpointKey(d.Tenant, d.Endpoint), d.TransferID, d.Seq, d.Pos, string(d.Status),
			d.NextAttempt, d.LeaseUntil, d.CreatedAt, failing(d), finishedAt(d), rec)
	}
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return s.fail(op, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return s.fail(op, err)
	}
	return nil
}

// deliveryRecord is d as stored whole.
func deliveryRecord(d webhooks.Delivery) ([]byte, error) {
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

// putDelivery rewrites a stored delivery.
func putDelivery(ctx context.Context, tx pgx.Tx, d webhooks.Delivery) error {
	rec, err := deliveryRecord(d)
	if err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE webhook_deliveries SET status = $2, next_attempt = $3, lease_until = $4, failing = $5,
		finished_at = $6, record = $7 WHERE id = $1`, d.ID, string(d.Status), d.NextAttempt, d.LeaseUntil, failing(d), finishedAt(d), rec)
	return err
}

func collectDeliveries(rows pgx.Rows) ([]webhooks.Delivery, error) {
	defer rows.Close()
	var out []webhooks.Delivery
	for rows.Next() {
		var rec []byte
		if err := rows.Scan(&rec); err != nil {
			return nil, err
		}
		var d webhooks.Delivery
		if err := json.Unmarshal(rec, &d); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// ClaimDeliveries implements webhooks.Store. SKIP LOCKED lets replicas
// claim at once; a delivery another replica is claiming is skipped, and
// the head test (no pending delivery of the same endpoint and transfer
// with a lower seq) still sees it pending, so its successor is not
// claimed past it.
func (s *Store) ClaimDeliveries(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Delivery, error) {
	const op = "claim deliveries"
	if skip == nil {
		skip = []string{} // NULL would make <> ALL unknown, and skip every row
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, s.fail(op, err)
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, `SELECT record FROM webhook_deliveries d
		WHERE status = 'pending' AND next_attempt <= $1 AND lease_until <= $1 AND endpoint_key <> ALL($3::text[])
		AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.status = 'pending'
			AND e.endpoint_key = d.endpoint_key AND e.transfer_id = d.transfer_id AND e.seq < d.seq)
		ORDER BY pos LIMIT $2 FOR UPDATE SKIP LOCKED`, now, limit, skip)
	if err != nil {
		return nil, s.fail(op, err)
	}
	ds, err := collectDeliveries(rows)
	if err != nil {
		return nil, s.fail(op, err)
	}
	for i := range ds {
		ds[i].Attempts++
		ds[i].Owner, ds[i].LeaseUntil = owner, now.Add(lease)
		if err := putDelivery(ctx, tx, ds[i]); err != nil {
			return nil, s.fail(op, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, s.fail(op, err)
	}
	return ds, nil
}

// getDelivery reads a delivery for update.
func getDelivery(ctx context.Context, tx pgx.Tx, id string) (webhooks.Delivery, error) {
	var rec []byte
	var d webhooks.Delivery
	if err := tx.QueryRow(ctx, `SELECT record FROM webhook_deliveries WHERE id = $1 FOR UPDATE`, id).Scan(&rec); err != nil {
		return d, err
	}
	err := json.Unmarshal(rec, &d)
	return d, err
}

// FinishDelivery implements webhooks.Store.
func (s *Store) FinishDelivery(ctx context.Context, d webhooks.Delivery) (webhooks.Delivery, bool, error) {
	const op = "finish delivery"
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return webhooks.Delivery{}, false, s.fail(op, err)
	}
	defer tx.Rollback(ctx)
	cur, err := getDelivery(ctx, tx, d.ID)
	if errors.Is(err, pgx.ErrNoRows) {
		return webhooks.Delivery{}, false, nil
	}
	if err != nil {
		return webhooks.Delivery{}, false, s.fail(op, err)
	}
	if cur.Status != webhooks.StatusPending || cur.Attempts != d.Attempts {
		return webhooks.Delivery{}, false, nil
	}
	if cur.Redelivered == d.Redelivered {
		// Else a redelivery came during the attempt: it stays pending,
		// due when the redelivery made it due.
		cur.Status, cur.NextAttempt = d.Status, d.NextAttempt
	}
	cur.UpdatedAt, cur.LastCode, cur.LastError = d.UpdatedAt, d.LastCode, d.LastError
	cur.Owner, cur.LeaseUntil = "", time.Time{}
	if err := putDelivery(ctx, tx, cur); err != nil {
		return webhooks.Delivery{}, false, s.fail(op, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return webhooks.Delivery{}, false, s.fail(op, err)
	}
	return cur, true, nil
}

// Deliveries implements webhooks.Store.
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
	if f.Limit > 0 && len(ds) > f.Limit {
		return ds[:f.Limit], true, nil
	}
	return ds, false, nil
}

// deliveriesQuery is the statement of Deliveries: a tenant's deliveries
// in (pos, id) order, descending, read from webhook_deliveries_tenant,
// whose columns are that order. The cursor compares the whole key (a row
// comparison, which the index serves): every endpoint's delivery of an
// event has the event's pos, and comparing pos alone skipped the
// cursor's siblings.
func deliveriesQuery(f webhooks.DeliveryFilter) (string, []any) {
	q := `SELECT record FROM webhook_deliveries WHERE tenant = $1`
	args := []any{f.Tenant}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
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
		q += ` AND (pos, id) < (SELECT pos, id FROM webhook_deliveries WHERE id = ` + arg(f.After) + `)`
	}
	q += ` ORDER BY pos DESC, id DESC`
	if f.Limit > 0 {
		q += ` LIMIT ` + arg(f.Limit+1)
	}
	return q, args
}

// Redeliver implements webhooks.Store. A delivery in flight keeps its
// claim; its FinishDelivery sees Redelivered moved and keeps it pending.
func (s *Store) Redeliver(ctx context.Context, tenant, id string, now, deadline time.Time) (webhooks.Delivery, error) {
	const op = "redeliver"
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return webhooks.Delivery{}, s.fail(op, err)
	}
	defer tx.Rollback(ctx)
	d, err := getDelivery(ctx, tx, id)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && d.Tenant != tenant {
		return webhooks.Delivery{}, kindErr(op, orchestrator.KindNotFound, errors.New("no such delivery"))
	}
	if err != nil {
		return webhooks.Delivery{}, s.fail(op, err)
	}
	if d.Status != webhooks.StatusPending || !d.LeaseUntil.After(now) {
		d.Owner, d.LeaseUntil = "", time.Time{}
	}
	d.Status, d.NextAttempt, d.Deadline, d.Redelivered, d.UpdatedAt = webhooks.StatusPending, now, deadline, d.Attempts, now
	if err := putDelivery(ctx, tx, d); err != nil {
		return webhooks.Delivery{}, s.fail(op, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return webhooks.Delivery{}, s.fail(op, err)
	}
	return d, nil
}

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
// too.
const purgeDeliveriesSQL = `DELETE FROM webhook_deliveries WHERE id = ANY(ARRAY(SELECT id FROM webhook_deliveries
	WHERE status <> 'pending' AND finished_at < $1 ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED))`

// PurgeDeliveries implements webhooks.Store in statements (each its own
// transaction) of at most s.purgeBatch rows, as Purge deletes transfers.
func (s *Store) PurgeDeliveries(ctx context.Context, before time.Time, limit int) (int, error) {
	const op = "purge deliveries"
	total := 0
	for limit <= 0 || total < limit {
		n := s.purgeBatch
		if limit > 0 {
			n = min(n, limit-total)
		}
		tag, err := s.pool.Exec(ctx, purgeDeliveriesSQL, before, n)
		if err != nil {
			return total, s.fail(op, err)
		}
		total += int(tag.RowsAffected())
		if int(tag.RowsAffected()) < n {
			break
		}
	}
	return total, nil
}
