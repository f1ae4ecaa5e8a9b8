package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/record"
)

// The SQL spelling of orchestrator.State.Terminal. Queries repeat the
// indexes' predicates word for word so that the planner can use the
// partial indexes; a test checks both against orchestrator.States.
const (
	terminalList = `('cancelled', 'completed', 'failed')`
	nonTerminal  = `state NOT IN ` + terminalList
	terminal     = `state IN ` + terminalList
	// owingSQL selects the newest (by id) of a call's ended transfers that
	// still owe it its end state; they and its active transfer are those
	// that hold it (orchestrator.Transfer.HoldsCall; the conformance suite
	// holds them to each other). Any of them, not only the call's newest
	// transfer: ids begin with their replica's clock, which may run ahead
	// of another's. It reads the call's ended transfers that are still
	// open (transfers_owing_call, schema 17); %[1]s is the call's key.
	owingSQL = `SELECT id FROM transfers WHERE call_key = %[1]s AND open AND ` + terminal + `
		AND json_typeof(record->'Cleanup') = 'object' AND (record->'Outcome'->>'verified') IS DISTINCT FROM 'true'
		ORDER BY id DESC LIMIT 1`
)

// activeCallIndex is the unique index that keeps one active transfer per
// call; its violations are ActiveTransferErrors.
const activeCallIndex = "transfers_active_call"

// columns are the values stored beside a transfer's JSON.
type columns struct {
	state, provider, callKey string
	record                   []byte
	// Copied from the request, which never changes after Create: only
	// Create writes them.
	tenant, externalID, domain, user, callID, target string
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
	b, err := record.Encode(t)
	if err != nil {
		return columns{}, err
	}
	r := &t.Request
	return columns{state: string(t.State), provider: strings.ToLower(r.Provider),
		callKey: orchestrator.TenantCallKey(t), record: jsonbSafe(b),
		tenant: tenantOf(t), externalID: r.ExternalID, domain: strings.ToLower(r.Call.Domain), user: strings.ToLower(r.Call.User),
		callID: r.Call.CallID, target: r.Target}, nil
}

// eventsLock is the pg_advisory_xact_lock key a batch of saves takes
// before writing events ("outbox" in ASCII): positions are drawn in
// statement order but become visible in commit order, and a reader must
// never see a position while a lower one is still to commit (it would skip
// it for good). A batch is sent whole in one round trip (commit.go), so the
// lock is held for the server's work on the batch and its commit, and only
// by batches that record events.
const eventsLock int64 = 0x6f7574626f78

// eventsOf returns the events of t's outbox as the columns a save's
// statement inserts.
func eventsOf(t *orchestrator.Transfer) eventColumns {
	var e eventColumns
	for _, ev := range t.Outbox {
		e.ids = append(e.ids, ev.ID)
		e.tenants = append(e.tenants, ev.Tenant)
		e.transferIDs = append(e.transferIDs, ev.TransferID)
		e.seqs = append(e.seqs, ev.Seq)
		e.types = append(e.types, string(ev.Type))
		e.ats = append(e.ats, ev.At)
		e.froms = append(e.froms, string(ev.From))
		e.tos = append(e.tos, string(ev.To))
	}
	return e
}

// jsonbSafe replaces the escape \u0000 in JSON text by \ufffd: jsonb
// refuses U+0000 (webhook deliveries' records are jsonb; transfers and
// events were until migration 7, and an operator's ->> on json still
// refuses it), and a provider's evidence (kept verbatim) may contain it;
// refusing the save would stop the transfer mid-way. Outside strings
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

// Create implements orchestrator.Store. The transfer, its events and the
// link from its idempotency reservation are one statement of a group
// commit (commit.go): a reservation is linked, and an event exists,
// exactly when the transfer does. The partial unique index on call_key
// decides which of concurrent Creates for one call wins, across replicas.
func (s *Store) Create(ctx context.Context, t *orchestrator.Transfer) error {
	req, err := createReq(t)
	if err != nil {
		return s.fail("create "+t.ID, err)
	}
	// The transfer holding the call may end between our refused insert
	// and the look-up of its id; then the insert is tried again.
	for range 3 {
		req.done = make(chan verdict, 1)
		if again, err := s.created(ctx, t, req, s.commit(ctx, req)); !again {
			return err
		}
	}
	return s.fail(req.op(), errors.New("the call's active transfer keeps changing"))
}

