package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/orchestrator"
)

// The SQL spelling of orchestrator.State.Terminal. Queries repeat the
// indexes' predicates word for word so that the planner can use the
// partial indexes; a test checks both against orchestrator.States.
const (
	terminalList = `('cancelled', 'completed', 'failed')`
	nonTerminal  = `state NOT IN ` + terminalList
	terminal     = `state IN ` + terminalList
)

// activeCallIndex is the unique index that keeps one active transfer per
// call; its violations are ActiveTransferErrors.
const activeCallIndex = "transfers_active_call"

// columns are the values stored beside a transfer's JSON.
type columns struct {
	state, provider, callKey string
	record                   []byte
}

func encode(t *orchestrator.Transfer) (columns, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return columns{}, fmt.Errorf("encode record: %w", err)
	}
	return columns{state: string(t.State), provider: strings.ToLower(t.Request.Provider),
		callKey: orchestrator.CallKey(&t.Request), record: jsonbSafe(b)}, nil
}

func decode(record []byte) (*orchestrator.Transfer, error) {
	t := new(orchestrator.Transfer)
	if err := json.Unmarshal(record, t); err != nil {
		return nil, fmt.Errorf("decode record: %w", err)
	}
	return t, nil
}

// jsonbSafe replaces the escape \u0000 in JSON text by \ufffd: jsonb
// refuses U+0000, and a provider's evidence (kept verbatim) may contain
// it; refusing the save would stop the transfer mid-way. Outside strings
// JSON has no backslashes, and inside them every backslash starts an
// escape, so walking escape by escape finds exactly the real ones.
func jsonbSafe(b []byte) []byte {
	if !bytes.Contains(b, []byte(`\u0000`)) {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 >= len(b) {
			out = append(out, b[i])
			continue
		}
		if bytes.HasPrefix(b[i:], []byte(`\u0000`)) {
			out = append(out, `\ufffd`...)
			i += len(`\u0000`) - 1
			continue
		}
		out = append(out, b[i], b[i+1])
		i++
	}
	return out
}

// Create implements orchestrator.Store. The partial unique index on
// call_key decides which of concurrent Creates for one call wins, across
// replicas.
func (s *Store) Create(ctx context.Context, t *orchestrator.Transfer) error {
	op := "create " + t.ID
	c := t.Clone()
	c.Version = 1
	col, err := encode(c)
	if err != nil {
		return s.fail(op, err)
	}
	// The transfer holding the call may end between our failed insert and
	// the look-up of its id; then the insert is tried again.
	for range 3 {
		tag, err := s.pool.Exec(ctx, `INSERT INTO transfers
			(id, version, state, provider, call_key, owner, lease_expires, created_at, updated_at, record)
			VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING`,
			c.ID, col.state, col.provider, col.callKey, c.Owner, c.LeaseExpires, c.CreatedAt, c.UpdatedAt, col.record)
		if code, constraint := pgCode(err); code == uniqueViolation && constraint == activeCallIndex {
			id, err := s.activeID(ctx, col.callKey)
			if errors.Is(err, pgx.ErrNoRows) {
				continue
			}
			if err != nil {
				return s.fail(op, err)
			}
			return kindErr(op, orchestrator.KindConflict, &orchestrator.ActiveTransferError{ID: id})
		}
		if err != nil {
			return s.fail(op, err)
		}
		if tag.RowsAffected() == 0 {
			return kindErr(op, orchestrator.KindConflict, errors.New("a transfer with this id exists"))
		}
		t.Version = 1
		return nil
	}
	return s.fail(op, errors.New("the call's active transfer keeps changing"))
}

// activeID returns the id of the non-terminal transfer of callKey.
func (s *Store) activeID(ctx context.Context, callKey string) (string, error) {
	var id string
	err := s.pool.QueryRow(ctx, `SELECT id FROM transfers WHERE call_key = $1 AND `+nonTerminal, callKey).Scan(&id)
	return id, err
}

// Update implements orchestrator.Store: a compare-and-set on version.
func (s *Store) Update(ctx context.Context, t *orchestrator.Transfer) error {
	op := "update " + t.ID
	c := t.Clone()
	c.Version = t.Version + 1
	col, err := encode(c)
	if err != nil {
		return s.fail(op, err)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE transfers SET version = $1, state = $2, provider = $3, call_key = $4,
		owner = $5, lease_expires = $6, created_at = $7, updated_at = $8, record = $9
		WHERE id = $10 AND version = $11`,
		c.Version, col.state, col.provider, col.callKey, c.Owner, c.LeaseExpires, c.CreatedAt, c.UpdatedAt, col.record,
		t.ID, t.Version)
	if code, constraint := pgCode(err); code == uniqueViolation && constraint == activeCallIndex {
		// Only possible when a terminal transfer is made active again
		// while another one holds its call.
		if id, lerr := s.activeID(ctx, col.callKey); lerr == nil {
			return kindErr(op, orchestrator.KindConflict, &orchestrator.ActiveTransferError{ID: id})
		}
	}
	if err != nil {
		return s.fail(op, err)
	}
	if tag.RowsAffected() == 0 {
		var exists bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM transfers WHERE id = $1)`, t.ID).Scan(&exists); err != nil {
			return s.fail(op, err)
		}
		if !exists {
			return kindErr(op, orchestrator.KindNotFound, errNotFound)
		}
		return kindErr(op, orchestrator.KindConflict, orchestrator.ErrVersionConflict)
	}
	t.Version = c.Version
	return nil
}

