package postgres_test

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
	"github.com/transferd/transferd/internal/webhooks"
	"github.com/transferd/transferd/internal/webhooks/webhookstest"
)

// Every list the API offers (one tenant's transfers with at most one
// filter, newest first, with and without the cursor) can be served by an
// index in list order. The tables of a test are small, so the planner is
// told that sequential scans and sorts are dear: a plan that still has
// one has no index to do without it. The index's condition has every
// column the list compares for equality: an index of some of them walks
// rows the others then filter out.
func TestListPlansUseIndexes(t *testing.T) {
	ctx := context.Background()
	conn := planConn(t)
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	fs := map[string]orchestrator.ListFilter{
		"tenant":         {},
		"state":          {States: []orchestrator.State{orchestrator.StateConsulting}},
		"states":         {States: []orchestrator.State{orchestrator.StatePending, orchestrator.StateHolding, orchestrator.StateConsulting}},
		"provider":       {Provider: "netsapiens"},
		"provider+state": {Provider: "netsapiens", States: []orchestrator.State{orchestrator.StateConsulting}},
		"provider+states": {Provider: "netsapiens", States: []orchestrator.State{orchestrator.StatePending, orchestrator.StateHolding,
			orchestrator.StateConsulting}},
		"external id":    {ExternalID: "crm-1"},
		"call":           {Domain: "test", User: "1000"},
		"call id":        {CallID: "c-1"},
		"target":         {Target: "1010"},
		"created after":  {CreatedAfter: at},
		"created before": {CreatedBefore: at},
		"created range":  {CreatedAfter: at, CreatedBefore: at.Add(time.Hour)},
	}
	// Both plans a prepared statement gets: custom ones for its first runs,
	// and then, often, a generic one, planned without the values.
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		if _, err := conn.Exec(ctx, `SET plan_cache_mode = `+mode); err != nil {
			t.Fatal(err)
		}
		for name, f := range fs {
			f.Tenant, f.Limit = "acme", 200
			for _, after := range []string{"", orchestrator.NewID(at)} {
				f.After = after
				q, args := postgres.ListQuery(f)
				plan := explain(t, conn, q, args)
				if strings.Contains(plan, "Seq Scan") || (len(f.States) < 2 && strings.Contains(plan, "Sort")) ||
					!inListOrder.MatchString(plan) || unbounded.MatchString(plan) {
					t.Errorf("%s (%s, cursor %q): want index scans in list order:\n%s", name, mode, after, plan)
				}
				if after != "" && strings.Contains(plan, "transfer_keys") && strings.Count(plan, "(id < ") < 2 {
					t.Errorf("%s (%s): the cursor bounds one table of the join, not both:\n%s", name, mode, plan)
				}
				for _, col := range equalityColumns(f) {
					if !indexCond(plan, col) {
						t.Errorf("%s (%s, cursor %q): no index condition on %s:\n%s", name, mode, after, col, plan)
					}
				}
			}
		}
	}
	for name, f := range map[string]orchestrator.EventFilter{
		"stream":   {Tenant: "acme", After: 10, Limit: 100},
		"transfer": {Tenant: "acme", TransferID: orchestrator.NewID(at), After: 10, Limit: 100},
	} {
		q, args := postgres.EventsQuery(f)
		plan := explain(t, conn, q, args)
		if strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Sort") || !strings.Contains(plan, "Index Scan using events_") {
			t.Errorf("events %s: want an events index in position order:\n%s", name, plan)
		}
		// Where a stream opened "from now" starts: one entry of the
		// same index, read from its end, whatever the history.
		q, args = postgres.LastEventQuery(f)
		plan = explain(t, conn, q, args)
		if strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Sort") || !lastEventPlan.MatchString(plan) {
			t.Errorf("last event %s: want an events index read from its end:\n%s", name, plan)
		}
	}
}

// lastEventPlan is an events index read from its end, its entries enough
// or not.
var lastEventPlan = regexp.MustCompile(`Index (Only )?Scan Backward using events_`)

