package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/record"
)

// The SQL spelling of orchestrator.State.Terminal. Queries repeat the
// indexes' predicates word for word so that SQLite uses the partial
// indexes; a test checks both against orchestrator.States. nonTerminal is
// comparisons, not NOT IN the list: see migration 6.
const (
	terminalList = `('cancelled', 'completed', 'failed')`
	nonTerminal  = `state <> 'cancelled' AND state <> 'completed' AND state <> 'failed'`
	terminal     = `state IN ` + terminalList
	// ended is terminal as comparisons, for a predicate a save evaluates.
	ended = `(state = 'cancelled' OR state = 'completed' OR state = 'failed')`
)

// columns are the values stored beside a transfer's JSON.
type columns struct {
	state, provider, callKey, owner, created, updated, record string
	open                                                      bool // Transfer.Open
	// Copied from the request, which never changes after Create: only
	// Create writes them.
	tenant, externalID, domain, user, callID, target string
	events                                           []eventRow // Transfer.Outbox
}

// eventRow is one event of a save, as the events table holds it.
type eventRow struct {
	id, tenant, transferID, typ, at, from, to string
	seq                                       int64
}

// tenantOf is the tenant of a record: records older than tenants belong
// to the default one.
func tenantOf(t *orchestrator.Transfer) string {
	if t.Tenant == "" {
		return orchestrator.DefaultTenant
	}
	return t.Tenant
}

func encode(t *orchestrator.Transfer) (columns, error) {
	rec, err := record.EncodeString(t)
	if err != nil {
		return columns{}, err
	}
	r := &t.Request
	c := columns{
		state: string(t.State), provider: strings.ToLower(r.Provider), callKey: orchestrator.TenantCallKey(t),
		owner: t.Owner, created: ts(t.CreatedAt), updated: ts(t.UpdatedAt), record: rec, open: t.Open(),
		tenant: tenantOf(t), externalID: r.ExternalID, domain: strings.ToLower(r.Call.Domain), user: strings.ToLower(r.Call.User),
		callID: r.Call.CallID, target: r.Target,
	}
	for _, ev := range t.Outbox {
		c.events = append(c.events, eventRow{id: ev.ID, tenant: ev.Tenant, transferID: ev.TransferID, typ: string(ev.Type),
			at: ts(ev.At), from: string(ev.From), to: string(ev.To), seq: ev.Seq})
	}
	return c, nil
}

func decode(rec string) (*orchestrator.Transfer, error) {
	return record.Decode([]byte(rec))
}

const insertEventSQL = `INSERT INTO events (id, tenant, transfer_id, seq, type, at, from_state, to_state, snapshot)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`

// writeEvents writes the outbox of a save in its transaction, each event
// with the record as saved.
func writeEvents(ctx context.Context, st *batchStmts, c *columns) error {
	for _, ev := range c.events {
		if st.fault != nil {
			if err := st.fault(ev.id); err != nil {
				return fmt.Errorf("write event %s: %w", ev.id, err)
			}
		}
		if _, err := st.insertEvent.ExecContext(ctx, ev.id, ev.tenant, ev.transferID, ev.seq, ev.typ, ev.at, ev.from, ev.to, c.record); err != nil {
			return fmt.Errorf("write event %s: %w", ev.id, err)
		}
	}
	return nil
}

// Create implements orchestrator.Store. The transfer, its events and the
// link from its idempotency reservation are one savepoint of a group
// commit (commit.go): a reservation is linked, and an event exists,
// exactly when the transfer does.
func (s *Store) Create(ctx context.Context, t *orchestrator.Transfer) error {
	req, err := createReq(t)
	if err != nil {
		return err
	}
	if err := s.commit(ctx, req); err != nil {
		return err
	}
	t.Version = 1
	return nil
}

// createReq is the committer's request of a Create of t.
func createReq(t *orchestrator.Transfer) (*updateReq, error) {
	// A shallow copy carries the next version into the encoding: the
	// record is only read, and the caller holds it until the verdict, so
	// the deep clone a save used to pay is not needed.
	cp := *t
	c := &cp
	c.Version = 1
	col, err := encode(c)
	if err != nil {
		return nil, fail("create "+t.ID, err)
	}
	req := &updateReq{id: t.ID, create: true, next: 1, col: col, token: t.Token, done: make(chan error, 1)}
	if c.IdempotencyKey != "" {
		req.idemScope, req.idemKey = c.IdempotencyScope, c.IdempotencyKey
		if !c.IdempotencyReservedAt.IsZero() {
			req.idemHeld = sql.NullString{String: ts(c.IdempotencyReservedAt), Valid: true}
		}
	}
	return req, nil
}

// insertSQL is Create's insert, prepared once. A second create of one id
// inserts nothing (and is refused); a second active transfer of one call
// violates the partial unique index on call_key.
const insertSQL = `INSERT INTO transfers
		(id, version, state, provider, call_key, owner, open, created_at, updated_at, record,
		 tenant, external_id, call_domain, call_user, call_id, target)
		VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`

