package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// The SQL spelling of orchestrator.State.Terminal. Queries repeat the
// indexes' predicates word for word so that SQLite uses the partial
// indexes; a test checks both against orchestrator.States.
const (
	terminalList = `('cancelled', 'completed', 'failed')`
	nonTerminal  = `state NOT IN ` + terminalList
	terminal     = `state IN ` + terminalList
)

// columns are the values stored beside a transfer's JSON.
type columns struct {
	state, provider, callKey, owner, lease, created, updated, record string
}

func encode(t *orchestrator.Transfer) (columns, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return columns{}, fmt.Errorf("encode record: %w", err)
	}
	return columns{
		state: string(t.State), provider: strings.ToLower(t.Request.Provider), callKey: orchestrator.CallKey(&t.Request),
		owner: t.Owner, lease: ts(t.LeaseExpires), created: ts(t.CreatedAt), updated: ts(t.UpdatedAt), record: string(b),
	}, nil
}

func decode(record string) (*orchestrator.Transfer, error) {
	t := new(orchestrator.Transfer)
	if err := json.Unmarshal([]byte(record), t); err != nil {
		return nil, fmt.Errorf("decode record: %w", err)
	}
	return t, nil
}

// Create implements orchestrator.Store. The partial unique index on
// call_key decides which of two concurrent Creates for one call wins.
func (s *Store) Create(ctx context.Context, t *orchestrator.Transfer) error {
	op := "create " + t.ID
	c := t.Clone()
	c.Version = 1
	col, err := encode(c)
	if err != nil {
		return fail(op, err)
	}
	// The transfer holding the call may end between our failed insert and
	// the look-up of its id; then the insert is tried again.
	for range 3 {
		res, err := s.w.ExecContext(ctx, `INSERT INTO transfers
			(id, version, state, provider, call_key, owner, lease_expires, created_at, updated_at, record)
			VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			c.ID, col.state, col.provider, col.callKey, col.owner, col.lease, col.created, col.updated, col.record)
		if isUnique(err) {
			id, err := s.activeID(ctx, col.callKey)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
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
		t.Version = 1
		return nil
	}
	return fail(op, errors.New("the call's active transfer keeps changing"))
}

// activeID returns the id of the non-terminal transfer of callKey.
func (s *Store) activeID(ctx context.Context, callKey string) (string, error) {
	var id string
	err := s.w.QueryRowContext(ctx, `SELECT id FROM transfers WHERE call_key = ? AND `+nonTerminal, callKey).Scan(&id)
	return id, err
}

// Update implements orchestrator.Store: a compare-and-set on version. The
// save is handed to the group committer (commit.go), which writes the
// saves of concurrent transfers in one durable transaction.
func (s *Store) Update(ctx context.Context, t *orchestrator.Transfer) error {
	op := "update " + t.ID
	c := t.Clone()
	c.Version = t.Version + 1
	col, err := encode(c)
	if err != nil {
		return fail(op, err)
	}
	req := &updateReq{id: t.ID, version: t.Version, next: c.Version, col: col, done: make(chan error, 1)}
	select {
	case s.updates <- req:
	case <-s.quit:
		return fail(op, errClosed)
	case <-ctx.Done():
		return fail(op, ctx.Err())
	}
	// Once handed over, the save happens or fails as a whole with its
	// batch: wait for the verdict even if ctx ends, or the caller could
	// not know whether its record was saved.
	if err := <-req.done; err != nil {
		return err
	}
	t.Version = c.Version
	return nil
}

const updateSQL = `UPDATE transfers SET version = ?, state = ?, provider = ?, call_key = ?,
		owner = ?, lease_expires = ?, created_at = ?, updated_at = ?, record = ?
		WHERE id = ? AND version = ?`

// Get implements orchestrator.Store.
func (s *Store) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	op := "get " + id
	var rec string
	err := s.r.QueryRowContext(ctx, `SELECT record FROM transfers WHERE id = ?`, id).Scan(&rec)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, kindErr(op, orchestrator.KindNotFound, errNotFound)
	}
	if err != nil {
		return nil, fail(op, err)
	}
	t, err := decode(rec)
	if err != nil {
		return nil, fail(op, err)
	}
	return t, nil
}

// List implements orchestrator.Store. Ids sort by creation, so newest
// first is id order descending and the cursor is an id.
func (s *Store) List(ctx context.Context, f orchestrator.ListFilter) ([]*orchestrator.Transfer, bool, error) {
	var (
		where []string
		args  []any
	)
	if f.After != "" {
		where = append(where, "id < ?")
		args = append(args, f.After)
	}
	if len(f.States) > 0 {
		where = append(where, "state IN (?"+strings.Repeat(", ?", len(f.States)-1)+")")
		for _, st := range f.States {
			args = append(args, string(st))
		}
	}
	if f.Provider != "" {
		where = append(where, "provider = ?")
		args = append(args, strings.ToLower(f.Provider))
	}
	q := `SELECT record FROM transfers`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	// One more than asked tells whether more follow.
	q += ` ORDER BY id DESC LIMIT ?`
	args = append(args, max(f.Limit, 0)+1)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, false, fail("list", err)
	}
	defer rows.Close()
	var out []*orchestrator.Transfer
	for rows.Next() {
		var rec string
		if err := rows.Scan(&rec); err != nil {
			return nil, false, fail("list", err)
		}
		t, err := decode(rec)
		if err != nil {
			return nil, false, fail("list", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fail("list", err)
	}
	if len(out) > f.Limit {
		return out[:max(f.Limit, 0)], true, nil
	}
	return out, false, nil
}

// Acquire implements orchestrator.Store. The single writer connection
// makes the select-then-update one atomic step: two Acquires run one after
// the other and the second sees the first's leases.
func (s *Store) Acquire(ctx context.Context, owner string, now time.Time, ttl time.Duration, limit int) ([]*orchestrator.Transfer, error) {
	const op = "acquire"
	if limit <= 0 {
		return nil, nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fail(op, err)
	}
	defer tx.Rollback()
	claimed, err := selectRecords(ctx, tx, `SELECT record FROM transfers
		WHERE `+nonTerminal+` AND (owner = '' OR lease_expires <= ?) ORDER BY id LIMIT ?`, ts(now), limit)
	if err != nil {
		return nil, fail(op, err)
	}
	for _, t := range claimed {
		t.Owner, t.LeaseExpires = owner, now.Add(ttl)
		t.Version++ // the previous owner's next Update fails
		if err := saveLease(ctx, tx, t, true); err != nil {
			return nil, fail(op+" "+t.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fail(op, err)
	}
	return claimed, nil
}

// Renew implements orchestrator.Store.
func (s *Store) Renew(ctx context.Context, owner string, ids []string, now time.Time, ttl time.Duration) ([]string, error) {
	const op = "renew"
	if len(ids) == 0 {
		return nil, nil
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, fail(op, err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fail(op, err)
	}
	defer tx.Rollback()
	held, err := selectRecords(ctx, tx, `SELECT record FROM transfers
		WHERE id IN (SELECT value FROM json_each(?)) AND owner = ? AND `+nonTerminal, string(list), owner)
	if err != nil {
		return nil, fail(op, err)
	}
	kept := make(map[string]bool, len(held))
	for _, t := range held {
		t.LeaseExpires = now.Add(ttl)
		if err := saveLease(ctx, tx, t, false); err != nil {
			return nil, fail(op+" "+t.ID, err)
		}
		kept[t.ID] = true
	}
	if err := tx.Commit(); err != nil {
		return nil, fail(op, err)
	}
	var lost []string
	for _, id := range ids {
		if !kept[id] {
			lost = append(lost, id)
		}
	}
	return lost, nil
}

func selectRecords(ctx context.Context, tx *sql.Tx, q string, args ...any) ([]*orchestrator.Transfer, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*orchestrator.Transfer
	for rows.Next() {
		var rec string
		if err := rows.Scan(&rec); err != nil {
			return nil, err
		}
		t, err := decode(rec)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// saveLease writes t's lease (and, when claimed, its owner and version)
// into the row and its JSON, which stays the whole truth.
func saveLease(ctx context.Context, tx *sql.Tx, t *orchestrator.Transfer, claimed bool) error {
	col, err := encode(t)
	if err != nil {
		return err
	}
	if claimed {
		_, err = tx.ExecContext(ctx, `UPDATE transfers SET version = ?, owner = ?, lease_expires = ?, record = ? WHERE id = ?`,
			t.Version, col.owner, col.lease, col.record, t.ID)
	} else {
		_, err = tx.ExecContext(ctx, `UPDATE transfers SET lease_expires = ?, record = ? WHERE id = ?`,
			col.lease, col.record, t.ID)
	}
	return err
}

// PutSignal implements orchestrator.Store.
func (s *Store) PutSignal(ctx context.Context, id string, sig orchestrator.Signal) error {
	op := "put signal " + id
	res, err := s.w.ExecContext(ctx, `INSERT INTO signals (transfer_id, signal) VALUES (?, ?)
		ON CONFLICT (transfer_id) DO NOTHING`, id, string(sig))
	if isForeignKey(err) {
		return kindErr(op, orchestrator.KindNotFound, errNotFound)
	}
	if err != nil {
		return fail(op, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fail(op, err)
	} else if n == 0 {
		return kindErr(op, orchestrator.KindConflict, errors.New("another signal is pending"))
	}
	return nil
}

// TakeSignal implements orchestrator.Store.
func (s *Store) TakeSignal(ctx context.Context, id string) (orchestrator.Signal, error) {
	// Runners ask at every step and poll, and almost always there is no
	// signal: a read on a reader connection answers that without a durable
	// write transaction. Only the writer deletes, so a signal found here
	// is still there for the DELETE below (or taken by a concurrent
	// TakeSignal, which the DELETE's RETURNING reports).
	var pending int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM signals WHERE transfer_id = ?`, id).Scan(&pending); err != nil {
		return orchestrator.SignalNone, fail("take signal "+id, err)
	}
	if pending == 0 {
		return orchestrator.SignalNone, nil
	}
	var sig string
	err := s.w.QueryRowContext(ctx, `DELETE FROM signals WHERE transfer_id = ? RETURNING signal`, id).Scan(&sig)
	if errors.Is(err, sql.ErrNoRows) {
		return orchestrator.SignalNone, nil
	}
	if err != nil {
		return orchestrator.SignalNone, fail("take signal "+id, err)
	}
	return orchestrator.Signal(sig), nil
}

// ReserveIdempotency implements orchestrator.Store: insert-or-read in one
// transaction on the writer, so exactly one of concurrent callers inserts.
func (s *Store) ReserveIdempotency(ctx context.Context, rec orchestrator.IdempotencyRecord) (orchestrator.IdempotencyRecord, bool, error) {
	const op = "reserve idempotency key"
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return rec, false, fail(op, err)
	}
	defer tx.Rollback()
	var (
		status   sql.NullInt64
		location string
		body     []byte
	)
	if r := rec.Response; r != nil {
		status, location, body = sql.NullInt64{Int64: int64(r.Status), Valid: true}, r.Location, r.Body
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO idempotency (scope, key, request_hash, created_at, status, location, body)
		VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope, key) DO NOTHING`,
		rec.Scope, rec.Key, rec.RequestHash, ts(rec.CreatedAt), status, location, body)
	if err != nil {
		return rec, false, fail(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return rec, false, fail(op, err)
	}
	if n == 1 {
		if err := tx.Commit(); err != nil {
			return rec, false, fail(op, err)
		}
		return rec, true, nil
	}
	cur := orchestrator.IdempotencyRecord{Scope: rec.Scope, Key: rec.Key}
	var created string
	if err := tx.QueryRowContext(ctx, `SELECT request_hash, created_at, status, location, body FROM idempotency
		WHERE scope = ? AND key = ?`, rec.Scope, rec.Key).Scan(&cur.RequestHash, &created, &status, &location, &body); err != nil {
		return rec, false, fail(op, err)
	}
	if cur.CreatedAt, err = parseTS(created); err != nil {
		return rec, false, fail(op, err)
	}
	if status.Valid {
		cur.Response = &orchestrator.IdempotentResponse{Status: int(status.Int64), Location: location, Body: body}
	}
	return cur, false, tx.Commit()
}

// CompleteIdempotency implements orchestrator.Store.
func (s *Store) CompleteIdempotency(ctx context.Context, scope, key string, resp orchestrator.IdempotentResponse) error {
	const op = "complete idempotency key"
	res, err := s.w.ExecContext(ctx, `UPDATE idempotency SET status = ?, location = ?, body = ? WHERE scope = ? AND key = ?`,
		resp.Status, resp.Location, resp.Body, scope, key)
	if err != nil {
		return fail(op, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fail(op, err)
	} else if n == 0 {
		return kindErr(op, orchestrator.KindNotFound, errors.New("no such idempotency key"))
	}
	return nil
}

// DeleteIdempotency implements orchestrator.Store.
func (s *Store) DeleteIdempotency(ctx context.Context, scope, key string) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM idempotency WHERE scope = ? AND key = ?`, scope, key); err != nil {
		return fail("delete idempotency key", err)
	}
	return nil
}

// Purge implements orchestrator.Store. Signals go with their transfers
// through the foreign key's ON DELETE CASCADE.
func (s *Store) Purge(ctx context.Context, before time.Time) (int, error) {
	const op = "purge"
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fail(op, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM transfers WHERE `+terminal+` AND updated_at < ?`, ts(before))
	if err != nil {
		return 0, fail(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fail(op, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM idempotency WHERE created_at < ?`, ts(before)); err != nil {
		return 0, fail(op, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fail(op, err)
	}
	return int(n), nil
}