// Every listing of webhook deliveries (GET /v1/webhook-deliveries: a
// tenant's, by default the failing and dead ones, by status, or one
// transfer's) reads as many index entries as the page needs, whatever
// the number of deliveries the tenant has (schema 16): one transfer's
// from webhook_deliveries_transfer; failing, dead and pending ones each
// from the index of their kind; the others from webhook_deliveries_tenant.
// Each is a backward scan in list order, (pos, id) descending, with no
// sort but the merge of a page per kind, and the cursor is a row
// comparison the index serves, not a filter.
func TestDeliveriesListPlanUsesIndex(t *testing.T) {
	ctx := context.Background()
	conn := planConn(t)
	fs := webhookstest.ListFilters()
	index := map[webhooks.ListKind]string{webhooks.ListPending: "webhook_deliveries_status",
		webhooks.ListDead: "webhook_deliveries_status", webhooks.ListFailing: "webhook_deliveries_failing"}
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		if _, err := conn.Exec(ctx, `SET plan_cache_mode = `+mode); err != nil {
			t.Fatal(err)
		}
		for name, f := range fs {
			f.Tenant, f.Limit = "acme", 50
			kinds := webhooks.ListKinds(f)
			var want []string
			switch {
			case f.TransferID != "":
				want = []string{"webhook_deliveries_transfer"}
			case kinds != nil:
				for _, k := range kinds {
					want = append(want, index[k])
				}
			default:
				want = []string{"webhook_deliveries_tenant"}
			}
			for _, after := range []string{"", webhooks.DeliveryID(webhooks.EndpointKey("acme", "crm"), "evt_1")} {
				f.After = after
				q, args := postgres.DeliveriesQuery(f)
				plan := explain(t, conn, q, args)
				if strings.Contains(plan, "Seq Scan") || len(kinds) < 2 && strings.Contains(plan, "Sort") {
					t.Errorf("%s (%s, cursor %q): the plan scans or sorts:\n%s", name, mode, after, plan)
				}
				for _, idx := range slices.Compact(slices.Clone(want)) {
					scans := regexp.MustCompile(`Index (Only )?Scan Backward using ` + idx + ` `)
					if got, n := len(scans.FindAllString(plan, -1)), strings.Count(strings.Join(want, " "), idx); got < n {
						t.Errorf("%s (%s, cursor %q): want %d backward scans of %s:\n%s", name, mode, after, n, idx, plan)
					}
				}
				if after != "" && len(regexp.MustCompile(`Index Cond: .*ROW\(pos, id\) < ROW\(`).FindAllString(plan, -1)) < len(want) {
					t.Errorf("%s (%s): the cursor is not an index condition on (pos, id) of each scan:\n%s", name, mode, plan)
				}
			}
		}
	}
}

// The purge of finished webhook deliveries finds them by an index
// condition on finished_at in webhook_deliveries_finished (the partial
// index of finished deliveries, which it reads in finished_at order) and
// deletes them by the primary key: no sequential scan or hash join of
// webhook_deliveries (mostly pending ones under load, and millions of
// rows when a backlog is first purged), and no sort, in both plans a
// prepared statement gets. The planner is told that the alternatives are
// dear, as for the lists: the test's table is empty.
func TestDeliveriesPurgePlanUsesIndex(t *testing.T) {
	ctx := context.Background()
	conn := planConn(t)
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		if _, err := conn.Exec(ctx, `SET plan_cache_mode = `+mode); err != nil {
			t.Fatal(err)
		}
		plan := explain(t, conn, postgres.PurgeDeliveriesSQL, []any{time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC), 500})
		if !purgePlan.MatchString(plan) || strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Sort") ||
			unbounded.MatchString(plan) {
			t.Errorf("%s: want a scan of webhook_deliveries_finished by finished_at, and deletes by the primary key:\n%s", mode, plan)
		}
		if !purgePayloadsPlan.MatchString(plan) {
			t.Errorf("%s: want the payloads deleted by their primary key:\n%s", mode, plan)
		}
	}
}