// holdingSQL finds the call's transfers that hold it
// (Transfer.HoldsCall, which the conformance suite holds it to): its
// active one, and the newest (by id) of its ended transfers that owe it
// its end state. Any of those, not only the call's newest transfer: ids
// begin with the clock of the process that made them, which may be
// stepped back, or be another replica's. It reads the call's entry in
// transfers_active_call and its ended transfers that are still open
// (transfers_owing_call, schema 15). Create reads it in its transaction.
// IS, not =: a record saved before cleanups existed has no Cleanup, whose
// json_type is NULL.
const holdingSQL = `SELECT (SELECT id FROM transfers WHERE call_key = ?1 AND ` + nonTerminal + `),
	(SELECT id FROM transfers WHERE call_key = ?1 AND open = 1 AND ` + ended + `
		AND json_type(record, '$.Cleanup') IS 'object' AND json_extract(record, '$.Outcome.verified') IS NOT 1
		ORDER BY id DESC LIMIT 1)`

// linkIdemSQL links an idempotency reservation to the transfer it created:
// the reservation the create holds (its created_at, the fourth argument,
// repeated), only while it is pending and unlinked; any reservation of the
// key when the create names none (NULL).
const linkIdemSQL = `UPDATE idempotency SET transfer_id = ? WHERE scope = ? AND key = ?
	AND (? IS NULL OR (created_at = ? AND transfer_id IS NULL AND status IS NULL))`

// Update implements orchestrator.Store: a compare-and-set on version. The
// save goes through the group commit (commit.go), which writes the saves
// of concurrent transfers in one durable transaction.
func (s *Store) Update(ctx context.Context, t *orchestrator.Transfer) error {
	req, err := updateReqOf(t)
	if err != nil {
		return err
	}
	if err := s.commit(ctx, req); err != nil {
		return err
	}
	t.Version = req.next
	if req.look {
		t.SignalLooked, t.PendingSignal = true, req.found
	}
	return nil
}

// updateReqOf is the committer's request of an Update of t.
func updateReqOf(t *orchestrator.Transfer) (*updateReq, error) {
	// A shallow copy carries the next version into the encoding: the
	// record is only read, and the caller holds it until the verdict, so
	// the deep clone a save used to pay is not needed.
	cp := *t
	c := &cp
	c.Version = t.Version + 1
	col, err := encode(c)
	if err != nil {
		return nil, fail("update "+t.ID, err)
	}
	return &updateReq{id: t.ID, version: t.Version, next: c.Version, col: col, token: t.Token, done: make(chan error, 1),
		look: t.LookForSignal}, nil
}

// tokenOfSQL reads the token of a replica's heartbeat (tokenFreeIn).
const tokenOfSQL = `SELECT token FROM replicas WHERE name = ?`

// lookSignalSQL reads a transfer's pending signal in a save's transaction.
const lookSignalSQL = `SELECT signal FROM signals WHERE transfer_id = ?`

// updateSQL writes what a transition may change. The request's columns
// (provider, call_key, tenant, the call, target, external_id) and
// created_at are Create's alone: SQLite rewrites an index only when the
// UPDATE names one of its columns, so a save touches the state and
// ownership indexes and leaves the list indexes alone.
const updateSQL = `UPDATE transfers SET version = ?, state = ?, owner = ?, open = ?, updated_at = ?, record = ?
		WHERE id = ? AND version = ?`

// Get implements orchestrator.Store.
func (s *Store) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	op := "get " + id
	var rec string
	err := s.reads.queryRow(ctx, `SELECT record FROM transfers WHERE id = ?`, id).Scan(&rec)
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

// listQuery is the statement of List: every filter but the states is a
// condition; one state is one more. Several states are read as one
// branch per state, each in id order from the state index and bounded
// by the page size, and their ids merged: an IN list would make SQLite
// read every row of the states and sort them.
func listQuery(f orchestrator.ListFilter) (string, []any) {
	var (
		where []string
		args  []any
	)
	cond := func(c string, v any) {
		where = append(where, c)
		args = append(args, v)
	}
	if f.Tenant != "" {
		cond("tenant = ?", f.Tenant)
	}
	if f.After != "" {
		cond("id < ?", f.After)
	}
	if f.Provider != "" {
		cond("provider = ?", strings.ToLower(f.Provider))
	}
	if f.ExternalID != "" {
		cond("external_id = ?", f.ExternalID)
	}
	if f.Domain != "" {
		cond("call_domain = ?", strings.ToLower(f.Domain))
	}
	if f.User != "" {
		cond("call_user = ?", strings.ToLower(f.User))
	}
	if f.CallID != "" {
		cond("call_id = ?", f.CallID)
	}
	if f.Target != "" {
		cond("target = ?", f.Target)
	}
	after, before := f.CreatedBounds()
	if !after.IsZero() {
		cond("created_at >= ?", ts(after))
	}
	if !before.IsZero() {
		cond("created_at < ?", ts(before))
	}
	// One more than asked tells whether more follow.
	n := max(f.Limit, 0) + 1
	states := slices.Compact(slices.Sorted(slices.Values(f.States)))
	if len(states) <= 1 {
		if len(states) == 1 {
			cond("state = ?", string(states[0]))
		}
		q := `SELECT record FROM transfers`
		if len(where) > 0 {
			q += ` WHERE ` + strings.Join(where, " AND ")
		}
		return q + ` ORDER BY id DESC ` + limitArg, append(args, n)
	}
	where = append(where, "state = ?")
	branch := `SELECT * FROM (SELECT id FROM transfers WHERE ` + strings.Join(where, " AND ") + ` ORDER BY id DESC ` + limitArg + `)`
	var (
		branches []string
		all      []any
	)
	for _, st := range states {
		branches = append(branches, branch)
		all = append(all, args...)
		all = append(all, string(st), n)
	}
	return `SELECT record FROM transfers WHERE id IN (` + strings.Join(branches, " UNION ALL ") + `)
		ORDER BY id DESC ` + limitArg, append(all, n)
}