// createReq is the committer's request of a Create of t.
func createReq(t *orchestrator.Transfer) (*saveReq, error) {
	// A shallow copy carries the next version into the encoding: the
	// record is only read, and the caller holds it until the verdict, so
	// the deep clone a save used to pay is not needed.
	cp := *t
	c := &cp
	c.Version = 1
	col, err := encode(c)
	if err != nil {
		return nil, err
	}
	req := &saveReq{id: c.ID, create: true, next: 1, owner: c.Owner, open: c.Open(), created: c.CreatedAt,
		updated: c.UpdatedAt, col: col, events: eventsOf(c), done: make(chan verdict, 1), token: c.Token}
	if c.IdempotencyKey != "" {
		req.idemScope, req.idemKey = &c.IdempotencyScope, &c.IdempotencyKey
		if !c.IdempotencyReservedAt.IsZero() {
			req.idemHeld = &c.IdempotencyReservedAt
		}
	}
	return req, nil
}

// verdictReadTimeout bounds the read that tells why a save the group
// commit answered wrote nothing (created, updated), and a signal's insert
// with the read of why it inserted nothing (PutSignal), as well as its wait
// for a connection before them.
const verdictReadTimeout = 10 * time.Second

// verdictContext is the context of that read: not the caller's, which may
// have ended while the batch was written (the API's deadline for a
// create), for the verdict is final whatever it says (the commit was
// waited for all the same). On the caller's ended context the read
// failed, and the save was answered with that failure, an error of no
// kind, which says it is unknown: a create refused for its call was looked
// for in the background for minutes, and its client told that the store's
// answer was lost.
func verdictContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), verdictReadTimeout)
}

// created turns the verdict on a Create of t into its result, or reports
// that the create must be tried again: its call's active transfer ended
// between the insert and the look-up.
func (s *Store) created(ctx context.Context, t *orchestrator.Transfer, req *saveReq, v verdict) (again bool, err error) {
	op := req.op()
	switch {
	case v.refused:
		// The server refused the create's statement, which rolled the
		// batch's transaction back (its other saves were written again
		// without it): nothing of it was saved.
		return false, req.notSaved(s.fail(op, v.err))
	case v.err != nil:
		return false, v.err
	case v.saved:
		t.Version = 1
		return false, nil
	}
	var (
		idTaken    bool
		active     *string
		owing      *string
		held       = true
		superseded bool
	)
	ctx, cancel := verdictContext(ctx)
	defer cancel()
	if err := s.pool.QueryRow(ctx, refusedSQL, req.id, req.col.callKey, req.idemScope, req.idemKey, req.idemHeld, req.owner, req.token).
		Scan(&idTaken, &active, &owing, &held, &superseded); err != nil {
		return false, s.fail(op, err)
	}
	switch {
	case superseded:
		// Another process took the owner's name over (tokenHeld); the
		// name is never given back to this token, so what the insert saw
		// is what this read sees.
		return false, kindErr(op, orchestrator.KindConflict, orchestrator.ErrSupersededSave)
	case !held:
		// Its request outlived its reservation, which was settled: the
		// key may be a retry's now.
		return false, kindErr(op, orchestrator.KindUnavailable, orchestrator.ErrReservationLost)
	case idTaken:
		return false, kindErr(op, orchestrator.KindConflict, errors.New("a transfer with this id exists"))
	case active != nil:
		return false, kindErr(op, orchestrator.KindConflict, &orchestrator.ActiveTransferError{ID: *active})
	case owing != nil:
		return false, kindErr(op, orchestrator.KindConflict, &orchestrator.ActiveTransferError{ID: *owing, CleaningUp: true})
	}
	return true, nil
}

// refusedSQL tells apart why a create inserted nothing: its id is taken,
// its call has an active transfer or an ended one that owes it, its
// reservation ($5) was settled, or its owner's heartbeat ($6) holds
// another token than its process's ($7).
var refusedSQL = `SELECT EXISTS (SELECT 1 FROM transfers WHERE id = $1),
		(SELECT id FROM transfers WHERE call_key = $2 AND ` + nonTerminal + `),
		(` + fmt.Sprintf(owingSQL, "$2") + `),
		$5::timestamptz IS NULL OR EXISTS (SELECT 1 FROM idempotency WHERE scope = $3 AND key = $4 AND created_at = $5
			AND transfer_id IS NULL AND status IS NULL),
		NOT ` + fmt.Sprintf(tokenHeld, "$6::text", "$7::text")

// activeID returns the id of the non-terminal transfer of callKey.
func (s *Store) activeID(ctx context.Context, callKey string) (string, error) {
	var id string
	err := s.pool.QueryRow(ctx, `SELECT id FROM transfers WHERE call_key = $1 AND `+nonTerminal, callKey).Scan(&id)
	return id, err
}

// updateSQL writes what a transition may change. The request's columns
// (provider, call_key, tenant, and transfer_keys) are Create's alone.
var updateSQL = `UPDATE transfers SET version = $1, state = $2, owner = $3, open = $4, updated_at = $5, record = $6
	WHERE id = $7 AND version = $8 AND ` + fmt.Sprintf(tokenHeld, "$3::text", "$9::text")