// Each batch of the retention purge finds its rows by an index, in the
// order of the index, and deletes them, their events and their
// idempotency records by their keys: no join over a whole table, in both
// plans a prepared statement gets. The generic plan of the statements as
// joins read all of transfers, events and idempotency at every batch (a
// hash semi join over a sequential scan), 594 ms a batch of 500 at
// 300,000 transfers.
func TestPurgePlanUsesIndexes(t *testing.T) {
	ctx := context.Background()
	conn := planConn(t)
	before := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		if _, err := conn.Exec(ctx, `SET plan_cache_mode = `+mode); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			q    string
			want []string
		}{
			{postgres.PurgeSQL, []string{`Index Scan using transfers_closed_updated on transfers`, `Index Cond: (updated_at < `,
				`Index Scan using transfers_pkey on transfers`, `Index Cond: (id = ANY `,
				`Index Scan using events_transfer on events`, `Index Cond: (transfer_id = ANY `}},
			{postgres.PurgeIdempotencySQL, []string{`Index Scan using idempotency_created on idempotency`, `Index Cond: (created_at < `,
				`Tid Scan on idempotency`}},
		} {
			plan := explain(t, conn, c.q, []any{before, 500})
			bad := strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Semi Join") || strings.Contains(plan, "Sort") ||
				unbounded.MatchString(plan)
			for _, w := range c.want {
				bad = bad || !strings.Contains(plan, w)
			}
			if bad {
				t.Errorf("%s: want the rows found by index and deleted by their keys (%q):\n%s", mode, c.want, plan)
			}
		}
	}
}

// purgePlan matches the delete of the purge of deliveries: a scan of the
// primary key for the ids that the limited scan of
// webhook_deliveries_finished (its index condition finished_at) found.
var purgePlan = regexp.MustCompile(`(?s)Delete on webhook_deliveries.*Index Scan using webhook_deliveries_finished on webhook_deliveries.*` +
	`Index Cond: \(finished_at < .*Index Scan using webhook_deliveries_pkey on webhook_deliveries.*Index Cond: \(id = ANY `)

// purgePayloadsPlan matches the delete of the purged deliveries'
// payloads, by their primary key.
var purgePayloadsPlan = regexp.MustCompile(`(?s)Delete on webhook_payloads.*Index Scan using webhook_payloads_pkey on webhook_payloads`)

// inListOrder matches a plan's scan of an index of transfers or
// transfer_keys in id order, descending.
var inListOrder = regexp.MustCompile(`Index (Only )?Scan Backward using transfer`)

// unbounded matches plan nodes made for reading whole tables: a page of
// a list reads a few rows in index order and stops.
var unbounded = regexp.MustCompile(`Hash Join|Merge Join|Gather|Materialize`)

// planConn returns a connection to a fresh schema, migrated, where the
// planner is told that sequential scans, sorts and bitmap scans are dear:
// the tables of a test are small, and a plan that still has one has no
// index to do without it. It is closed with the test.
func planConn(t *testing.T) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	s, url := openWithURL(t)
	s.Close()
	conn := connect(t, url)
	if _, err := conn.Exec(ctx, `SET enable_seqscan = off; SET enable_sort = off; SET enable_bitmapscan = off`); err != nil {
		t.Fatal(err)
	}
	return conn
}

// equalityColumns are the columns a list compares for equality.
func equalityColumns(f orchestrator.ListFilter) []string {
	cols := []string{"tenant"}
	for col, v := range map[string]string{"provider": f.Provider, "external_id": f.ExternalID, "call_domain": f.Domain,
		"call_user": f.User, "call_id": f.CallID, "target": f.Target} {
		if v != "" {
			cols = append(cols, col)
		}
	}
	if len(f.States) > 0 {
		cols = append(cols, "state")
	}
	return cols
}

// indexCond tells whether an index condition of plan compares col.
func indexCond(plan, col string) bool {
	for _, line := range strings.Split(plan, "\n") {
		if strings.Contains(line, "Index Cond:") && strings.Contains(line, "("+col+" = ") {
			return true
		}
	}
	return false
}