// List implements orchestrator.Store. Ids sort by creation, so newest
// first is id order descending and the cursor is an id.
func (s *Store) List(ctx context.Context, f orchestrator.ListFilter) ([]*orchestrator.Transfer, bool, error) {
	q, args := listQuery(f)
	rows, err := s.reads.query(ctx, q, args...)
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

// eventsQuery is the statement of Events: served by events_transfer for
// one transfer, by events_tenant otherwise.
func eventsQuery(f orchestrator.EventFilter) (string, []any) {
	q := `SELECT pos, id, tenant, transfer_id, seq, type, at, from_state, to_state, snapshot FROM events
		WHERE tenant = ? AND pos > ?`
	args := []any{f.Tenant, max(f.After, 0)}
	if f.TransferID != "" {
		q += ` AND transfer_id = ?`
		args = append(args, f.TransferID)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = -1 // SQLite: no bound
	}
	return q + ` ORDER BY pos ` + limitArg, append(args, limit)
}

// Events implements orchestrator.Store.
func (s *Store) Events(ctx context.Context, f orchestrator.EventFilter) ([]orchestrator.Event, error) {
	const op = "events"
	q, args := eventsQuery(f)
	rows, err := s.reads.query(ctx, q, args...)
	if err != nil {
		return nil, fail(op, err)
	}
	defer rows.Close()
	var out []orchestrator.Event
	for rows.Next() {
		var (
			ev             orchestrator.Event
			typ, at        string
			from, to, snap string
		)
		if err := rows.Scan(&ev.Pos, &ev.ID, &ev.Tenant, &ev.TransferID, &ev.Seq, &typ, &at, &from, &to, &snap); err != nil {
			return nil, fail(op, err)
		}
		ev.Type, ev.From, ev.To = orchestrator.EventType(typ), orchestrator.State(from), orchestrator.State(to)
		if ev.At, err = parseTS(at); err != nil {
			return nil, fail(op, err)
		}
		if ev.Transfer, err = decode(snap); err != nil {
			return nil, fail(op, err)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(op, err)
	}
	return out, nil
}

// lastEventQuery is the statement of LastEventPos: the last entry of
// events_tenant, or of events_transfer for one transfer. The tenant is
// compared there too, so that an id another tenant names has no events.
func lastEventQuery(f orchestrator.EventFilter) (string, []any) {
	if f.TransferID != "" {
		return `SELECT pos FROM events WHERE transfer_id = ? AND tenant = ? ORDER BY pos DESC LIMIT 1`, []any{f.TransferID, f.Tenant}
	}
	return `SELECT pos FROM events WHERE tenant = ? ORDER BY pos DESC LIMIT 1`, []any{f.Tenant}
}

// LastEventPos implements orchestrator.EventStore.
func (s *Store) LastEventPos(ctx context.Context, f orchestrator.EventFilter) (int64, error) {
	q, args := lastEventQuery(f)
	var pos int64
	switch err := s.reads.queryRow(ctx, q, args...).Scan(&pos); {
	case errors.Is(err, sql.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, fail("last event", err)
	}
	return pos, nil
}

// Heartbeat implements orchestrator.Store.
func (s *Store) Heartbeat(ctx context.Context, owner, token string, now time.Time, ttl time.Duration, take bool) (bool, error) {
	const op = "heartbeat"
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, fail(op, err)
	}
	defer tx.Rollback()
	var (
		live bool
		prev string
	)
	err = tx.QueryRowContext(ctx, `SELECT expires > ?, token FROM replicas WHERE name = ?`, ts(now), owner).Scan(&live, &prev)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, fail(op, err)
	}
	if !take && live && prev != "" && prev != token {
		return false, orchestrator.ErrSuperseded
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO replicas (name, expires, token) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET expires = excluded.expires, token = excluded.token`, owner, ts(now.Add(ttl)), token); err != nil {
		return false, fail(op, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fail(op, err)
	}
	return !live, nil
}

// Release implements orchestrator.Store. The heartbeat written last
// holds ts(last), the same text for the same time.
func (s *Store) Release(ctx context.Context, owner, token string, last, at time.Time) error {
	if _, err := s.w.ExecContext(ctx, `UPDATE replicas SET expires = ? WHERE name = ? AND token = ? AND expires = ?`, ts(at), owner, token, ts(last)); err != nil {
		return fail("release", err)
	}
	return nil
}

// Peers implements orchestrator.Store. One transferd serves a data
// directory, so a peer here is the heartbeat of an earlier process under
// another name that has not run out yet: it takes nothing, and the
// engine's hand-over finds that out and gives the transfers back.
func (s *Store) Peers(ctx context.Context, owner string, now time.Time) (int, error) {
	var n int
	if err := s.reads.queryRow(ctx, `SELECT count(*) FROM replicas WHERE name <> ? AND expires > ?`, owner, ts(now)).Scan(&n); err != nil {
		return 0, fail("peers", err)
	}
	return n, nil
}

// tokenHeldSQL is true unless a claim made with a token (its two
// parameters: the token, the claimer's name, the token again) is under a
// name whose heartbeat holds another process's (Store.Claim): no token
// checks nothing, and a name with no heartbeat, or one without a token
// (an older version's), is no other process's.
const tokenHeldSQL = `(? = '' OR NOT EXISTS (SELECT 1 FROM replicas WHERE name = ? AND token NOT IN ('', ?)))`

// deadOwner is the SQL condition "the row's owner column names no replica
// with a live heartbeat at ?". The subquery is not correlated, so SQLite
// lists the live replicas once per statement, not once per row.
func deadOwner(column string) string {
	return column + ` NOT IN (SELECT name FROM replicas WHERE expires > ?)`
}

// Claim implements orchestrator.Store. The single writer connection makes
// the select-then-update one atomic step: two Claims run one after the
// other and the second sees the first's owners.
func (s *Store) Claim(ctx context.Context, owner, token string, now time.Time, own bool, limit int) ([]*orchestrator.Transfer, error) {
	const op = "claim"
	if limit <= 0 {
		limit = -1 // SQLite: no bound
	}
	// Never the claimer's own unless it asks for them (own), even when its
	// heartbeat lapsed: it drives them, and a claim would make it lose them.
	claimable := `open = 1 AND (owner = '' OR (? AND owner = ?) OR (owner <> ? AND ` + deadOwner("owner") + `))`
	// Every replica claims periodically and almost always finds nothing:
	// a reader answers that without queueing behind the writer's saves.
	// Should a transfer become claimable right after this read, the next
	// Claim takes it. The same read looks at the name's token; a refusal
	// it sees is made in the writer's transaction (a heartbeat may have
	// taken the run-out name back since).
	var (
		found int
		held  bool
	)
	err := s.reads.queryRow(ctx, `SELECT (SELECT count(*) FROM (SELECT 1 FROM transfers WHERE `+claimable+` LIMIT 1)),
		`+tokenHeldSQL, own, owner, owner, ts(now), token, owner, token).Scan(&found, &held)
	if err != nil {
		return nil, fail(op, err)
	}
	if found == 0 && held {
		return nil, nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fail(op, err)
	}
	defer tx.Rollback()
	// The writer's transaction orders this look with the heartbeats'
	// writes, as tokenFreeIn does a save's.
	if err := tx.QueryRowContext(ctx, `SELECT `+tokenHeldSQL, token, owner, token).Scan(&held); err != nil {
		return nil, fail(op, err)
	}
	if !held {
		return nil, kindErr(op, orchestrator.KindConflict, orchestrator.ErrSuperseded)
	}
	if found == 0 {
		return nil, nil
	}
	claimed, err := selectRecords(ctx, tx, `SELECT record FROM transfers WHERE `+claimable+` ORDER BY id `+limitArg,
		own, owner, owner, ts(now), limit)
	if err != nil {
		return nil, fail(op, err)
	}
	for _, t := range claimed {
		// The record's owner is the column's (every write sets both),
		// read under the claim's lock.
		t.Unowned = t.Owner == ""
		t.Owner = owner
		t.Version++ // the previous owner's next Update fails
		col, err := encode(t)
		if err != nil {
			return nil, fail(op+" "+t.ID, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE transfers SET version = ?, owner = ?, record = ? WHERE id = ?`,
			t.Version, col.owner, col.record, t.ID); err != nil {
			return nil, fail(op+" "+t.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fail(op, err)
	}
	return claimed, nil
}

// Owned implements orchestrator.Store: the partial index
// transfers_open_owner serves it.
func (s *Store) Owned(ctx context.Context, owner string) ([]string, error) {
	return s.ids(ctx, "owned", `SELECT id FROM transfers WHERE owner = ? AND open = 1 ORDER BY id`, owner)
}

// Signalled implements orchestrator.Store. Only open transfers count: a
// closed one has nothing left to act on, and its signal goes when Purge
// deletes it.
func (s *Store) Signalled(ctx context.Context, owner string) ([]string, error) {
	return s.ids(ctx, "signalled", signalledSQL, owner)
}

// signalledSQL reads the pending signals, almost always none, and looks
// up each one's transfer by its key. The engine runs it every two poll
// intervals. Written as a join, SQLite read every open transfer the
// replica owns (transfers_open_owner) and probed the signals for each:
// 0.81 ms a run with 10,000 parked (BenchmarkSignalled), 0.12 CPU-s a
// minute at the default interval, against 8 µs now; a scalar subquery
// keeps the signals the outer loop.
const signalledSQL = `SELECT s.transfer_id FROM signals s
	WHERE (SELECT t.owner = ? AND t.open = 1 FROM transfers t WHERE t.id = s.transfer_id)
	ORDER BY s.transfer_id`

// ids runs a query of transfer ids on a reader.
func (s *Store) ids(ctx context.Context, op, q string, args ...any) ([]string, error) {
	rows, err := s.reads.query(ctx, q, args...)
	if err != nil {
		return nil, fail(op, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fail(op, err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(op, err)
	}
	return out, nil
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

// verdictTimeout bounds a signal's insert and the read of why it inserted
// nothing (PutSignal), which run on a context of their own, and its wait
// for the writer before them.
const verdictTimeout = 10 * time.Second

// PutSignal implements orchestrator.Store.
func (s *Store) PutSignal(ctx context.Context, id string, sig orchestrator.Signal, version int64) error {
	op := "put signal " + id
	// The caller's context bounds the wait for the writer, before anything
	// is written: a caller who left meanwhile (a /complete or /cancel whose
	// request ended) stops waiting at once, with nothing recorded. It
	// waited up to verdictTimeout for the writer (a batch of saves, a
	// purge's slice), and then recorded the signal all the same. The wait
	// is bounded as the insert is, for a caller whose context never ends
	// (the engine putting back a signal: clearSignal).
	actx, acancel := context.WithTimeout(ctx, verdictTimeout)
	w, err := s.w.Conn(actx)
	acancel()
	if err != nil {
		return fail(op, err)
	}
	if s.signalTaken != nil {
		s.signalTaken()
	}
	// From there the insert and the read of why it inserted nothing run
	// on a context of their own: on the caller's, a context ending in
	// between interrupted one of them, and a signal refused for a reason,
	// or inserted, was answered unknown.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), verdictTimeout)
	defer cancel()
	// One statement, so that no save comes between the version's check
	// and the insert (the writer connection is SQLite's one writer).
	res, err := w.ExecContext(ctx, `INSERT INTO signals (transfer_id, signal)
		SELECT id, ? FROM transfers WHERE id = ? AND (? = 0 OR version = ?)
		ON CONFLICT (transfer_id) DO NOTHING`, string(sig), id, version, version)
	var n int64
	if err == nil {
		n, err = res.RowsAffected()
	}
	// The writer goes back at once: the rest reads on a reader.
	_ = w.Close()
	if err != nil {
		return fail(op, err)
	}
	if n == 1 {
		return nil
	}
	// Nothing inserted: no such transfer, a newer version, or a signal
	// pending, as read now (each is final for this call).
	var cur int64
	var pending bool
	err = s.reads.queryRow(ctx, `SELECT version, EXISTS (SELECT 1 FROM signals WHERE signals.transfer_id = transfers.id) FROM transfers WHERE id = ?`, id).Scan(&cur, &pending)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return kindErr(op, orchestrator.KindNotFound, errNotFound)
	case err != nil:
		return fail(op, err)
	case pending:
		return kindErr(op, orchestrator.KindConflict, errors.New("another signal is pending"))
	}
	return kindErr(op, orchestrator.KindConflict, orchestrator.ErrStale)
}

// PeekSignal implements orchestrator.Store: a read on a reader
// connection, as runners ask at every step and almost always find none.
func (s *Store) PeekSignal(ctx context.Context, id string) (orchestrator.Signal, error) {
	var sig string
	err := s.reads.queryRow(ctx, `SELECT signal FROM signals WHERE transfer_id = ?`, id).Scan(&sig)
	if errors.Is(err, sql.ErrNoRows) {
		return orchestrator.SignalNone, nil
	}
	if err != nil {
		return orchestrator.SignalNone, fail("peek signal "+id, err)
	}
	return orchestrator.Signal(sig), nil
}

// TakeSignal implements orchestrator.Store.
func (s *Store) TakeSignal(ctx context.Context, id string) (orchestrator.Signal, error) {
	// Runners ask at every step and poll, and almost always there is no
	// signal: a read on a reader connection answers that without a durable
	// write transaction. Only the writer deletes, so a signal found here
	// is still there for the DELETE below (or taken by a concurrent
	// TakeSignal, which the DELETE's RETURNING reports).
	var pending int
	if err := s.reads.queryRow(ctx, `SELECT count(*) FROM signals WHERE transfer_id = ?`, id).Scan(&pending); err != nil {
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
		status     sql.NullInt64
		location   string
		body       []byte
		transferID string
	)
	if r := rec.Response; r != nil {
		status, location, body, transferID = sql.NullInt64{Int64: int64(r.Status), Valid: true}, r.Location, r.Body, r.TransferID
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO idempotency (scope, key, request_hash, created_at, owner, status, location, body, response_transfer_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope, key) DO NOTHING`,
		rec.Scope, rec.Key, rec.RequestHash, ts(rec.CreatedAt), rec.Owner, status, location, body, transferID)
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
	if err := tx.QueryRowContext(ctx, `SELECT request_hash, created_at, owner, status, location, body, response_transfer_id
		FROM idempotency WHERE scope = ? AND key = ?`, rec.Scope, rec.Key).Scan(
		&cur.RequestHash, &created, &cur.Owner, &status, &location, &body, &transferID); err != nil {
		return rec, false, fail(op, err)
	}
	if cur.CreatedAt, err = parseTS(created); err != nil {
		return rec, false, fail(op, err)
	}
	if status.Valid {
		cur.Response = &orchestrator.IdempotentResponse{Status: int(status.Int64), Location: location, Body: body,
			TransferID: transferID}
	}
	return cur, false, tx.Commit()
}

// CompleteIdempotency implements orchestrator.Store.
func (s *Store) CompleteIdempotency(ctx context.Context, scope, key string, createdAt time.Time, resp orchestrator.IdempotentResponse) error {
	const op = "complete idempotency key"
	res, err := s.w.ExecContext(ctx, `UPDATE idempotency SET status = ?, location = ?, body = ?, response_transfer_id = ?
		WHERE scope = ? AND key = ? AND created_at = ?`, resp.Status, resp.Location, resp.Body, resp.TransferID, scope, key, ts(createdAt))
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
// A linked reservation is answered as SettleIdempotency answers it; the
// two statements match disjoint rows, so neither needs the other's
// transaction.
func (s *Store) DeleteIdempotency(ctx context.Context, scope, key string, createdAt time.Time) error {
	const op = "delete idempotency key"
	if _, err := s.w.ExecContext(ctx, `DELETE FROM idempotency WHERE scope = ? AND key = ? AND created_at = ? AND transfer_id IS NULL`,
		scope, key, ts(createdAt)); err != nil {
		return fail(op, err)
	}
	if _, err := s.w.ExecContext(ctx, `UPDATE idempotency SET status = 202, location = '/v1/transfers/' || transfer_id,
		body = NULL, response_transfer_id = transfer_id
		WHERE scope = ? AND key = ? AND created_at = ? AND transfer_id IS NOT NULL AND status IS NULL`,
		scope, key, ts(createdAt)); err != nil {
		return fail(op, err)
	}
	return nil
}

// SettleIdempotency implements orchestrator.Store: one transaction, so
// that a reservation is either answered or deleted, never both.
func (s *Store) SettleIdempotency(ctx context.Context, owner string, now, ownBefore time.Time) (int, error) {
	const op = "settle idempotency keys"
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, fail(op, err)
	}
	defer tx.Rollback()
	// The predicate repeats idempotency_pending's (status IS NULL).
	orphaned := `status IS NULL AND ((owner = ? AND created_at < ?) OR ` + deadOwner("owner") + `)`
	res, err := tx.ExecContext(ctx, `UPDATE idempotency SET status = 202, location = '/v1/transfers/' || transfer_id,
		body = NULL, response_transfer_id = transfer_id WHERE transfer_id IS NOT NULL AND `+orphaned, owner, ts(ownBefore), ts(now))
	if err != nil {
		return 0, fail(op, err)
	}
	answered, err := res.RowsAffected()
	if err != nil {
		return 0, fail(op, err)
	}
	res, err = tx.ExecContext(ctx, `DELETE FROM idempotency WHERE transfer_id IS NULL AND `+orphaned, owner, ts(ownBefore), ts(now))
	if err != nil {
		return 0, fail(op, err)
	}
	deleted, err := res.RowsAffected()
	if err != nil {
		return 0, fail(op, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fail(op, err)
	}
	return int(answered + deleted), nil
}

// Purge and the reclaim after it write in slices (Store.slice): a
// transaction that runs small steps until it has held the writer for
// sliceBudget, then commits, so that the saves waiting for the writer go
// next. A fixed number of rows per transaction could not bound that
// time: 500 closed transfers, each with its events and ten index
// entries, took 60–160 ms at 100k stored and more on a bigger or busier
// file, and one incremental_vacuum of 1024 pages took up to 430 ms; saves
// waited for the writer behind each of them.
const (
	// sliceBudget is how long one slice holds the writer before it
	// commits: a save waits for at most about this plus one step and the
	// slice's commit, and its own commit then flushes the slice's WAL
	// frames (a slice commits without an fsync). At 100k stored, 10 ms
	// against 20 took the longest save of a purge from 40–64 ms to
	// 23–44 ms, and the p99 from 31–39 ms to 19–22, in as long a purge
	// (docs/benchmarks.md, thirty-fourth pass). Tried before the purge
	// flushed the file itself (Store.checkpoint), 10 ms did not lower the
	// longest wait: that was a save's fsync of the purge's pages.
	sliceBudget = 10 * time.Millisecond
	// purgeChunk is the rows one DELETE step of a slice removes (a closed
	// transfer goes with its events and signals, eight or so, and their
	// index entries: at 1M stored a step of 16 took 50-130 ms of CPU, on
	// an idle machine, and a slice's budget is checked between steps).
	purgeChunk = 4
	// vacuumChunk is the pages one incremental_vacuum step of a slice
	// gives back to the file system.
	vacuumChunk = 16
)

// autocheckpoint is the writer's wal_autocheckpoint (dsn), restored after
// a slice: a commit that finds the WAL past this many pages copies it
// into the database file, in the writer's turn. SQLite's default of 1000
// (4 MB) copied the same pages again and again: a webhook delivery's row
// (about 2.5 KB, a page of its own) is written by four transactions
// within a second or two, and the transfers' rows by six, each a WAL
// frame; a checkpoint copies a page once however often the WAL holds it.
// At 1000, checkpoints were 5.6 % of transferd's CPU with every event
// delivered; at 10,000, transferd used 3 % less CPU per transfer (7
// interleaved rounds, docs/benchmarks.md, thirtieth pass). The WAL file
// then grows to about 40 MB, and keeps that size.
const autocheckpoint = 10000

// slice runs step over and over in one write transaction, until step
// reports done or the transaction has held the writer for s.budget
// (read on s.clock after each step), then commits and checkpoints. It
// reports whether step was done. A failed step rolls the slice back.
//
// A slice commits with synchronous=NORMAL: it is not fsynced (the saves'
// next commit fsyncs the WAL, slices' frames included), since a slice a
// crash takes back is only done again by the next purge; at 1M stored,
// on a loaded machine, 341 slices' commits took 21-166 ms. Nor does a
// slice's commit checkpoint the WAL (wal_autocheckpoint 0): checkpoint
// does, beside the writer; when the WAL had passed SQLite's 1000 pages,
// slices' commits ran checkpoints of their own, 43-50 ms at 300k stored
// (281 of 539 slices). The
// writer is held from the pragmas to their restoring, so no save commits
// in between; a connection whose pragmas cannot be restored is dropped,
// never handed to a save.
func (s *Store) slice(ctx context.Context, step func(tx *sql.Tx) (done bool, err error)) (bool, error) {
	done, err := s.sliceTx(ctx, step)
	if err != nil {
		return false, err
	}
	// The writer is free again: the saves go while the WAL is copied.
	if err := s.checkpoint(ctx); err != nil {
		return false, err
	}
	return done, nil
}

// beginWith begins a transaction on the writer's one connection with the
// pragmas set applied to it: settings of the connection, which SQLite
// refuses to change within a transaction. The connection is held for the
// transaction; done ends it (a rollback unless it was committed), applies
// reset, and lets go of the connection, or, if reset fails, closes it (a
// new one opens with the DSN's settings): the next save must never run
// with set (synchronous NORMAL would commit it without an fsync). reset
// runs on every way out once a pragma of set may have taken: a purge slice
// deferred it after its pragmas, and a context ended between them left the
// writer at NORMAL (found by review).
func (s *Store) beginWith(ctx context.Context, set, reset []string) (tx *sql.Tx, done func(), err error) {
	c, err := s.w.Conn(ctx)
	if err != nil {
		return nil, nil, err
	}
	restore := func() {
		for _, q := range reset {
			if _, err := c.ExecContext(context.WithoutCancel(ctx), q); err != nil {
				_ = c.Raw(func(any) error { return driver.ErrBadConn }) // closed, not reused
				break
			}
		}
		_ = c.Close()
	}
	for _, q := range set {
		if _, err := c.ExecContext(ctx, q); err != nil {
			restore()
			return nil, nil, err
		}
	}
	if tx, err = c.BeginTx(ctx, nil); err != nil {
		restore()
		return nil, nil, err
	}
	return tx, func() {
		_ = tx.Rollback()
		restore()
	}, nil
}

// sliceTx is slice's transaction, on the writer's connection.
func (s *Store) sliceTx(ctx context.Context, step func(tx *sql.Tx) (done bool, err error)) (bool, error) {
	tx, end, err := s.beginWith(ctx, []string{`PRAGMA synchronous = NORMAL`, `PRAGMA wal_autocheckpoint = 0`},
		[]string{`PRAGMA synchronous = FULL`, fmt.Sprintf(`PRAGMA wal_autocheckpoint = %d`, autocheckpoint)})
	if err != nil {
		return false, err
	}
	defer end()
	start := s.clock()
	var done bool
	for {
		if done, err = step(tx); err != nil {
			return false, err
		}
		if done || s.clock().Sub(start) >= s.budget {
			break
		}
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	s.slices.Add(1)
	return done, nil
}

// checkpoint copies the WAL into the database file, on a connection of
// its own (PASSIVE: it waits for no reader and no writer), after each
// slice; the saves run beside it, the next slice waits for it. Left to
// SQLite, the commit that takes the WAL past 1000 pages runs the
// checkpoint holding the writer: a purge fills the WAL fast, and that
// commit was a slice's or a save's, about 40 ms more at 100k stored
// (traced: slices' commits took 38-44 ms, and none over 20 ms with the
// automatic checkpoint off). Run beside the next slice instead, a copy
// never caught up: the WAL never started over, grew all through the
// purge, and the save after it waited 1.1 s for the last copy, which
// also gave the file's freed gigabyte back at once. Between slices, each
// copy finishes, the file shrinks as it goes, and the WAL stays short.
//
// It then flushes the database file to disk, here, beside the writer.
// SQLite's checkpoint syncs the file only when it has copied the whole
// WAL, and beside saves that is rare: a save commits during the copy, so
// the pages stayed in the page cache, slice after slice, and the WAL
// never started over. Once it passed wal_autocheckpoint pages, the next
// save's commit ran a checkpoint of its own: a few pages to copy, then
// the fsync of every page the purge's checkpoints had left unsynced,
// 35–100 ms in that save's commit (traced at 100k stored: the longest
// saves of a purge, 47–124 ms, were all that fsync). Flushed here, that
// commit finds almost nothing left to flush.
func (s *Store) checkpoint(ctx context.Context) error {
	var busy, log, copied int
	if err := s.ckpt.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &copied); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	s.checkpoints.Add(1)
	if err := s.file.Sync(); err != nil {
		return fmt.Errorf("checkpoint: flushing the database file: %w", err)
	}
	s.syncs.Add(1)
	return nil
}

// Purge implements orchestrator.Store in slices (Store.slice) of
// s.purgeChunk rows a step. Signals and events go with their transfers
// through the foreign keys' ON DELETE CASCADE. An idempotency record
// whose transfer is still open is kept: it still answers a retry of the
// create. The pages freed are then given back to the file system, in
// slices too.
func (s *Store) Purge(ctx context.Context, before time.Time, limit int) (int, error) {
	const op = "purge"
	cut := ts(before)
	// open = 0 alone implies terminal; the state test guards against a row
	// whose open column was ever written wrong.
	total, err := s.deleteInSlices(ctx, limit, `DELETE FROM transfers WHERE id IN (SELECT id FROM transfers
		WHERE open = 0 AND `+terminal+` AND updated_at < ? ORDER BY updated_at `+limitArg+`)`, cut)
	if err != nil {
		return total, fail(op, err)
	}
	// A call that filled its limit may have left transfers: the
	// idempotency records wait for the call that finds the end.
	for done := limit > 0 && total == limit; !done; {
		var err error
		done, err = s.slice(ctx, func(tx *sql.Tx) (bool, error) {
			k, err := execCount(ctx, tx, `DELETE FROM idempotency WHERE rowid IN (SELECT i.rowid FROM idempotency i
				WHERE i.created_at < ? AND NOT EXISTS (SELECT 1 FROM transfers t WHERE t.id = i.transfer_id AND t.open = 1)
				`+limitArg+`)`, cut, s.purgeChunk)
			return k < s.purgeChunk, err
		})
		if err != nil {
			return total, fail(op, err)
		}
	}
	if total > 0 {
		if err := s.reclaim(ctx); err != nil {
			return total, fail(op, err)
		}
	}
	return total, nil
}

// deleteInSlices runs del, a DELETE of at most `?` (its last argument)
// rows given args before it, in slices (Store.slice) of s.purgeChunk rows,
// until it deletes fewer than asked or limit rows (none: no limit) are
// gone: a slice holds the writer for at most the slice budget, so that
// other writes never wait long behind a purge. It returns how many rows
// the committed slices deleted.
func (s *Store) deleteInSlices(ctx context.Context, limit int, del string, args ...any) (int, error) {
	total := 0
	for done := false; !done && (limit <= 0 || total < limit); {
		deleted := 0 // by this slice, counted once it commits
		var err error
		done, err = s.slice(ctx, func(tx *sql.Tx) (bool, error) {
			n := s.purgeChunk
			if limit > 0 {
				n = min(n, limit-total-deleted)
			}
			k, err := execCount(ctx, tx, del, append(args, n)...)
			deleted += k
			return k < n || (limit > 0 && total+deleted >= limit), err
		})
		if err != nil {
			return total, err
		}
		total += deleted
	}
	return total, nil
}

// reclaim gives the free pages back to the file system, s.vacuumChunk
// pages a step (auto_vacuum=INCREMENTAL, see incrementalVacuum), in
// slices: moving a page from the end of the file rewrites its parent and
// its pointer-map entry, a fraction of a millisecond each, so that the
// pages freed by a purge of thousands of transfers are minutes of writer
// time in all, which saves must not wait behind in one piece.
func (s *Store) reclaim(ctx context.Context) error {
	for done := false; !done; {
		var err error
		done, err = s.slice(ctx, func(tx *sql.Tx) (bool, error) {
			if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA incremental_vacuum(%d)`, s.vacuumChunk)); err != nil {
				return false, fmt.Errorf("incremental vacuum: %w", err)
			}
			var free int
			if err := tx.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&free); err != nil {
				return false, fmt.Errorf("freelist: %w", err)
			}
			return free == 0, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// execCount runs one statement in tx and returns how many rows it
// changed.
func execCount(ctx context.Context, tx *sql.Tx, q string, args ...any) (int, error) {
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}