// Update implements orchestrator.Store: a compare-and-set on version. The
// save goes through the group commit (commit.go), which writes the saves
// of concurrent transfers in one transaction; the save and its events are
// one statement.
func (s *Store) Update(ctx context.Context, t *orchestrator.Transfer) error {
	req, err := updateReq(t)
	if err != nil {
		return s.fail("update "+t.ID, err)
	}
	return s.updated(ctx, t, req, s.commit(ctx, req))
}

// updateReq is the committer's request of an Update of t.
func updateReq(t *orchestrator.Transfer) (*saveReq, error) {
	// A shallow copy carries the next version into the encoding: the
	// record is only read, and the caller holds it until the verdict, so
	// the deep clone a save used to pay is not needed.
	cp := *t
	c := &cp
	c.Version = t.Version + 1
	col, err := encode(c)
	if err != nil {
		return nil, err
	}
	return &saveReq{id: t.ID, version: t.Version, next: c.Version, owner: c.Owner, open: c.Open(),
		updated: c.UpdatedAt, col: col, events: eventsOf(c), done: make(chan verdict, 1), look: t.LookForSignal, token: t.Token}, nil
}

// updated turns the verdict on an Update of t into its result.
func (s *Store) updated(ctx context.Context, t *orchestrator.Transfer, req *saveReq, v verdict) error {
	op := req.op()
	switch {
	case v.err != nil && !v.refused:
		return v.err
	case v.saved:
		t.Version = req.next
		if req.look {
			t.SignalLooked, t.PendingSignal = true, req.found
		}
		return nil
	}
	// A verdict to tell: made here, not for every save.
	ctx, cancel := verdictContext(ctx)
	defer cancel()
	if v.refused {
		return s.updateErr(ctx, op, req.col, v.err)
	}
	var exists, superseded bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM transfers WHERE id = $1), NOT `+fmt.Sprintf(tokenHeld, "$2::text", "$3::text"),
		t.ID, req.owner, req.token).Scan(&exists, &superseded); err != nil {
		return s.fail(op, err)
	}
	switch {
	case !exists:
		return kindErr(op, orchestrator.KindNotFound, errNotFound)
	case superseded:
		// Refused for the token, or for its version and the token as
		// well (a takeover claims the name's transfers): a conflict
		// either way, and the name is another process's.
		return kindErr(op, orchestrator.KindConflict, orchestrator.ErrSupersededSave)
	}
	return kindErr(op, orchestrator.KindConflict, orchestrator.ErrVersionConflict)
}

// updateErr reports an UPDATE of a transfer that the server refused.
func (s *Store) updateErr(ctx context.Context, op string, col columns, err error) error {
	if code, constraint := pgCode(err); code == uniqueViolation && constraint == activeCallIndex {
		// Only possible when a terminal transfer is made active again
		// while another one holds its call.
		if id, lerr := s.activeID(ctx, col.callKey); lerr == nil {
			return kindErr(op, orchestrator.KindConflict, &orchestrator.ActiveTransferError{ID: id})
		}
	}
	return s.fail(op, err)
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
	t, err := record.Decode(rec)
	if err != nil {
		return nil, s.fail(op, err)
	}
	return t, nil
}

// listQuery is the statement of List. The columns fixed at Create are in
// transfer_keys, with their indexes (migration 7); transfers has the state,
// tenant and provider. A list with a filter on the keys, or with no state,
// is read from transfer_keys joined to transfers; a list of states with at
// most the provider besides is read from transfers alone, through its state
// indexes. Every filter but the states is a condition; one state is one
// more. Several states are read as one branch per state, each in id order
// and bounded by the page size, and their ids merged: with state = ANY the
// planner would read every row of the states and sort them.
func listQuery(f orchestrator.ListFilter) (string, []any) {
	var (
		where []string
		args  []any
	)
	cond := func(c string, v any) {
		args = append(args, v)
		where = append(where, c+" $"+strconv.Itoa(len(args)))
	}
	states := slices.Compact(slices.Sorted(slices.Values(f.States)))
	keyed := len(states) == 0 || f.ExternalID != "" || f.Domain != "" || f.User != "" || f.CallID != "" ||
		f.Target != "" || !f.CreatedAfter.IsZero() || !f.CreatedBefore.IsZero()
	from, k := `transfers t`, "t."
	if keyed {
		from, k = `transfer_keys k JOIN transfers t ON t.id = k.id`, "k."
	}
	if f.Tenant != "" {
		cond(k+"tenant =", f.Tenant)
	}
	if f.After != "" {
		cond(k+"id <", f.After)
		if keyed {
			// The same bound on transfers. The planner does not carry
			// an inequality across a join: without it, a page from a
			// cursor in the middle of 1M stored took 510 ms instead of
			// 2 ms (transfers read from its newest row down to the
			// cursor).
			where = append(where, "t.id < $"+strconv.Itoa(len(args)))
		}
	}
	if f.Provider != "" {
		cond(k+"provider =", strings.ToLower(f.Provider))
	}
	if f.ExternalID != "" {
		cond("k.external_id =", f.ExternalID)
	}
	if f.Domain != "" {
		cond("k.call_domain =", strings.ToLower(f.Domain))
	}
	if f.User != "" {
		cond("k.call_user =", strings.ToLower(f.User))
	}
	if f.CallID != "" {
		cond("k.call_id =", f.CallID)
	}
	if f.Target != "" {
		cond("k.target =", f.Target)
	}
	after, before := f.CreatedBounds()
	if !after.IsZero() {
		cond("k.created_at >=", after)
	}
	if !before.IsZero() {
		cond("k.created_at <", before)
	}
	// One more than asked tells whether more follow.
	args = append(args, max(f.Limit, 0)+1)
	limit := "$" + strconv.Itoa(len(args))
	order := ` ORDER BY ` + k + `id DESC LIMIT ` + limit
	if len(states) <= 1 {
		if len(states) == 1 {
			cond("t.state =", string(states[0]))
		}
		q := `SELECT t.record FROM ` + from
		if len(where) > 0 {
			q += ` WHERE ` + strings.Join(where, " AND ")
		}
		return q + order, args
	}
	var branches []string
	for _, st := range states {
		args = append(args, string(st))
		w := append(slices.Clone(where), "t.state = $"+strconv.Itoa(len(args)))
		branches = append(branches, `(SELECT `+k+`id FROM `+from+` WHERE `+strings.Join(w, " AND ")+order+`)`)
	}
	return `SELECT record FROM transfers WHERE id IN (` + strings.Join(branches, " UNION ALL ") + `)
		ORDER BY id DESC LIMIT ` + limit, args
}

// List implements orchestrator.Store. Ids sort by creation, so newest
// first is id order descending and the cursor is an id.
func (s *Store) List(ctx context.Context, f orchestrator.ListFilter) ([]*orchestrator.Transfer, bool, error) {
	q, args := listQuery(f)
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

// eventsQuery is the statement of Events: served by events_transfer for
// one transfer, by the primary key (tenant, pos) otherwise.
func eventsQuery(f orchestrator.EventFilter) (string, []any) {
	q := `SELECT pos, id, tenant, transfer_id, seq, type, at, from_state, to_state, snapshot FROM events
		WHERE tenant = $1 AND pos > $2`
	var limit *int // NULL: no bound
	if f.Limit > 0 {
		limit = &f.Limit
	}
	args := []any{f.Tenant, max(f.After, 0), limit}
	if f.TransferID != "" {
		q += ` AND transfer_id = $4`
		args = append(args, f.TransferID)
	}
	return q + ` ORDER BY pos LIMIT $3`, args
}

// lastEventQuery is the statement of LastEventPos: the last entry of
// the events' key (tenant, pos), or of events_transfer for one transfer.
// The tenant is compared there too, so that an id another tenant names
// has no events.
func lastEventQuery(f orchestrator.EventFilter) (string, []any) {
	if f.TransferID != "" {
		return `SELECT pos FROM events WHERE transfer_id = $1 AND tenant = $2 ORDER BY pos DESC LIMIT 1`, []any{f.TransferID, f.Tenant}
	}
	return `SELECT pos FROM events WHERE tenant = $1 ORDER BY pos DESC LIMIT 1`, []any{f.Tenant}
}

// LastEventPos implements orchestrator.EventStore.
func (s *Store) LastEventPos(ctx context.Context, f orchestrator.EventFilter) (int64, error) {
	q, args := lastEventQuery(f)
	var pos int64
	switch err := s.pool.QueryRow(ctx, q, args...).Scan(&pos); {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, nil
	case err != nil:
		return 0, s.fail("last event", err)
	}
	return pos, nil
}

// Events implements orchestrator.Store.
func (s *Store) Events(ctx context.Context, f orchestrator.EventFilter) ([]orchestrator.Event, error) {
	const op = "events"
	q, args := eventsQuery(f)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, s.fail(op, err)
	}
	defer rows.Close()
	var out []orchestrator.Event
	for rows.Next() {
		var (
			ev            orchestrator.Event
			typ, from, to string
			snap          []byte
		)
		if err := rows.Scan(&ev.Pos, &ev.ID, &ev.Tenant, &ev.TransferID, &ev.Seq, &typ, &ev.At, &from, &to, &snap); err != nil {
			return nil, s.fail(op, err)
		}
		ev.Type, ev.From, ev.To = orchestrator.EventType(typ), orchestrator.State(from), orchestrator.State(to)
		if ev.Transfer, err = record.Decode(snap); err != nil {
			return nil, s.fail(op, err)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(op, err)
	}
	return out, nil
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
		t, err := record.Decode(rec)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Heartbeat implements orchestrator.Store in one statement: the CTE reads
// the previous heartbeat from the statement's snapshot, before the upsert,
// and the upsert's condition judges the row as it stands once locked (a
// heartbeat of another process committed meanwhile included). It measures
// the server's clock again as it goes (clock.go).
func (s *Store) Heartbeat(ctx context.Context, owner, token string, now time.Time, ttl time.Duration, take bool) (bool, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, s.fail("heartbeat", err)
	}
	defer conn.Release()
	var (
		expired, written bool
		server           time.Time
	)
	before := time.Now()
	err = conn.QueryRow(ctx, `WITH prev AS (SELECT expires FROM replicas WHERE name = $1),
		up AS (INSERT INTO replicas (name, expires, token) VALUES ($1, $2, $4)
			ON CONFLICT (name) DO UPDATE SET expires = excluded.expires, token = excluded.token
			WHERE $5 OR replicas.token IN ('', excluded.token) OR replicas.expires <= $3
			RETURNING 1)
		SELECT NOT EXISTS (SELECT 1 FROM prev WHERE expires > $3), EXISTS (SELECT 1 FROM up), clock_timestamp()`,
		owner, now.Add(ttl), now, token, take).Scan(&expired, &written, &server)
	if err != nil {
		return false, s.fail("heartbeat", err)
	}
	s.tookClock(before, server, time.Now(), s.hostSkew())
	if !written {
		return false, orchestrator.ErrSuperseded
	}
	return expired, nil
}

// Release implements orchestrator.Store. The heartbeat written last
// holds last as the driver encoded it, the same value for the same time.
func (s *Store) Release(ctx context.Context, owner, token string, last, at time.Time) error {
	if _, err := s.pool.Exec(ctx, `UPDATE replicas SET expires = $1 WHERE name = $2 AND token = $3 AND expires = $4`, at, owner, token, last); err != nil {
		return s.fail("release", err)
	}
	return nil
}

// Peers implements orchestrator.Store.
func (s *Store) Peers(ctx context.Context, owner string, now time.Time) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM replicas WHERE name <> $1 AND expires > $2`, owner, now).Scan(&n); err != nil {
		return 0, s.fail("peers", err)
	}
	return n, nil
}