// explain returns the plan q is executed with when prepared, as the store
// prepares every statement (pgx's statement cache), with args: a custom
// or a generic plan as the connection's plan_cache_mode says (auto: a
// custom plan, as for the first executions). EXPLAIN of q itself would
// plan it with args as constants whatever plan_cache_mode says, and so
// never show the generic plan a connection caches and reuses.
func explain(t *testing.T, conn *pgx.Conn, q string, args []any) string {
	t.Helper()
	ctx := context.Background()
	sd, err := conn.Prepare(ctx, "plan_probe", q)
	if err != nil {
		t.Fatalf("prepare %s: %v", q, err)
	}
	defer func() {
		if err := conn.Deallocate(ctx, "plan_probe"); err != nil {
			t.Fatalf("deallocate: %v", err)
		}
	}()
	// EXECUTE takes its arguments as SQL, not as parameters: each
	// argument in the text format of its parameter's type, quoted.
	exec := "EXPLAIN EXECUTE plan_probe"
	if len(args) > 0 {
		lits := make([]string, len(args))
		for i, a := range args {
			buf, err := conn.TypeMap().Encode(sd.ParamOIDs[i], pgtype.TextFormatCode, a, nil)
			if err != nil {
				t.Fatalf("argument %d of %s: %v", i+1, q, err)
			}
			lits[i] = "NULL"
			if buf != nil {
				lits[i] = "'" + strings.ReplaceAll(string(buf), "'", "''") + "'"
			}
		}
		exec += "(" + strings.Join(lits, ", ") + ")"
	}
	rows, err := conn.Query(ctx, exec)
	if err != nil {
		t.Fatalf("explain %s: %v", q, err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("explain %s: %v", q, err)
	}
	return strings.Join(lines, "\n")
}

// The merged updates of a batch lock their rows in the order of the saves
// (sorted by id, commit.go): under the batch's plan settings the plan is a
// nested loop from the saves' arrays to the primary key, whatever the
// table holds and whatever the planner knows of it, in both plans a
// prepared statement gets.
func TestMergedUpdatePlan(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	tbl := &planTable{t: t, s: s, conn: conn, ids: batchIDs{at: time.Now()}}
	now := time.Now()
	// Owners and tokens as the engine's saves carry them, so that the look
	// at each owner's heartbeat (tokenHeld) is planned as it runs: one
	// lookup of replicas_pkey a save, beside the nested loop.
	args := []any{[]string{"a", "b"}, []int64{1, 1}, []int64{2, 2}, []string{"holding", "holding"}, []string{"replica-a", "replica-b"},
		[]bool{true, true}, []time.Time{now, now}, [][]byte{[]byte(`{}`), []byte(`{}`)},
		[]string{}, []string{}, []string{}, []int64{}, []string{}, []time.Time{}, []string{}, []string{}, []int64{},
		[]string{"token-a", "token-b"}}
	// A table that is empty, one that holds a few rows and was never
	// analyzed (a new database: the plan a connection caches at its
	// first batch is kept until something invalidates it, while the
	// table grows), and one analyzed.
	for _, c := range []struct {
		rows    int
		analyze bool
	}{{0, false}, {2, false}, {500, true}} {
		tbl.grow(c.rows, c.analyze, nil)
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			// As a batch does: its settings, in its transaction. A statement
			// prepared earlier would keep its generic plan.
			tx := inBatchSettings(t, s, conn, mode)
			plan := explain(t, conn, postgres.MergedUpdateSQL, args)
			if !mergedPlan.MatchString(plan) {
				t.Errorf("%d rows, %s: want a nested loop from the saves to transfers_pkey:\n%s", c.rows, mode, plan)
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// inBatchSettings begins a transaction on conn with a batch's plan
// settings and mode as plan_cache_mode, as a batch does; statements
// prepared earlier, which would keep their generic plans, are dropped.
func inBatchSettings(t *testing.T, s *postgres.Store, conn *pgx.Conn, mode string) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.DeallocateAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{postgres.PlanSQL(s), `SET LOCAL plan_cache_mode = ` + mode} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	return tx
}

// mergedPlan matches the update of a nested loop whose outer side scans
// the saves' arrays and whose inner side is the primary key (the events'
// part of the statement does not read transfers).
var mergedPlan = regexp.MustCompile(`(?s)Update on transfers t.*-> +Nested Loop.*-> +Function Scan on s .*-> +Index Scan using transfers_pkey on transfers t`)

// The pool is sized to the work unless the URL says otherwise.
func TestPoolSize(t *testing.T) {
	base := baseURL(t)
	url := inSchema(base, newSchema(t, base))
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := postgres.MaxConns(s); n < 8 {
		t.Errorf("MaxConns = %d, want at least 8", n)
	}
	s2, err := postgres.Open(context.Background(), url+"&pool_max_conns=3")
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if n := postgres.MaxConns(s2); n != 3 {
		t.Errorf("MaxConns with pool_max_conns=3 = %d, want 3", n)
	}
}

// A claim of webhook deliveries reads the ready deliveries in due order
// from webhook_deliveries_ready, or one endpoint's from
// webhook_deliveries_ready_endpoint, and finds the endpoints by a seek
// each: never a sequential scan, nor a sort of what is due (a dead
// endpoint's backlog made every claim read all of it). The upkeep of
// ready_at reads one endpoint and transfer's pending deliveries, by
// webhook_deliveries_head. Both plans a prepared statement gets.
func TestDeliveryClaimPlansUseIndexes(t *testing.T) {
	ctx := context.Background()
	conn := planConn(t)
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
		if _, err := conn.Exec(ctx, `SET plan_cache_mode = `+mode); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			name, q string
			args    []any
			want    []string
		}{
			{"earliest due", postgres.EarliestDueSQL, []any{at, 72}, []string{`Index (Only )?Scan using webhook_deliveries_ready on webhook_deliveries`,
				`Index Cond: \(ready_at <= `}},
			{"an endpoint's due", postgres.EndpointDueSQL, []any{"acme/crm", at, 8}, []string{
				`Index (Only )?Scan using webhook_deliveries_ready_endpoint on webhook_deliveries`, `Index Cond: \(\(endpoint_key = .*\) AND \(ready_at <= `}},
			// EXPLAIN does not show the recursive step's subquery (the
			// seek past each key); BenchmarkClaimPastABacklog times it.
			{"ready endpoints", postgres.ReadyEndpointsSQL, nil, []string{`Recursive Union`,
				`Index Only Scan using webhook_deliveries_ready_endpoint on webhook_deliveries`, `Index Cond: \(endpoint_key = e\.k\)`}},
			{"rehead", postgres.ReheadSQL, []any{"acme/crm", "tr_1"}, []string{`Index Scan using webhook_deliveries_head on webhook_deliveries`}},
			// The picked deliveries by their ids, each one's payload by
			// the same.
			{"lock picked", postgres.ClaimLockSQL, []any{[]string{"dlv_1", "dlv_2"}}, []string{
				`Index Scan using webhook_deliveries_pkey on webhook_deliveries d`, `Index Cond: \(id = ANY `,
				`Nested Loop Left Join`, `Index Scan using webhook_payloads_pkey on webhook_payloads p`}},
			// RepairHeads: each pair's first pending delivery in the head
			// index's order, and the ready deliveries.
			{"wrong heads", postgres.WrongHeadsSQL, []any{200}, []string{`Unique`, `Index Scan using webhook_deliveries_head on webhook_deliveries`,
				`Index (Only )?Scan using webhook_deliveries_ready on webhook_deliveries r`,
				`Index (Only )?Scan using webhook_deliveries_head on webhook_deliveries e .*\n.*Index Cond: \(\(endpoint_key = r\.endpoint_key\) AND \(transfer_id = r\.transfer_id\)\)`}},
			{"ready but wrong", postgres.FixReadySQL, nil, []string{`Index (Only )?Scan using webhook_deliveries_ready on webhook_deliveries`,
				`Index Scan using webhook_deliveries_(pkey|ready|ready_endpoint) on webhook_deliveries +\(`}},
		} {
			plan := explain(t, conn, c.q, c.args)
			for _, w := range c.want {
				if !regexp.MustCompile(w).MatchString(plan) {
					t.Errorf("%s (%s): want %s:\n%s", c.name, mode, w, plan)
				}
			}
			if strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Sort") {
				t.Errorf("%s (%s): a sequential scan or a sort:\n%s", c.name, mode, plan)
			}
		}
	}
}