// Get implements orchestrator.Store.
func (s *Store) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	op := "get " + id
	var rec []byte
	err := s.pool.QueryRow(ctx, `SELECT record FROM transfers WHERE id = $1`, id).Scan(&rec)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, kindErr(op, orchestrator.KindNotFound, errNotFound)
	}
	if err != nil {
		return nil, s.fail(op, err)
	}
	t, err := decode(rec)
	if err != nil {
		return nil, s.fail(op, err)
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
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.After != "" {
		where = append(where, "id < "+arg(f.After))
	}
	if len(f.States) > 0 {
		states := make([]string, len(f.States))
		for i, st := range f.States {
			states[i] = string(st)
		}
		where = append(where, "state = ANY ("+arg(states)+")")
	}
	if f.Provider != "" {
		where = append(where, "provider = "+arg(strings.ToLower(f.Provider)))
	}
	q := `SELECT record FROM transfers`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	// One more than asked tells whether more follow.
	q += ` ORDER BY id DESC LIMIT ` + arg(max(f.Limit, 0)+1)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, false, s.fail("list", err)
	}
	out, err := collect(rows)
	if err != nil {
		return nil, false, s.fail("list", err)
	}
	if len(out) > f.Limit {
		return out[:max(f.Limit, 0)], true, nil
	}
	return out, false, nil
}