// deadOwner is the SQL condition "the row's owner column names no replica
// with a live heartbeat at $n".
func deadOwner(column string, n int) string {
	return column + ` NOT IN (SELECT name FROM replicas WHERE expires > $` + strconv.Itoa(n) + `)`
}

// Claim implements orchestrator.Store. FOR UPDATE SKIP LOCKED lets
// replicas claim at once without waiting on each other: a row another
// Claim is taking is skipped, and a row it took and committed is
// re-checked against the condition and, its new owner being live, no
// longer matches. (A claimer whose very first heartbeat committed after
// this statement's snapshot looks dead to it; the row is then taken from
// it at once and its next Update fails: churn, never two writers.)
func (s *Store) Claim(ctx context.Context, owner, token string, now time.Time, own bool, limit int) ([]*orchestrator.Transfer, error) {
	const op = "claim"
	var bound *int // NULL: no bound
	if limit > 0 {
		bound = &limit
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, s.fail(op, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if token != "" {
		// Judged as a save's condition is, as of the statement's start: a
		// claim under way as a takeover commits may still be made, and the
		// transfers it claims are adopted by the name's live process once
		// this one can send nothing more (afterTakeover). Locking the
		// heartbeat's row instead would make this process's own heartbeat
		// wait for a slow claim, which the engine keeps apart.
		var held bool
		if err := tx.QueryRow(ctx, `SELECT `+fmt.Sprintf(tokenHeld, "$1::text", "$2::text"), owner, token).Scan(&held); err != nil {
			return nil, s.fail(op, err)
		}
		if !held {
			return nil, kindErr(op, orchestrator.KindConflict, orchestrator.ErrSuperseded)
		}
	}
	rows, err := tx.Query(ctx, `SELECT record FROM transfers
		WHERE open AND (owner = '' OR ($1 AND owner = $2) OR (owner <> $2 AND `+deadOwner("owner", 3)+`))
		ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED`, own, owner, now, bound)
	if err != nil {
		return nil, s.fail(op, err)
	}
	claimed, err := collect(rows)
	if err != nil {
		return nil, s.fail(op, err)
	}
	if len(claimed) == 0 {
		return nil, nil
	}
	var b pgx.Batch
	for _, t := range claimed {
		// The record's owner is the column's (every write sets both),
		// read under the claim's lock.
		t.Unowned = t.Owner == ""
		t.Owner = owner
		t.Version++ // the previous owner's next Update fails
		col, err := encode(t)
		if err != nil {
			return nil, s.fail(op+" "+t.ID, err)
		}
		b.Queue(`UPDATE transfers SET version = $1, owner = $2, record = $3 WHERE id = $4`, t.Version, t.Owner, col.record, t.ID)
	}
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return nil, s.fail(op, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, s.fail(op, err)
	}
	return claimed, nil
}

// Owned implements orchestrator.Store.
func (s *Store) Owned(ctx context.Context, owner string) ([]string, error) {
	return s.ids(ctx, "owned", `SELECT id FROM transfers WHERE owner = $1 AND open ORDER BY id`, owner)
}

// Signalled implements orchestrator.Store. Only open transfers count: a
// closed one has nothing left to act on, and its signal goes when Purge
// deletes it.
func (s *Store) Signalled(ctx context.Context, owner string) ([]string, error) {
	return s.ids(ctx, "signalled", signalledSQL, owner)
}

// signalledSQL reads the pending signals, almost always none, and looks
// up each one's transfer by its key. Every replica runs it about once a
// second. Written as a join, it was planned on a young table as a hash
// join over every open transfer of the replica (7.7 ms a run at c=32):
// a scalar subquery is never turned into a join, so the plan stays
// driven by the signals whatever the statistics say.
const signalledSQL = `SELECT s.transfer_id FROM signals s
	WHERE (SELECT t.owner = $1 AND t.open FROM transfers t WHERE t.id = s.transfer_id)
	ORDER BY s.transfer_id`

// ids runs a query of transfer ids.
func (s *Store) ids(ctx context.Context, op, q string, args ...any) ([]string, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, s.fail(op, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, s.fail(op, err)
	}
	return ids, nil
}

// PutSignal implements orchestrator.Store.
func (s *Store) PutSignal(ctx context.Context, id string, sig orchestrator.Signal, version int64) error {
	op := "put signal " + id
	// The caller's context bounds the wait for a connection, before
	// anything is sent: a caller who left meanwhile (a /complete or
	// /cancel whose request ended) stops waiting at once, with nothing
	// recorded. It waited up to verdictReadTimeout for a connection, and
	// then recorded the signal all the same. (Its error is of no kind,
	// as a context that had ended before PutSignal was called: the
	// engine calls it unknown, whose advice, to retry, fits.) The wait is
	// bounded as the insert is, for a caller whose context never ends
	// (the engine putting back a signal: clearSignal).
	actx, acancel := context.WithTimeout(ctx, verdictReadTimeout)
	conn, err := s.pool.Acquire(actx)
	acancel()
	if err != nil {
		return s.fail(op, err)
	}
	defer conn.Release()
	if s.signalTaken != nil {
		s.signalTaken()
	}
	// From there the insert and the read of why it inserted nothing run
	// on a context of their own (verdictContext): on the caller's, a
	// context ending in between failed one of them, and a signal refused
	// for a reason, or inserted, was answered unknown.
	ctx, cancel := verdictContext(ctx)
	defer cancel()
	// The transfer's row is locked (FOR SHARE) for the check, so that no
	// save commits between the version's check and the insert: a save
	// waits for this statement, and this one for a save in flight, which
	// it then sees.
	tag, err := conn.Exec(ctx, `INSERT INTO signals (transfer_id, signal)
		SELECT id, $2 FROM transfers WHERE id = $1 AND ($3 = 0 OR version = $3) FOR SHARE
		ON CONFLICT (transfer_id) DO NOTHING`, id, string(sig), version)
	if err != nil {
		return s.fail(op, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	var pending bool
	err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM signals WHERE signals.transfer_id = transfers.id) FROM transfers WHERE id = $1`, id).Scan(&pending)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return kindErr(op, orchestrator.KindNotFound, errNotFound)
	case err != nil:
		return s.fail(op, err)
	case pending:
		return kindErr(op, orchestrator.KindConflict, errors.New("another signal is pending"))
	}
	return kindErr(op, orchestrator.KindConflict, orchestrator.ErrStale)
}

// PeekSignal implements orchestrator.Store.
func (s *Store) PeekSignal(ctx context.Context, id string) (orchestrator.Signal, error) {
	var sig string
	err := s.pool.QueryRow(ctx, `SELECT signal FROM signals WHERE transfer_id = $1`, id).Scan(&sig)
	if errors.Is(err, pgx.ErrNoRows) {
		return orchestrator.SignalNone, nil
	}
	if err != nil {
		return orchestrator.SignalNone, s.fail("peek signal "+id, err)
	}
	return orchestrator.Signal(sig), nil
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
		status     *int
		location   string
		body       []byte
		transferID string
	)
	if r := rec.Response; r != nil {
		status, location, body, transferID = &r.Status, r.Location, r.Body, r.TransferID
	}
	// The record may be deleted between our insert and our read; then
	// the key is free again and the insert is tried again.
	for range 3 {
		tag, err := s.pool.Exec(ctx, `INSERT INTO idempotency
			(scope, key, request_hash, created_at, owner, status, location, body, response_transfer_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (scope, key) DO NOTHING`,
			rec.Scope, rec.Key, rec.RequestHash, rec.CreatedAt, rec.Owner, status, location, body, transferID)
		if err != nil {
			return rec, false, s.fail(op, err)
		}
		if tag.RowsAffected() == 1 {
			return rec, true, nil
		}
		cur := orchestrator.IdempotencyRecord{Scope: rec.Scope, Key: rec.Key}
		var (
			curStatus     *int
			curLocation   string
			curBody       []byte
			curTransferID string
		)
		err = s.pool.QueryRow(ctx, `SELECT request_hash, created_at, owner, status, location, body, response_transfer_id
			FROM idempotency WHERE scope = $1 AND key = $2`, rec.Scope, rec.Key).Scan(
			&cur.RequestHash, &cur.CreatedAt, &cur.Owner, &curStatus, &curLocation, &curBody, &curTransferID)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return rec, false, s.fail(op, err)
		}
		if curStatus != nil {
			cur.Response = &orchestrator.IdempotentResponse{Status: *curStatus, Location: curLocation, Body: curBody,
				TransferID: curTransferID}
		}
		return cur, false, nil
	}
	return rec, false, s.fail(op, errors.New("the key keeps being deleted"))
}

// CompleteIdempotency implements orchestrator.Store.
func (s *Store) CompleteIdempotency(ctx context.Context, scope, key string, createdAt time.Time, resp orchestrator.IdempotentResponse) error {
	const op = "complete idempotency key"
	tag, err := s.pool.Exec(ctx, `UPDATE idempotency SET status = $1, location = $2, body = $3, response_transfer_id = $4
		WHERE scope = $5 AND key = $6 AND created_at = $7`, resp.Status, resp.Location, resp.Body, resp.TransferID, scope, key, createdAt)
	if err != nil {
		return s.fail(op, err)
	}
	if tag.RowsAffected() == 0 {
		return kindErr(op, orchestrator.KindNotFound, errors.New("no such idempotency key"))
	}
	return nil
}

// DeleteIdempotency implements orchestrator.Store.
// A linked reservation is answered as SettleIdempotency answers it. Two
// statements, each with a snapshot of its own: a create linking the
// reservation may be committing as the release starts (it holds the row's
// lock), and the DELETE, waiting for that lock, finds the row linked once
// it commits; an UPDATE on the DELETE's snapshot would still see it
// unlinked and leave it pending, neither released nor answered.
func (s *Store) DeleteIdempotency(ctx context.Context, scope, key string, createdAt time.Time) error {
	const op = "delete idempotency key"
	if _, err := s.pool.Exec(ctx, `DELETE FROM idempotency WHERE scope = $1 AND key = $2 AND created_at = $3 AND transfer_id IS NULL`,
		scope, key, createdAt); err != nil {
		return s.fail(op, err)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE idempotency SET status = 202, location = '/v1/transfers/' || transfer_id, body = NULL,
			response_transfer_id = transfer_id
		WHERE scope = $1 AND key = $2 AND created_at = $3 AND transfer_id IS NOT NULL AND status IS NULL`,
		scope, key, createdAt); err != nil {
		return s.fail(op, err)
	}
	return nil
}

// SettleIdempotency implements orchestrator.Store: one transaction, so
// that a reservation is either answered or deleted, never both. Rows are
// locked by the UPDATE and DELETE themselves; a reservation completed
// meanwhile no longer has status NULL when re-checked and is left alone.
func (s *Store) SettleIdempotency(ctx context.Context, owner string, now, ownBefore time.Time) (int, error) {
	const op = "settle idempotency keys"
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, s.fail(op, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	// The predicate repeats idempotency_pending's (status IS NULL).
	orphaned := `status IS NULL AND ((owner = $1 AND created_at < $2) OR ` + deadOwner("owner", 3) + `)`
	answered, err := tx.Exec(ctx, `UPDATE idempotency SET status = 202, location = '/v1/transfers/' || transfer_id,
		body = NULL, response_transfer_id = transfer_id WHERE transfer_id IS NOT NULL AND `+orphaned, owner, ownBefore, now)
	if err != nil {
		return 0, s.fail(op, err)
	}
	deleted, err := tx.Exec(ctx, `DELETE FROM idempotency WHERE transfer_id IS NULL AND `+orphaned, owner, ownBefore, now)
	if err != nil {
		return 0, s.fail(op, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, s.fail(op, err)
	}
	return int(answered.RowsAffected() + deleted.RowsAffected()), nil
}

// purgeBatch bounds the rows one Purge statement deletes (Store.purgeBatch,
// smaller in tests), so that no transaction holds many row locks or runs
// long while replicas save transfers.
const purgeBatch = 500

// Purge implements orchestrator.Store in statements (each its own
// transaction) of at most s.purgeBatch rows, paced (Store.pace). A
// transfer's events go in the same statement (events has no foreign key:
// migration 7); its keys and signal go through their foreign keys' ON
// DELETE CASCADE. An idempotency record whose transfer is still open is
// kept: it still answers a retry of the create. SKIP LOCKED lets replicas
// purge at once without waiting on each other or on a row being saved.
func (s *Store) Purge(ctx context.Context, before time.Time, limit int) (int, error) {
	const op = "purge"
	total := 0
	for limit <= 0 || total < limit {
		n := s.purgeBatch
		if limit > 0 {
			n = min(n, limit-total)
		}
		// NOT open alone implies terminal; the state test guards against a
		// row whose open column was ever written wrong.
		var deleted int
		start := s.clock()
		err := s.pool.QueryRow(ctx, purgeSQL, before, n).Scan(&deleted)
		if err != nil {
			return total, s.fail(op, err)
		}
		total += deleted
		if deleted < n {
			break
		}
		if err := s.pace(ctx, start); err != nil {
			return total, s.fail(op, err)
		}
	}
	// A call that filled its limit may have left transfers: the
	// idempotency records wait for the call that finds the end.
	for !(limit > 0 && total == limit) {
		start := s.clock()
		tag, err := s.pool.Exec(ctx, purgeIdempotencySQL, before, s.purgeBatch)
		if err != nil {
			return total, s.fail(op, err)
		}
		if int(tag.RowsAffected()) < s.purgeBatch {
			break
		}
		if err := s.pace(ctx, start); err != nil {
			return total, s.fail(op, err)
		}
	}
	return total, nil
}

// The statements of a purge's batches. Each finds what it deletes by an
// index, locks at most $2 rows, and deletes them by a scalar array of
// their keys: the primary keys of transfers, the transfer ids of events
// (events_transfer), the row ids of idempotency records (a TID scan). Written
// as joins (id IN (SELECT …), DELETE … USING gone, (scope, key) IN
// (SELECT …)), the generic plan a prepared statement gets — the server's
// choice once a custom plan seems no cheaper, or plan_cache_mode — read
// the whole of transfers, events and idempotency at every batch of 500 (a
// hash semi join over a sequential scan, events hashed to temporary
// files: 594 ms a batch at 300,000 transfers and 900,000 events); a scalar
// array has no such plan (TestPurgePlanUsesIndexes).
var (
	purgeSQL = `WITH gone AS (DELETE FROM transfers WHERE id = ANY(ARRAY(SELECT id FROM transfers
			WHERE NOT open AND ` + terminal + ` AND updated_at < $1 ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED))
			RETURNING id),
		events AS (DELETE FROM events WHERE transfer_id = ANY(ARRAY(SELECT id FROM gone)))
		SELECT count(*) FROM gone`
	// The rows locked FOR UPDATE cannot move until the statement's
	// transaction ends, so the row ids the subquery returns are theirs.
	purgeIdempotencySQL = `DELETE FROM idempotency WHERE ctid = ANY(ARRAY(SELECT ctid FROM idempotency i
		WHERE created_at < $1 AND NOT EXISTS (SELECT 1 FROM transfers t WHERE t.id = i.transfer_id AND t.open)
		LIMIT $2 FOR UPDATE SKIP LOCKED))`
)

// pace rests after a full batch of a purge (more may follow, in this call
// or the engine's next) for as long as the batch took since start, so
// that a purge keeps the server's disk busy half the time at most, as
// PostgreSQL's own vacuum rests by its cost delay. Back to back at 1M
// stored transfers, on a database larger than the host's page cache, the
// batches' reads, their WAL and the checkpoints that WAL brought
// saturated the disk, and a few saves of open transfers waited 150–250 ms
// on it (thirty-fifth pass, docs/benchmarks.md). A batch that is slow
// because the disk is busy rests the longer for it.
func (s *Store) pace(ctx context.Context, start time.Time) error {
	return s.rest(ctx, s.clock().Sub(start))
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
