package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/sqlite"
	"github.com/transferd/transferd/internal/webhooks"
	"github.com/transferd/transferd/internal/webhooks/webhookstest"
)

// planFilters are the lists the API offers: one tenant's transfers with
// at most one filter, newest first, with and without the cursor.
func planFilters() map[string]orchestrator.ListFilter {
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	cursor := orchestrator.NewID(at)
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
	out := map[string]orchestrator.ListFilter{}
	for name, f := range fs {
		f.Tenant, f.Limit = "acme", 200
		out[name] = f
		f.After = cursor
		out[name+", cursor"] = f
	}
	return out
}

// Every list the API offers is served by an index in list order: no
// table or index scan, and no sort of the matching rows (a page must not
// cost more with a million stored transfers). Several states are merged
// from bounded branches, whose few ids may be sorted. The index searched
// has every column the list compares for equality: an index of some of
// them walks rows the others then filter out (provider+state walked the
// provider's index, 26 ms p99 at 100k stored).
func TestListPlansUseIndexes(t *testing.T) {
	dir := t.TempDir()
	open(t, dir).Close()
	db := rawDB(t, dir)
	for name, f := range planFilters() {
		q, args := sqlite.ListQuery(f)
		plan := explain(t, db, q, args)
		for _, line := range plan {
			if strings.HasPrefix(line, "SCAN transfers") {
				t.Errorf("%s: the plan scans: %q\n%s", name, line, strings.Join(plan, "\n"))
			}
			if strings.Contains(line, "TEMP B-TREE") && len(f.States) < 2 {
				t.Errorf("%s: the plan sorts: %q\n%s", name, line, strings.Join(plan, "\n"))
			}
		}
		if !strings.Contains(strings.Join(plan, "\n"), "INDEX transfers_") {
			t.Errorf("%s: no list index in the plan:\n%s", name, strings.Join(plan, "\n"))
		}
		for _, col := range equalityColumns(f) {
			searched := false
			for _, line := range plan {
				searched = searched || strings.HasPrefix(line, "SEARCH transfers USING") && strings.Contains(line, col+"=?")
			}
			if !searched {
				t.Errorf("%s: no index search on %s:\n%s", name, col, strings.Join(plan, "\n"))
			}
		}
	}
	for name, f := range map[string]orchestrator.EventFilter{
		"stream":   {Tenant: "acme", After: 10, Limit: 100},
		"transfer": {Tenant: "acme", TransferID: orchestrator.NewID(time.Now()), After: 10, Limit: 100},
	} {
		q, args := sqlite.EventsQuery(f)
		plan := explain(t, db, q, args)
		joined := strings.Join(plan, "\n")
		if !strings.Contains(joined, "SEARCH events USING INDEX events_") || strings.Contains(joined, "TEMP B-TREE") {
			t.Errorf("events %s: want a search of an events index in position order:\n%s", name, joined)
		}
		// Where a stream opened "from now" starts: one entry of the
		// same index, read from its end, whatever the history.
		q, args = sqlite.LastEventQuery(f)
		plan = explain(t, db, q, args)
		joined = strings.Join(plan, "\n")
		if !lastEventPlan.MatchString(joined) || strings.Contains(joined, "TEMP B-TREE") {
			t.Errorf("last event %s: want a search of an events index in position order:\n%s", name, joined)
		}
	}
}

// lastEventPlan is a search of an events index, its entries enough.
var lastEventPlan = regexp.MustCompile(`SEARCH events USING (COVERING )?INDEX events_`)

// deliveryFilters are the operators' listings of webhook deliveries
// (GET /v1/webhook-deliveries): a tenant's, by default the failing and
// dead ones, by status, or one transfer's, with and without the cursor.
func deliveryFilters() map[string]webhooks.DeliveryFilter {
	fs := webhookstest.ListFilters()
	out := map[string]webhooks.DeliveryFilter{}
	for name, f := range fs {
		f.Tenant, f.Limit = "acme", 50
		out[name] = f
		f.After = webhooks.DeliveryID(webhooks.EndpointKey("acme", "crm"), "evt_1")
		out[name+", cursor"] = f
	}
	return out
}