// collect decodes the records of rows and closes them.
func collect(rows pgx.Rows) ([]*orchestrator.Transfer, error) {
	defer rows.Close()
	var out []*orchestrator.Transfer
	for rows.Next() {
		var rec []byte
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

// Acquire implements orchestrator.Store. FOR UPDATE SKIP LOCKED lets
// replicas claim at once without waiting on each other: a row another
// Acquire is claiming is skipped, and a row it claimed and committed is
// re-checked against the lease condition and no longer matches.
func (s *Store) Acquire(ctx context.Context, owner string, now time.Time, ttl time.Duration, limit int) ([]*orchestrator.Transfer, error) {
	const op = "acquire"
	if limit <= 0 {
		return nil, nil
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, s.fail(op, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	rows, err := tx.Query(ctx, `SELECT record FROM transfers
		WHERE `+nonTerminal+` AND (owner = '' OR lease_expires <= $1)
		ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED`, now, limit)
	if err != nil {
		return nil, s.fail(op, err)
	}
	claimed, err := collect(rows)
	if err != nil {
		return nil, s.fail(op, err)
	}
	for _, t := range claimed {
		t.Owner, t.LeaseExpires = owner, now.Add(ttl)
		t.Version++ // the previous owner's next Update fails
	}
	if err := saveLeases(ctx, tx, claimed, true); err != nil {
		return nil, s.fail(op, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, s.fail(op, err)
	}
	return claimed, nil
}

// Renew implements orchestrator.Store.
func (s *Store) Renew(ctx context.Context, owner string, ids []string, now time.Time, ttl time.Duration) ([]string, error) {
	const op = "renew"
	if len(ids) == 0 {
		return nil, nil
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, s.fail(op, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// Locks are taken in id order, as everywhere, so that two Renews
	// cannot deadlock.
	rows, err := tx.Query(ctx, `SELECT record FROM transfers
		WHERE id = ANY ($1) AND owner = $2 AND `+nonTerminal+` ORDER BY id FOR UPDATE`, ids, owner)
	if err != nil {
		return nil, s.fail(op, err)
	}
	held, err := collect(rows)
	if err != nil {
		return nil, s.fail(op, err)
	}
	kept := make(map[string]bool, len(held))
	for _, t := range held {
		t.LeaseExpires = now.Add(ttl)
		kept[t.ID] = true
	}
	if err := saveLeases(ctx, tx, held, false); err != nil {
		return nil, s.fail(op, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, s.fail(op, err)
	}
	var lost []string
	for _, id := range ids {
		if !kept[id] {
			lost = append(lost, id)
		}
	}
	return lost, nil
}

// saveLeases writes the leases (and, when claimed, owners and versions) of
// ts into their rows and their JSON, which stays the whole truth, in one
// round trip.
func saveLeases(ctx context.Context, tx pgx.Tx, ts []*orchestrator.Transfer, claimed bool) error {
	if len(ts) == 0 {
		return nil
	}
	var b pgx.Batch
	for _, t := range ts {
		col, err := encode(t)
		if err != nil {
			return err
		}
		if claimed {
			b.Queue(`UPDATE transfers SET version = $1, owner = $2, lease_expires = $3, record = $4 WHERE id = $5`,
				t.Version, t.Owner, t.LeaseExpires, col.record, t.ID)
		} else {
			b.Queue(`UPDATE transfers SET lease_expires = $1, record = $2 WHERE id = $3`, t.LeaseExpires, col.record, t.ID)
		}
	}
	return tx.SendBatch(ctx, &b).Close()
}

// PutSignal implements orchestrator.Store.
func (s *Store) PutSignal(ctx context.Context, id string, sig orchestrator.Signal) error {
	op := "put signal " + id
	tag, err := s.pool.Exec(ctx, `INSERT INTO signals (transfer_id, signal) VALUES ($1, $2)
		ON CONFLICT (transfer_id) DO NOTHING`, id, string(sig))
	if code, _ := pgCode(err); code == foreignKeyViolation {
		return kindErr(op, orchestrator.KindNotFound, errNotFound)
	}
	if err != nil {
		return s.fail(op, err)
	}
	if tag.RowsAffected() == 0 {
		return kindErr(op, orchestrator.KindConflict, errors.New("another signal is pending"))
	}
	return nil
}

// TakeSignal implements orchestrator.Store.
func (s *Store) TakeSignal(ctx context.Context, id string) (orchestrator.Signal, error) {
	var sig string
	err := s.pool.QueryRow(ctx, `DELETE FROM signals WHERE transfer_id = $1 RETURNING signal`, id).Scan(&sig)
	if errors.Is(err, pgx.ErrNoRows) {
		return orchestrator.SignalNone, nil
	}
	if err != nil {
		return orchestrator.SignalNone, s.fail("take signal "+id, err)
	}
	return orchestrator.Signal(sig), nil
}

// ReserveIdempotency implements orchestrator.Store. Of concurrent inserts
// of one key PostgreSQL lets one through and makes the others wait for it
// and then do nothing; they read the winner's record.
func (s *Store) ReserveIdempotency(ctx context.Context, rec orchestrator.IdempotencyRecord) (orchestrator.IdempotencyRecord, bool, error) {
	const op = "reserve idempotency key"
	var (
		status   *int
		location string
		body     []byte
	)
	if r := rec.Response; r != nil {
		status, location, body = &r.Status, r.Location, r.Body
	}
	// The record may be deleted between our insert and our read; then
	// the key is free again and the insert is tried again.
	for range 3 {
		tag, err := s.pool.Exec(ctx, `INSERT INTO idempotency (scope, key, request_hash, created_at, status, location, body)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (scope, key) DO NOTHING`,
			rec.Scope, rec.Key, rec.RequestHash, rec.CreatedAt, status, location, body)
		if err != nil {
			return rec, false, s.fail(op, err)
		}
		if tag.RowsAffected() == 1 {
			return rec, true, nil
		}
		cur := orchestrator.IdempotencyRecord{Scope: rec.Scope, Key: rec.Key}
		var (
			curStatus   *int
			curLocation string
			curBody     []byte
		)
		err = s.pool.QueryRow(ctx, `SELECT request_hash, created_at, status, location, body FROM idempotency
			WHERE scope = $1 AND key = $2`, rec.Scope, rec.Key).Scan(&cur.RequestHash, &cur.CreatedAt, &curStatus, &curLocation, &curBody)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return rec, false, s.fail(op, err)
		}
		if curStatus != nil {
			cur.Response = &orchestrator.IdempotentResponse{Status: *curStatus, Location: curLocation, Body: curBody}
		}
		return cur, false, nil
	}
	return rec, false, s.fail(op, errors.New("the key keeps being deleted"))
}

// CompleteIdempotency implements orchestrator.Store.
func (s *Store) CompleteIdempotency(ctx context.Context, scope, key string, resp orchestrator.IdempotentResponse) error {
	const op = "complete idempotency key"
	tag, err := s.pool.Exec(ctx, `UPDATE idempotency SET status = $1, location = $2, body = $3 WHERE scope = $4 AND key = $5`,
		resp.Status, resp.Location, resp.Body, scope, key)
	if err != nil {
		return s.fail(op, err)
	}
	if tag.RowsAffected() == 0 {
		return kindErr(op, orchestrator.KindNotFound, errors.New("no such idempotency key"))
	}
	return nil
}

// DeleteIdempotency implements orchestrator.Store.
func (s *Store) DeleteIdempotency(ctx context.Context, scope, key string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM idempotency WHERE scope = $1 AND key = $2`, scope, key); err != nil {
		return s.fail("delete idempotency key", err)
	}
	return nil
}

// Purge implements orchestrator.Store. Signals go with their transfers
// through the foreign key's ON DELETE CASCADE.
func (s *Store) Purge(ctx context.Context, before time.Time) (int, error) {
	const op = "purge"
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, s.fail(op, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	tag, err := tx.Exec(ctx, `DELETE FROM transfers WHERE `+terminal+` AND updated_at < $1`, before)
	if err != nil {
		return 0, s.fail(op, err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM idempotency WHERE created_at < $1`, before); err != nil {
		return 0, s.fail(op, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, s.fail(op, err)
	}
	return int(tag.RowsAffected()), nil
}