// A claim's reads of what is due keep their plans in a store that holds a
// delivery history, as delivery's transactions plan them
// (DeliveriesPlanSQL): generic plans, made without the time or the limit,
// on a table of 200,000 delivered deliveries, none ready, analyzed, and
// not vacuumed since, with parallel workers and JIT made free. Each reads
// an index in due order, as many rows as it takes: no sort, no bitmap of
// every due row, no parallel workers, no JIT compilation.
// Left to the server's settings, the earliest-due read fetched every due
// row by bitmap and sorted them, in two workers: 50 ms for a claim that
// found nothing, every scan, at 760,000 deliveries; with those off, the
// generic plan's estimate was past jit_above_cost, and compiling it took
// 5 ms of every claim.
func TestDeliveryClaimPlansOverAHistory(t *testing.T) {
	ctx := context.Background()
	s, url := openWithURL(t)
	conn := connect(t, url)
	if _, err := conn.Exec(ctx, `INSERT INTO webhook_deliveries (id, tenant, endpoint_key, transfer_id, seq, pos, status,
			next_attempt, lease_until, created_at, failing, finished_at, rec)
		SELECT 'dlv_' || i, 'acme', 'acme/crm', 'tr_' || (i / 8), i % 8 + 1, i, 'delivered',
			now() - interval '1 day', '-infinity', now() - interval '1 day', false, now() - interval '1 day',
			jsonb_build_object('LastError', '', 'Pad', repeat('x', 300))
		FROM generate_series(1, 200000) i;
		ANALYZE webhook_deliveries`); err != nil {
		t.Fatal(err)
	}
	// Workers and JIT compilation made free to the planner, as if the
	// table were big enough for them to pay: only the transaction's
	// settings keep them out.
	if _, err := conn.Exec(ctx, `SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
		SET min_parallel_table_scan_size = 0; SET min_parallel_index_scan_size = 0; SET jit_above_cost = 0`); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	for _, c := range []struct {
		name, q string
		args    []any
		want    string
	}{
		{"earliest due", postgres.EarliestDueSQL, []any{at, 16}, `Index (Only )?Scan using webhook_deliveries_ready on webhook_deliveries`},
		{"an endpoint's due", postgres.EndpointDueSQL, []any{"acme/crm", at, 16},
			`Index (Only )?Scan using webhook_deliveries_ready_endpoint on webhook_deliveries`},
		{"ready endpoints", postgres.ReadyEndpointsSQL, nil, `Index Only Scan using webhook_deliveries_ready_endpoint on webhook_deliveries`},
	} {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, postgres.DeliveriesPlanSQL(s)); err != nil {
			t.Fatal(err)
		}
		plan := explain(t, conn, c.q, c.args)
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(c.want).MatchString(plan) || regexp.MustCompile(`Sort|Bitmap|Gather|Seq Scan|JIT`).MatchString(plan) {
			t.Errorf("%s: want %s, and no sort, bitmap, workers, scan or JIT:\n%s", c.name, c.want, plan)
		}
	}
}