// Every listing of webhook deliveries reads as many index entries as the
// page needs, cursor included, whatever the number of deliveries the
// tenant has (schema 14): one transfer's from webhook_deliveries_transfer;
// failing, dead and pending ones each from the index of their kind, in
// list order, (pos, id) descending; the others from
// webhook_deliveries_tenant in list order. No scan, and no sort but the
// merge of a page per kind.
func TestDeliveriesListPlanUsesIndex(t *testing.T) {
	dir := t.TempDir()
	open(t, dir).Close()
	db := rawDB(t, dir)
	index := map[webhooks.ListKind]string{
		webhooks.ListPending: `webhook_deliveries_status \(tenant=\? AND status=\?`,
		webhooks.ListDead:    `webhook_deliveries_status \(tenant=\? AND status=\?`,
		webhooks.ListFailing: `webhook_deliveries_failing \(tenant=\?`,
	}
	for name, f := range deliveryFilters() {
		q, args := sqlite.DeliveriesQuery(f)
		plan := explain(t, db, q, args)
		joined := strings.Join(plan, "\n")
		var want []string
		kinds := webhooks.ListKinds(f)
		switch {
		case f.TransferID != "":
			want = []string{`webhook_deliveries_transfer \(transfer_id=\?`}
		case kinds != nil:
			for _, k := range kinds {
				want = append(want, index[k])
			}
		default:
			want = []string{`webhook_deliveries_tenant \(tenant=\?`}
		}
		for _, w := range want {
			re := regexp.MustCompile(`(?m)^SEARCH webhook_deliveries USING (COVERING )?INDEX ` + w)
			if n := len(re.FindAllString(joined, -1)); n < strings.Count(strings.Join(want, "\n"), w) {
				t.Errorf("%s: want a search of %s for each kind:\n%s", name, w, joined)
			}
			if f.After != "" && !regexp.MustCompile(w+`.*(pos<\?|\(pos,id\)<\(\?,\?\))\)`).MatchString(joined) {
				t.Errorf("%s: the cursor does not bound the search of %s:\n%s", name, w, joined)
			}
		}
		if strings.Contains(joined, "SCAN webhook_deliveries") || len(kinds) < 2 && strings.Contains(joined, "TEMP B-TREE") {
			t.Errorf("%s: the plan scans or sorts:\n%s", name, joined)
		}
	}
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

// explain returns the lines of SQLite's query plan of q.
func explain(t *testing.T, db *sql.DB, q string, args []any) []string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatalf("explain %s: %v", q, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		out = append(out, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The lookup of the transfer that holds a call (a refused create names
// it) is served by the partial index of active calls, whose predicate it
// repeats; and a save evaluates that predicate without a temporary b-tree,
// which a NOT IN list of three states costs at every execution.
func TestActiveCallPredicate(t *testing.T) {
	dir := t.TempDir()
	open(t, dir).Close()
	db := rawDB(t, dir)
	plan := strings.Join(explain(t, db, `SELECT id FROM transfers WHERE call_key = ? AND `+sqlite.NonTerminal, []any{"k"}), "\n")
	if !strings.Contains(plan, "INDEX transfers_active_call") {
		t.Errorf("the lookup of a call's active transfer does not use transfers_active_call:\n%s", plan)
	}
	rows, err := db.Query(`EXPLAIN `+sqlite.UpdateSQL, 2, "holding", "A", 1, "now", "{}", "tr_1", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		if op, _ := vals[1].(string); op == "OpenEphemeral" {
			t.Errorf("a save's UPDATE builds a temporary b-tree (%v)", vals)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// The purge of finished webhook deliveries finds them in
// webhook_deliveries_finished, searched by finished_at in its order: no
// scan of webhook_deliveries (mostly pending ones under load, and millions
// of rows when a backlog is first purged) and no sort; each row is then
// deleted by its rowid. (The index does not cover the subquery: SQLite
// reads each row's status, which the row's deletion reads anyway.)
func TestDeliveriesPurgePlanUsesIndex(t *testing.T) {
	dir := t.TempDir()
	open(t, dir).Close()
	db := rawDB(t, dir)
	plan := explain(t, db, sqlite.PurgeDeliveriesSQL, []any{"2026-11-30T12:00:00.000000000Z", 4})
	joined := strings.Join(plan, "\n")
	if !regexp.MustCompile(`(?m)^SEARCH webhook_deliveries USING (COVERING )?INDEX webhook_deliveries_finished \(finished_at<\?\)$`).MatchString(joined) ||
		!regexp.MustCompile(`(?m)^SEARCH webhook_deliveries USING INTEGER PRIMARY KEY \(rowid=\?\)$`).MatchString(joined) ||
		strings.Contains(joined, "SCAN webhook_deliveries") || strings.Contains(joined, "TEMP B-TREE") {
		t.Errorf("want a search of webhook_deliveries_finished and deletes by rowid:\n%s", joined)
	}
}

// A claim of webhook deliveries reads the ready deliveries in due order
// from webhook_deliveries_ready, or one endpoint's from
// webhook_deliveries_ready_endpoint, and finds the endpoints by a seek
// each: never a scan, nor a sort of what is due (a dead endpoint's
// backlog made every claim read all of it). The upkeep of ready_at reads
// one endpoint and transfer's pending deliveries, by
// webhook_deliveries_head.
func TestDeliveryClaimPlansUseIndexes(t *testing.T) {
	dir := t.TempDir()
	open(t, dir).Close()
	db := rawDB(t, dir)
	at := "2026-11-30T12:00:00.000000000Z"
	for _, c := range []struct {
		name, q string
		args    []any
		want    []string
	}{
		{"earliest due", sqlite.EarliestDueSQL, []any{at, 72}, []string{`SEARCH webhook_deliveries USING (COVERING )?INDEX webhook_deliveries_ready \(ready_at>\? AND ready_at<\?\)`}},
		{"an endpoint's due", sqlite.EndpointDueSQL, []any{"acme/crm", at, 8},
			[]string{`SEARCH webhook_deliveries USING (COVERING )?INDEX webhook_deliveries_ready_endpoint \(endpoint_key=\? AND ready_at>\? AND ready_at<\?\)`}},
		{"ready endpoints", sqlite.ReadyEndpointsSQL, nil, []string{
			`SEARCH webhook_deliveries USING COVERING INDEX webhook_deliveries_ready_endpoint \(endpoint_key>\?\)`,
			`SEARCH webhook_deliveries USING COVERING INDEX webhook_deliveries_ready_endpoint \(endpoint_key=\? AND ready_at>\?\)`}},
		{"rehead", sqlite.ReheadSQL, []any{"acme/crm", "tr_1"}, []string{
			`SEARCH webhook_deliveries USING INDEX webhook_deliveries_head \(endpoint_key=\? AND transfer_id=\?\)`}},
		// Each picked delivery by its id, and its payload by the same.
		{"the claim's records", sqlite.ClaimRecordsSQL, []any{`["dlv_1","dlv_2"]`}, []string{
			`SEARCH d USING INDEX sqlite_autoindex_webhook_deliveries_1 \(id=\?\)`,
			`SEARCH p USING INDEX sqlite_autoindex_webhook_payloads_1 \(id=\?\) LEFT-JOIN`}},
		// An enqueue's look for a pending delivery of its candidate head's pair.
		{"insert", sqlite.InsertDeliverySQL, []any{"dlv_1", "acme", "acme/crm", "tr_1", 1, 1, "pending", at, at, at, nil, `{}`, true, at},
			[]string{`SEARCH webhook_deliveries USING (COVERING )?INDEX webhook_deliveries_head \(endpoint_key=\? AND transfer_id=\?\)`}},
		{"promote", sqlite.PromoteSQL, []any{"acme/crm", "tr_1"}, []string{
			`SEARCH webhook_deliveries USING (COVERING )?INDEX webhook_deliveries_head \(endpoint_key=\? AND transfer_id=\?\)`,
			`SEARCH webhook_deliveries USING INDEX sqlite_autoindex_webhook_deliveries_1 \(id=\?\)`}},
	} {
		joined := strings.Join(explain(t, db, c.q, c.args), "\n")
		for _, w := range c.want {
			if !regexp.MustCompile(`(?m)^` + w + `$`).MatchString(joined) {
				t.Errorf("%s: want %s:\n%s", c.name, w, joined)
			}
		}
		if strings.Contains(joined, "SCAN webhook_deliveries") || strings.Contains(joined, "SCAN d") || strings.Contains(joined, "SCAN p") ||
			strings.Contains(joined, "TEMP B-TREE") {
			t.Errorf("%s: a scan or a sort:\n%s", c.name, joined)
		}
	}
}

// A create's look at the transfers that hold its call (Store.Create)
// searches the call's entry in transfers_active_call, and its ended open
// transfers backwards to the newest: no scan of the table, no sort, none
// of the call's other transfers. With no statistics, as the store runs, and
// after ANALYZE of a table where one call (an agent's extension) has
// thousands of ended transfers, a few of them open, beside active ones.
func TestCreatesLookAtTheCallPlan(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	db := rawDB(t, dir)
	check := func(when string) {
		t.Helper()
		joined := strings.Join(explain(t, db, sqlite.HoldingSQL, []any{"default|netsapiens|test|1000"}), "\n")
		for _, want := range []string{`SEARCH transfers USING INDEX transfers_active_call \(call_key=\?\)`,
			`SEARCH transfers USING INDEX transfers_owing_call \(call_key=\?\)`} {
			if !regexp.MustCompile(`(?m)^` + want + `$`).MatchString(joined) {
				t.Errorf("%s: want %s:\n%s", when, want, joined)
			}
		}
		if strings.Contains(joined, "SCAN transfers") || strings.Contains(joined, "TEMP B-TREE") {
			t.Errorf("%s: a scan or a sort:\n%s", when, joined)
		}
	}
	check("no statistics")
	at := time.Now()
	for i := range 3000 {
		tr := &orchestrator.Transfer{ID: orchestrator.NewID(at.Add(time.Duration(i) * time.Millisecond)),
			State: orchestrator.StateCompleted, CreatedAt: at, UpdatedAt: at,
			Outcome: &orchestrator.Outcome{Reason: orchestrator.ReasonTransferred, Verified: true},
			Request: orchestrator.Request{Provider: "netsapiens", Mode: orchestrator.ModeAttended,
				Call: orchestrator.CallRef{Domain: "test", User: "1000"}, Target: "1010"}}
		switch {
		case i%100 == 0: // a tombstone, open
			tr.Cleanup = &orchestrator.Cleanup{Until: at.Add(time.Hour), Reason: "the consult leg"}
		case i%10 == 0: // another call's, active
			tr.State, tr.Outcome, tr.Request.Call.User = orchestrator.StatePending, nil, strconv.Itoa(2000+i)
		}
		if err := s.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	check("analyzed")
}

// The poll for signals (Store.Signalled) reads the signals and looks up
// each one's transfer by its key, never every open transfer the replica
// owns: with no statistics, as the store runs, and after ANALYZE of a
// table of open transfers with a few signals.
func TestSignalledPlan(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	db := rawDB(t, dir)
	check := func(when string) {
		t.Helper()
		plan := strings.Join(explain(t, db, sqlite.SignalledSQL, []any{"A"}), "\n")
		if !strings.Contains(plan, "SCAN s USING COVERING INDEX sqlite_autoindex_signals_1") ||
			!strings.Contains(plan, "SEARCH t USING INDEX sqlite_autoindex_transfers_1 (id=?)") ||
			strings.Contains(plan, "transfers_open_owner") || strings.Contains(plan, "SCAN t") {
			t.Errorf("%s: want the signals, and each one's transfer by its key:\n%s", when, plan)
		}
	}
	check("empty")
	for i := range 300 {
		tr := newTransfer(fmt.Sprint(1000 + i))
		tr.Owner = "A"
		if err := s.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
		if i < 3 {
			if err := s.PutSignal(ctx, tr.ID, orchestrator.SignalCancel, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := db.Exec(`ANALYZE`); err != nil {
		t.Fatal(err)
	}
	check("analyzed")
	if got, err := s.Signalled(ctx, "A"); err != nil || len(got) != 3 {
		t.Fatalf("Signalled(A) = %v, %v; want the 3 signalled", got, err)
	}
}