// The multi-row writes of webhook delivery (an enqueue's heads, a batch
// of results, a claim's leases) join arrays to webhook_deliveries: under
// a batch's plan settings the plan is a nested loop from the arrays to
// the primary key, and to webhook_deliveries_head for a pair's first
// pending delivery, whatever the table holds and whatever the planner
// knows of it (a new database's plan is cached per connection), in both
// plans a prepared statement gets.
func TestDeliveryWritePlans(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	key := webhooks.EndpointKey("acme", "crm")
	var pos int64
	fill := func(n int) {
		var ds []webhooks.Delivery
		for range n {
			pos++
			ev := fmt.Sprint("evt_", pos)
			ds = append(ds, webhooks.Delivery{ID: webhooks.DeliveryID(key, ev), Tenant: "acme", Endpoint: "crm", EventID: ev,
				TransferID: fmt.Sprint("tr_", pos%50), Seq: pos, Pos: pos, Type: orchestrator.EventStateChanged, Payload: []byte(`{}`),
				Status: webhooks.StatusPending, NextAttempt: now, Deadline: now.Add(time.Hour), CreatedAt: now})
		}
		if err := s.EnqueueDeliveries(ctx, key, pos-int64(n), pos, ds); err != nil {
			t.Fatal(err)
		}
	}
	statements := []struct {
		name, q string
		args    []any
		want    *regexp.Regexp
	}{
		{"promote", postgres.PromoteSQL, []any{[]string{key, key}, []string{"tr_1", "tr_2"}},
			regexp.MustCompile(`(?s)Update on webhook_deliveries d.*-> +Nested Loop.*-> +Function Scan on (unnest )?p .*` +
				`-> +Index Scan using webhook_deliveries_head on webhook_deliveries h.*-> +Index Scan using webhook_deliveries_pkey on webhook_deliveries d`)},
		// An enqueue's look for a pending delivery of each candidate
		// head's pair: an index look per row, never a scan of the table.
		{"insert", postgres.InsertDeliveriesSQL, []any{[]string{"a", "b"}, []string{"acme", "acme"}, []string{key, key},
			[]string{"tr_1", "tr_2"}, []int64{1, 1}, []int64{1, 2}, []string{"pending", "pending"}, []time.Time{now, now},
			[]time.Time{now, now}, []time.Time{now, now}, []bool{false, false}, []*time.Time{nil, nil}, [][]byte{[]byte(`{}`), []byte(`{}`)},
			[]bool{true, true}},
			regexp.MustCompile(`(?s)Insert on webhook_deliveries.*-> +Function Scan on (unnest )?u .*SubPlan.*` +
				`-> +Index (Only )?Scan using webhook_deliveries_head on webhook_deliveries h`)},
		{"heads", postgres.HeadsSQL, []any{[]string{key, key}, []string{"tr_1", "tr_2"}},
			regexp.MustCompile(`(?s)Nested Loop.*-> +Function Scan on (unnest )?p .*` +
				`-> +Index Scan using webhook_deliveries_head on webhook_deliveries d`)},
		{"mark ready", postgres.MarkReadySQL, []any{[]string{"a", "b"}},
			regexp.MustCompile(`(?s)Update on webhook_deliveries.*-> +(Bitmap )?Index Scan (using|on) webhook_deliveries_pkey`)},
		{"put", postgres.PutDeliveriesSQL, []any{[]string{"a", "b"}, []string{"pending", "delivered"}, []time.Time{now, now},
			[]time.Time{now, now}, []bool{false, false}, []*time.Time{nil, &now}, [][]byte{[]byte(`{}`), []byte(`{}`)}, []time.Time{now, now},
			[]bool{true, false}},
			regexp.MustCompile(`(?s)Update on webhook_deliveries d.*-> +Nested Loop.*-> +Function Scan on (unnest )?u .*` +
				`-> +Index Scan using webhook_deliveries_pkey on webhook_deliveries d`)},
	}
	for _, c := range []struct {
		rows    int
		analyze bool
	}{{0, false}, {3, false}, {600, true}} {
		if n := c.rows - int(pos); n > 0 {
			fill(n)
		}
		if c.analyze {
			if _, err := conn.Exec(ctx, `ANALYZE webhook_deliveries`); err != nil {
				t.Fatal(err)
			}
		}
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			tx := inBatchSettings(t, s, conn, mode)
			for _, st := range statements {
				if plan := explain(t, conn, st.q, st.args); !st.want.MatchString(plan) {
					t.Errorf("%s, %d rows, %s: want a nested loop from the arrays to the indexes:\n%s", st.name, c.rows, mode, plan)
				}
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// A create's look at the transfers that hold its call (holdingSQL) reads
// the call's entry in transfers_active_call and its entries in
// transfers_owing_call, backwards to the newest, in a batch's settings, whatever the planner knows of the
// tables: empty, a few rows never analyzed, or analyzed with thousands of
// one call's ended transfers (an agent's extension), a few of them still
// open, beside other calls' active ones. Never a walk of the primary key
// or of another index of transfers.
func TestCreatesLookAtTheCallPlan(t *testing.T) {
	indexUsed := regexp.MustCompile(`(?:using|on) (\w+)`)
	ctx := context.Background()
	s, conn := openRaw(t)
	tbl := &planTable{t: t, s: s, conn: conn, ids: batchIDs{at: time.Now()}}
	args := []any{"default|netsapiens|test|1000"}
	for _, c := range []struct {
		rows    int
		analyze bool
	}{{0, false}, {2, false}, {500, true}, {3000, true}} {
		tbl.grow(c.rows, c.analyze, func(tr *orchestrator.Transfer) {
			n := len(tbl.ts)
			if n%10 == 0 { // another call's, active
				tr.Request.Call.User = "agent" + tr.Request.Call.User
				return
			}
			tr.Request.Call.User = "1000"
			tr.State, tr.Outcome = orchestrator.StateCompleted, &orchestrator.Outcome{Reason: orchestrator.ReasonTransferred, Verified: true}
			if n%100 == 1 { // a tombstone, still open
				tr.Cleanup = &orchestrator.Cleanup{Until: tr.CreatedAt.Add(time.Hour), Reason: "the consult leg"}
			}
		})
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			tx := inBatchSettings(t, s, conn, mode)
			plan := explain(t, conn, postgres.HoldingSQL, args)
			want := regexp.MustCompile(`(?s)(Index Scan using|Bitmap Index Scan on) transfers_active_call .*` +
				`Limit.*(Index Scan Backward using|Bitmap Index Scan on) transfers_owing_call `)
			others := false
			for _, m := range indexUsed.FindAllStringSubmatch(plan, -1) {
				others = others || m[1] != "transfers_active_call" && m[1] != "transfers_owing_call" && m[1] != "transfers"
			}
			if !want.MatchString(plan) || others || strings.Contains(plan, "Seq Scan") {
				t.Errorf("%d rows, %s: want transfers_active_call, then transfers_owing_call, alone:\n%s", c.rows, mode, plan)
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// A replica's look for signals put through other replicas (Signalled),
// about once a second, reads the pending signals and looks up each one's
// transfer by its key: never a read of every open transfer of the
// replica, whatever the planner knows of the tables (empty, thousands of
// rows never analyzed, analyzed), in the server's default settings. Found
// measuring: written as a join, it planned as a hash join over the
// replica's open transfers on a young table.
func TestSignalledPlan(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	tbl := &planTable{t: t, s: s, conn: conn, ids: batchIDs{at: time.Now()}}
	for _, c := range []struct {
		rows    int
		analyze bool
	}{{0, false}, {3000, false}, {3000, true}} {
		// A few signals pending, as there are at most.
		added := tbl.grow(c.rows, c.analyze, nil)
		for _, tr := range added[:min(3, len(added))] {
			if err := s.PutSignal(ctx, tr.ID, orchestrator.SignalCancel, 0); err != nil {
				t.Fatal(err)
			}
		}
		for _, mode := range []string{"force_custom_plan", "force_generic_plan"} {
			if _, err := conn.Exec(ctx, `SET plan_cache_mode = `+mode); err != nil {
				t.Fatal(err)
			}
			plan := explain(t, conn, postgres.SignalledSQL, []any{""})
			if strings.Contains(plan, "transfers_open_owner") || strings.Contains(plan, "Seq Scan on transfers") ||
				strings.Contains(plan, "Join") || !strings.Contains(plan, "Index Scan using transfers_pkey on transfers t") {
				t.Errorf("%d rows (analyzed %v), %s: want the signals, and each one's transfer by its key:\n%s", c.rows, c.analyze, mode, plan)
			}
		}
	}
}

// planTable grows a store's transfers through the states a plan test
// looks at: empty, a few rows never analyzed, analyzed.
type planTable struct {
	t    *testing.T
	s    *postgres.Store
	conn *pgx.Conn
	ids  batchIDs
	ts   []*orchestrator.Transfer
}

// grow creates transfers (each of its own user, mk may change it) until
// there are rows, analyzes the tables when analyze is set, and returns
// the transfers it created.
func (p *planTable) grow(rows int, analyze bool, mk func(*orchestrator.Transfer)) []*orchestrator.Transfer {
	p.t.Helper()
	n := len(p.ts)
	for len(p.ts) < rows {
		tr := p.ids.transfer(fmt.Sprint(len(p.ts)))
		if mk != nil {
			mk(tr)
		}
		p.ts = append(p.ts, tr)
	}
	createAll(p.t, p.s, p.ts[n:]...)
	if analyze {
		if _, err := p.conn.Exec(context.Background(), `ANALYZE transfers, transfer_keys, signals`); err != nil {
			p.t.Fatal(err)
		}
	}
	return p.ts[n:]
}
