package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
	"github.com/transferd/transferd/internal/webhooks"
	"github.com/transferd/transferd/internal/webhooks/webhookstest"
)

// TestDeliveries runs the webhook store suite the memory and SQLite stores
// pass, so that the dispatcher behaves the same on every store.
func TestDeliveries(t *testing.T) {
	webhookstest.Run(t, func(t *testing.T) webhooks.Store { return open(t) })
}

// A database of schema 8 with finished deliveries migrates: schema 9
// takes each finished delivery's finished_at from its record's UpdatedAt,
// leaves pending ones without, and the purge then deletes the finished
// ones past the cut and only those.
func TestMigrateDeliveriesToSchema9(t *testing.T) {
	ctx := context.Background()
	url := inSchema(baseURL(t), newSchema(t, baseURL(t)))
	s, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	want := map[string]*time.Time{}
	at := map[string]webhookstest.Finish{
		"tr_old":     {Status: webhooks.StatusDelivered, At: now.Add(-48*time.Hour + 123456*time.Microsecond)},
		"tr_dead":    {Status: webhooks.StatusDead, At: now.Add(-47 * time.Hour)},
		"tr_young":   {Status: webhooks.StatusDelivered, At: now.Add(-time.Hour)},
		"tr_pending": {Status: webhooks.StatusPending, At: now.Add(-40 * time.Hour)},
	}
	for tr, f := range at {
		want[tr] = nil // pending: NULL
		if f.Status != webhooks.StatusPending {
			want[tr] = &f.At
		}
	}
	ids := webhookstest.Finished(t, s, at)
	s.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	undoSchema12(t, conn)
	if _, err := conn.Exec(ctx, `ALTER TABLE webhook_deliveries DROP COLUMN finished_at; DELETE FROM schema_migrations WHERE version >= 9`); err != nil {
		t.Fatalf("back to schema 8: %v", err)
	}
	s, err = postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for tr, w := range want {
		var got *time.Time
		err := conn.QueryRow(ctx, `SELECT finished_at FROM webhook_deliveries WHERE id = $1`, ids[tr]).Scan(&got)
		if err != nil || (got == nil) != (w == nil) || got != nil && !got.Equal(*w) {
			t.Errorf("%s: finished_at %v (%v), want %v", tr, got, err, w)
		}
	}
	if n, err := s.PurgeDeliveries(ctx, now.Add(-24*time.Hour), 0); n != 2 || err != nil {
		t.Errorf("purge after the migration: %d (%v), want tr_old and tr_dead", n, err)
	}
	if n, err := s.PurgeDeliveries(ctx, now.Add(time.Hour), 0); n != 1 || err != nil {
		t.Errorf("purge of the rest: %d (%v), want tr_young (the pending one stays)", n, err)
	}
}

// A database of schema 11 with deliveries pending, in flight, failing and
// delivered migrates: schema 12 makes ready exactly the first pending
// delivery of each endpoint and transfer, claimable when its back-off or
// lease ends.
func TestMigrateDeliveriesToSchema12(t *testing.T) {
	ctx := context.Background()
	base := baseURL(t)
	url := inSchema(base, newSchema(t, base))
	s, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	webhookstest.ClaimsBeforeMigration(t, s)
	s.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	undoSchema12(t, conn)
	if s, err = postgres.Open(ctx, url); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	webhookstest.ClaimsAfterMigration(t, s)
}

func BenchmarkClaimPastABacklog(b *testing.B) {
	for _, backlog := range webhookstest.Backlogs {
		b.Run(backlog, func(b *testing.B) { webhookstest.BenchClaimPastABacklog(b, open(b), backlog) })
	}
}

// BenchmarkRepairHeadsPastABacklog times RepairHeads, which the dispatcher
// of every replica runs once a minute, with nothing to set right, beside
// each backlog of webhookstest.Backlogs (50,000 deliveries pending to an
// endpoint that is down): it reads every pending delivery once, so this
// is what a long outage of an endpoint adds to each replica's minute. The
// table is analyzed, as autovacuum would have by then.
func BenchmarkRepairHeadsPastABacklog(b *testing.B) {
	ctx := context.Background()
	for _, backlog := range webhookstest.Backlogs {
		b.Run(backlog, func(b *testing.B) {
			s, url := openWithURL(b)
			webhookstest.FillBacklog(b, s, backlog)
			if _, err := connect(b, url).Exec(ctx, `ANALYZE webhook_deliveries`); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if n, err := s.RepairHeads(ctx); n != 0 || err != nil {
					b.Fatalf("RepairHeads = %d, %v; want nothing to set right", n, err)
				}
			}
		})
	}
}

// Results that arrive together are written in one transaction, each with
// its own verdict, as they would be one at a time: a lost claim changes
// nothing, a failed attempt stays pending until its retry, and a head
// that ended makes its transfer's next delivery claimable.
func TestResultsWrittenTogether(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	key := webhooks.EndpointKey("acme", "crm")
	delivery := func(pos int64, transfer string, seq int64) webhooks.Delivery {
		return pendingDelivery(pos, transfer, seq, now)
	}
	var ds []webhooks.Delivery
	for i := range 8 {
		ds = append(ds, delivery(int64(i+1), "tr_"+strconv.Itoa(i), 1))
	}
	next := delivery(9, "tr_0", 2) // behind tr_0's first
	ds = append(ds, next)
	if err := s.EnqueueDeliveries(ctx, key, 0, 9, ds); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 16, nil)
	if err != nil || len(claimed) != 8 {
		t.Fatalf("claimed %d (%v), want the 8 heads", len(claimed), err)
	}
	claimed[3].Attempts = 7 // a claim lost to another replica's
	queued, release := postgres.HoldFinishTurn(s)
	before := postgres.FinishBatches(s)
	type verdict struct {
		d   webhooks.Delivery
		ok  bool
		err error
	}
	verdicts := make([]chan verdict, len(claimed))
	for i, d := range claimed {
		verdicts[i] = make(chan verdict, 1)
		d.Status, d.UpdatedAt = webhooks.StatusDelivered, now
		if d.TransferID == "tr_5" { // failed, retried in a minute
			d.Status, d.NextAttempt, d.LastCode, d.LastError = webhooks.StatusPending, now.Add(time.Minute), 503, "503"
		}
		go func() {
			got, ok, err := s.FinishDelivery(ctx, d)
			verdicts[i] <- verdict{got, ok, err}
		}()
	}
	for range claimed {
		<-queued
	}
	release()
	for i, v := range verdicts {
		got := <-v
		if got.err != nil || got.ok != (i != 3) {
			t.Errorf("result %d: ok %v (%v), want %v", i, got.ok, got.err, i != 3)
		}
		if got.ok && (got.d.Owner != "" || !got.d.LeaseUntil.IsZero()) {
			t.Errorf("result %d: still leased: %+v", i, got.d)
		}
	}
	if n := postgres.FinishBatches(s) - before; n != 1 {
		t.Errorf("eight results queued together written in %d transactions, want 1", n)
	}
	pending, _, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", Statuses: []webhooks.Status{webhooks.StatusPending}})
	var ids []string
	for _, d := range pending {
		ids = append(ids, d.TransferID+"/"+strconv.FormatInt(d.Seq, 10)+"/"+d.LastError)
	}
	slices.Sort(ids)
	if want := []string{"tr_0/2/", "tr_3/1/", "tr_5/1/503"}; err != nil || !slices.Equal(ids, want) {
		t.Errorf("pending after the batch: %v (%v), want %v", ids, err, want)
	}
	// Due now: tr_0's second delivery, made the head by the batch; the
	// lost claim's lease and the failed attempt's retry are a minute out.
	got, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 16, nil)
	if err != nil || len(got) != 1 || got[0].ID != next.ID {
		t.Fatalf("claim after the batch: %d (%v), want tr_0's next", len(got), err)
	}
	got[0].Status, got[0].UpdatedAt = webhooks.StatusDelivered, now
	if _, ok, err := s.FinishDelivery(ctx, got[0]); !ok || err != nil {
		t.Fatalf("finish tr_0's next: %v (%v)", ok, err)
	}
	got, err = s.ClaimDeliveries(ctx, "r1", now.Add(time.Minute), time.Minute, 16, nil)
	var later []string
	for _, d := range got {
		later = append(later, d.TransferID)
	}
	slices.Sort(later)
	if err != nil || !slices.Equal(later, []string{"tr_3", "tr_5"}) {
		t.Errorf("claim a minute later: %v (%v), want tr_3 and tr_5", later, err)
	}
}

// The writes of webhook delivery take as few round trips as their
// statements' order allows: BEGIN goes with the first statements, COMMIT
// with the last, and a claim's first read with the results' writes
// before it. The dispatcher's scan waits for each, one after another.
// The claim still sees the head a result made.
func TestDeliveryWritesRoundTrips(t *testing.T) {
	ctx := context.Background()
	var rt postgres.RoundTrips
	s, err := postgres.OpenCounting(ctx, inSchema(baseURL(t), newSchema(t, baseURL(t))), &rt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	now := time.Now().UTC().Truncate(time.Millisecond)
	key := webhooks.EndpointKey("acme", "crm")
	first, second, other := pendingDelivery(1, "tr_1", 1, now), pendingDelivery(2, "tr_1", 2, now), pendingDelivery(3, "tr_2", 1, now)
	counted := func(what string, want int64, f func() error) {
		t.Helper()
		before := rt.N()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n := rt.N() - before; n != want {
			t.Errorf("%s: %d round trips, want %d", what, n, want)
		}
	}
	counted("enqueue", 2, func() error {
		return s.EnqueueDeliveries(ctx, key, 0, 3, []webhooks.Delivery{first, second, other})
	})
	var claimed []webhooks.Delivery
	counted("a claim alone", 3, func() (err error) {
		claimed, err = s.ClaimDeliveries(ctx, "r1", now, time.Minute, 1, nil)
		return err
	})
	if len(claimed) != 1 || claimed[0].ID != first.ID {
		t.Fatalf("claimed %v, want tr_1's first", claimed)
	}
	delivered := func(ds ...webhooks.Delivery) []webhooks.Delivery {
		for i := range ds {
			ds[i].Status, ds[i].UpdatedAt = webhooks.StatusDelivered, now
		}
		return ds
	}
	counted("a result and a claim", 4, func() (err error) {
		var vs []webhooks.Finished
		vs, claimed, err = s.SettleDeliveries(ctx, delivered(claimed[0]), "r1", now, time.Minute, 16, nil)
		if err == nil && (len(vs) != 1 || !vs[0].OK) {
			err = fmt.Errorf("result refused: %+v", vs)
		}
		return err
	})
	var ids []string
	for _, d := range claimed {
		ids = append(ids, d.ID)
	}
	slices.Sort(ids)
	if want := []string{second.ID, other.ID}; !slices.Equal(ids, slices.Sorted(slices.Values(want))) {
		t.Fatalf("claimed with the result %v, want %v (tr_1's second, made the head by the result, and tr_2's)", ids, want)
	}
	counted("results alone", 2, func() error {
		vs, _, err := s.SettleDeliveries(ctx, delivered(claimed...), "", time.Time{}, 0, 0, nil)
		if err == nil && (len(vs) != 2 || !vs[0].OK || !vs[1].OK) {
			err = fmt.Errorf("results refused: %+v", vs)
		}
		return err
	})
	counted("a claim of nothing", 2, func() (err error) {
		claimed, err = s.ClaimDeliveries(ctx, "r1", now, time.Minute, 16, nil)
		if err == nil && len(claimed) > 0 {
			err = fmt.Errorf("claimed %d, want none", len(claimed))
		}
		return err
	})
}

// A replica of a version before schema 12, sharing the database during a
// rolling upgrade, enqueues deliveries without marking the heads ready,
// delivers a head without marking the next, and finishes a delivery
// without unmarking it. RepairHeads sets all three right, and the
// deliveries left unready are claimed again; a second run finds nothing.
func TestRepairHeadsLeftByAnOlderReplica(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	key := webhooks.EndpointKey("acme", "crm")
	delivery := func(pos int64, transfer string, seq int64) webhooks.Delivery {
		return pendingDelivery(pos, transfer, seq, now)
	}
	ds := []webhooks.Delivery{delivery(1, "tr_a", 1), delivery(2, "tr_a", 2), delivery(3, "tr_b", 1), delivery(4, "tr_c", 1),
		delivery(5, "tr_ok", 1)}
	if err := s.EnqueueDeliveries(ctx, key, 0, 5, ds); err != nil {
		t.Fatal(err)
	}
	// tr_c's delivery is delivered, by this version.
	claimed, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 16, nil)
	if err != nil || len(claimed) != 4 {
		t.Fatalf("claimed %d (%v), want the 4 heads", len(claimed), err)
	}
	for _, d := range claimed {
		if d.TransferID == "tr_c" {
			d.Status, d.UpdatedAt = webhooks.StatusDelivered, now
			if _, ok, err := s.FinishDelivery(ctx, d); !ok || err != nil {
				t.Fatalf("finish: %v (%v)", ok, err)
			}
		} else {
			d.Status, d.NextAttempt, d.LastError, d.UpdatedAt = webhooks.StatusPending, now, "refused", now
			if _, ok, err := s.FinishDelivery(ctx, d); !ok || err != nil {
				t.Fatalf("finish: %v (%v)", ok, err)
			}
		}
	}
	// What the older replica leaves: tr_a's first delivered without its
	// second marked, tr_b's enqueued unmarked, tr_c's delivery finished
	// after this version marked it (as a redelivery does) and left marked.
	for _, q := range []string{
		`UPDATE webhook_deliveries SET status = 'delivered', finished_at = now(), ready_at = NULL WHERE transfer_id = 'tr_a' AND seq = 1`,
		`UPDATE webhook_deliveries SET ready_at = NULL WHERE transfer_id = 'tr_b'`,
		`UPDATE webhook_deliveries SET ready_at = now() - interval '1 minute' WHERE transfer_id = 'tr_c'`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.RepairHeads(ctx)
	if err != nil || n != 3 {
		t.Fatalf("RepairHeads changed %d (%v), want 3", n, err)
	}
	got, err := s.ClaimDeliveries(ctx, "r1", now.Add(time.Second), time.Minute, 16, nil)
	var heads []string
	for _, d := range got {
		heads = append(heads, d.TransferID+"/"+strconv.FormatInt(d.Seq, 10))
	}
	slices.Sort(heads)
	if want := []string{"tr_a/2", "tr_b/1", "tr_ok/1"}; err != nil || !slices.Equal(heads, want) {
		t.Errorf("claimed after the repair: %v (%v), want %v", heads, err, want)
	}
	if n, err := s.RepairHeads(ctx); err != nil || n != 0 {
		t.Errorf("a second RepairHeads changed %d (%v), want 0", n, err)
	}
}

// A webhook delivery's record and its payload are compressed with lz4,
// as transfers' records are, wherever the server has it: with pglz,
// compressing each record (then with its payload) at its enqueue, claim
// and result was about a fifth of the database's CPU per transfer with
// every event delivered.
func TestDeliveryRecordsCompressedWithLZ4(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	var transfers, deliveries, payloads string
	if err := conn.QueryRow(ctx, `SELECT
			(SELECT attcompression::text FROM pg_attribute WHERE attrelid = 'transfers'::regclass AND attname = 'record'),
			(SELECT attcompression::text FROM pg_attribute WHERE attrelid = 'webhook_deliveries'::regclass AND attname = 'rec'),
			(SELECT attcompression::text FROM pg_attribute WHERE attrelid = 'webhook_payloads'::regclass AND attname = 'payload')`).
		Scan(&transfers, &deliveries, &payloads); err != nil {
		t.Fatal(err)
	}
	if transfers != "l" {
		t.Skipf("the server keeps pglz (transfers' records: %q)", transfers)
	}
	if deliveries != "l" || payloads != "l" {
		t.Fatalf("webhook_deliveries.rec compression %q, webhook_payloads.payload %q, want lz4 (l)", deliveries, payloads)
	}
	now := time.Now().UTC()
	key := webhooks.EndpointKey("acme", "crm")
	payload := []byte(`{"data":"` + strings.Repeat("transfer.state_changed ", 200) + `"}`)
	d := webhooks.Delivery{ID: webhooks.DeliveryID(key, "evt_1"), Tenant: "acme", Endpoint: "crm", EventID: "evt_1",
		TransferID: "tr_1", Seq: 1, Pos: 1, Type: orchestrator.EventStateChanged, Payload: payload,
		Status: webhooks.StatusPending, NextAttempt: now, Deadline: now.Add(time.Hour), CreatedAt: now}
	if err := s.EnqueueDeliveries(ctx, key, 0, 1, []webhooks.Delivery{d}); err != nil {
		t.Fatal(err)
	}
	var method *string
	if err := conn.QueryRow(ctx, `SELECT pg_column_compression(payload) FROM webhook_payloads`).Scan(&method); err != nil {
		t.Fatal(err)
	}
	if method == nil || *method != "lz4" {
		t.Errorf("a %d-byte payload stored with compression %v, want lz4", len(payload), method)
	}
}

// A replica of a version before schema 12, during a rolling upgrade,
// claims a head this version made ready without moving its ready_at,
// which then says due while that replica's lease runs. No claim takes it
// meanwhile (found by review: it was attempted twice at once, and the
// older replica's result refused as a lost claim); the claim that finds
// it moves its ready_at to the lease's end (else RepairHeads would), and
// the first claim after takes it.
func TestOlderReplicasClaimIsNotClaimedAgain(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	key := webhooks.EndpointKey("acme", "crm")
	d := pendingDelivery(1, "tr_a", 1, now)
	if err := s.EnqueueDeliveries(ctx, key, 0, 1, []webhooks.Delivery{d}); err != nil {
		t.Fatal(err)
	}
	// The older replica's claim, as its ClaimDeliveries wrote it.
	d.Attempts++
	d.Owner, d.LeaseUntil = "old-replica", now.Add(time.Minute)
	rec, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE webhook_deliveries SET next_attempt = $2, lease_until = $3, rec = $4 WHERE id = $1`,
		d.ID, d.NextAttempt, d.LeaseUntil, rec); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ClaimDeliveries(ctx, "new-replica", now.Add(time.Second), time.Minute, 10, nil); err != nil || len(got) != 0 {
		t.Fatalf("claimed %d (%v) while the older replica's lease runs", len(got), err)
	}
	if n, err := s.RepairHeads(ctx); err != nil || n != 0 {
		t.Fatalf("RepairHeads changed %d (%v), want nothing: the claim set the head's ready_at right", n, err)
	}
	var readyAt time.Time
	if err := conn.QueryRow(ctx, `SELECT ready_at FROM webhook_deliveries WHERE id = $1`, d.ID).Scan(&readyAt); err != nil || !readyAt.Equal(d.LeaseUntil) {
		t.Fatalf("ready_at %v (%v), want the lease's end %v", readyAt, err, d.LeaseUntil)
	}
	got, err := s.ClaimDeliveries(ctx, "new-replica", d.LeaseUntil, time.Minute, 10, nil)
	if err != nil || len(got) != 1 || got[0].Attempts != 2 {
		t.Fatalf("claimed %d (%v) once the lease ran out, want it, at its second attempt", len(got), err)
	}
}

// A batch of results that cannot go on (a lock that a stuck replica
// holds) gives up after its bound, as a batch of saves does: its results
// fail, and Close returns (found by review: the batch had no bound, so
// FinishDelivery and Close, and so the process's shutdown, waited for
// ever). Each delivery stays leased, tried again when the lease ends.
func TestStuckResultsGiveUp(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	postgres.SetFinishTimeout(s, 200*time.Millisecond)
	now := time.Now().UTC().Truncate(time.Millisecond)
	key := webhooks.EndpointKey("acme", "crm")
	d := pendingDelivery(1, "tr_a", 1, now)
	if err := s.EnqueueDeliveries(ctx, key, 0, 1, []webhooks.Delivery{d}); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 1, nil)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claimed %d (%v)", len(claimed), err)
	}
	stuck, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Rollback(ctx)
	if _, err := stuck.Exec(ctx, `SELECT pg_advisory_xact_lock(1919247972, $1::int4)`, postgres.PairLockKey(key, "tr_a")); err != nil {
		t.Fatal(err)
	}
	claimed[0].Status, claimed[0].UpdatedAt = webhooks.StatusDelivered, now
	if _, ok, err := s.FinishDelivery(ctx, claimed[0]); err == nil || ok {
		t.Fatalf("a result that could not be written: ok %v, error %v", ok, err)
	}
	s.Close() // returns
	var status string
	var lease time.Time
	if err := stuck.QueryRow(ctx, `SELECT status, lease_until FROM webhook_deliveries WHERE id = $1`, d.ID).Scan(&status, &lease); err != nil ||
		status != "pending" || !lease.Equal(claimed[0].LeaseUntil) {
		t.Errorf("after the failed batch: %s, leased until %v (%v); want pending, leased until %v", status, lease, err, claimed[0].LeaseUntil)
	}
}

// A redelivery writes with the plan settings of the other writes of
// deliveries (found by review: under the server's defaults, the sixth on
// a connection cached a generic plan of the shared statement that read
// the whole table, and every later claim and batch of results on that
// connection ran it, until an analyze).
func TestRedeliverKeepsTheWritesPlan(t *testing.T) {
	ctx := context.Background()
	base := baseURL(t)
	s, err := postgres.Open(ctx, inSchema(base, newSchema(t, base))+"&pool_max_conns=1")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC().Truncate(time.Millisecond)
	key := webhooks.EndpointKey("acme", "crm")
	d := pendingDelivery(1, "tr_a", 1, now)
	if err := s.EnqueueDeliveries(ctx, key, 0, 1, []webhooks.Delivery{d}); err != nil {
		t.Fatal(err)
	}
	for range 6 { // the server caches a generic plan at the sixth run
		if _, err := s.Redeliver(ctx, "acme", d.ID, now, now.Add(time.Hour), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 10, nil); err != nil {
		t.Fatal(err)
	}
	plan, err := postgres.CachedPutPlan(s)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plan, "Seq Scan") || strings.Contains(plan, "Hash Join") || !strings.Contains(plan, "Nested Loop") {
		t.Errorf("the writes of deliveries run, on this connection, a plan that reads the whole table:\n%s", plan)
	}
}

// pendingDelivery is a pending delivery of acme/crm for transfer tr at seq.
func pendingDelivery(pos int64, tr string, seq int64, next time.Time) webhooks.Delivery {
	key := webhooks.EndpointKey("acme", "crm")
	ev := fmt.Sprintf("evt_%03d", pos)
	return webhooks.Delivery{ID: webhooks.DeliveryID(key, ev), Tenant: "acme", Endpoint: "crm", EventID: ev,
		TransferID: tr, Seq: seq, Pos: pos, Type: orchestrator.EventStateChanged, Payload: []byte(`{}`),
		Status: webhooks.StatusPending, NextAttempt: next, Deadline: next.Add(time.Hour), CreatedAt: next, UpdatedAt: next}
}

// A delivery's payload is written once, apart from its record (schema 15):
// the records its claims and results rewrite carry none, the payload is
// still there for the next claim (webhookstest's withPayloads), and it
// goes with its delivery at the purge. The record's old column is gone,
// so that a replica of an older version, which would read no payload from
// the record, fails instead of sending an empty body.
func TestPayloadsApart(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	webhookstest.Finished(t, s, map[string]webhookstest.Finish{
		"tr_a": {Status: webhooks.StatusDelivered, At: time.Now().Add(-48 * time.Hour)},
		"tr_b": {Status: webhooks.StatusPending, At: time.Now().Add(-48 * time.Hour)},
	})
	count := func(q string) int {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	if n := count(`SELECT count(*) FROM webhook_payloads`); n != 2 {
		t.Errorf("%d payloads stored, want 2", n)
	}
	if n := count(`SELECT count(*) FROM webhook_deliveries WHERE rec ? 'Payload'`); n != 0 {
		t.Errorf("%d records carry their payload after their claim and result, want 0", n)
	}
	var pgErr *pgconn.PgError
	if _, err := conn.Exec(ctx, `SELECT record FROM webhook_deliveries`); !errors.As(err, &pgErr) || pgErr.Code != "42703" {
		t.Errorf("an older replica's read of the record: %v, want undefined_column", err)
	}
	if n, err := s.PurgeDeliveries(ctx, time.Now(), 0); n != 1 || err != nil {
		t.Fatalf("purged %d (%v), want the delivered one", n, err)
	}
	if n := count(`SELECT count(*) FROM webhook_payloads`); n != 1 {
		t.Errorf("%d payloads after the purge, want the pending delivery's alone", n)
	}
}

// updatesOf installs a trigger that records every update of a
// delivery's row, and returns the ids updated since its last call, in
// order, an id once per update.
func updatesOf(t *testing.T, conn *pgx.Conn) func() []string {
	ctx := context.Background()
	for _, q := range []string{
		`CREATE TABLE updates_seen (n bigserial PRIMARY KEY, id text NOT NULL)`,
		`CREATE FUNCTION delivery_updated() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN INSERT INTO updates_seen (id) VALUES (OLD.id); RETURN NULL; END $$`,
		`CREATE TRIGGER delivery_updated AFTER UPDATE ON webhook_deliveries FOR EACH ROW EXECUTE FUNCTION delivery_updated()`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	return func() []string {
		rows, err := conn.Query(ctx, `WITH gone AS (DELETE FROM updates_seen RETURNING n, id) SELECT id FROM gone ORDER BY n`)
		if err != nil {
			t.Fatal(err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
}

// An enqueue inserts its pairs' heads ready (insertDeliveriesSQL) rather
// than writing their rows twice, each a new row version with its index
// entries.
func TestEnqueueInsertsHeadsReady(t *testing.T) {
	s, conn := openRaw(t)
	updated := updatesOf(t, conn)
	webhookstest.EnqueueHeads(t, s, func() []string {
		ids := updated()
		slices.Sort(ids)
		return ids
	})
}

// A settle's claim that takes a head its results made writes the head's
// row once (headsSQL): the results' rows and the claimed ones are each
// updated once, and a head the claim leaves, by markReadySQL, once, and
// is claimed by the next.
func TestSettleWritesClaimedHeadsOnce(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	updated := updatesOf(t, conn)
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	key := webhooks.EndpointKey("acme", "crm")
	mk := func(transfer string, seq, pos int64) webhooks.Delivery {
		ev := fmt.Sprintf("evt_%s_%d", transfer, seq)
		return webhooks.Delivery{ID: webhooks.DeliveryID(key, ev), Tenant: "acme", Endpoint: "crm", EventID: ev,
			TransferID: transfer, Seq: seq, Pos: pos, Type: orchestrator.EventStateChanged, Payload: []byte(ev),
			Status: webhooks.StatusPending, NextAttempt: now, Deadline: now.Add(time.Hour), CreatedAt: now}
	}
	a1, b1, a2, b2 := mk("tr_a", 1, 1), mk("tr_b", 1, 2), mk("tr_a", 2, 3), mk("tr_b", 2, 4)
	if err := s.EnqueueDeliveries(ctx, key, 0, 4, []webhooks.Delivery{a1, b1, a2, b2}); err != nil {
		t.Fatal(err)
	}
	first, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 10, nil)
	if err != nil || len(first) != 2 {
		t.Fatalf("claimed %d (%v), want the two heads", len(first), err)
	}
	updated()
	for i := range first {
		first[i].Status, first[i].UpdatedAt = webhooks.StatusDelivered, now
	}
	// Room for one: a2 (pos 3) goes before b2 (pos 4).
	vs, claimed, err := s.SettleDeliveries(ctx, first, "r1", now, time.Minute, 1, nil)
	if err != nil || len(vs) != 2 || !vs[0].OK || !vs[1].OK {
		t.Fatalf("settled %+v (%v)", vs, err)
	}
	if len(claimed) != 1 || claimed[0].ID != a2.ID || string(claimed[0].Payload) != string(a2.Payload) || claimed[0].Attempts != 1 {
		t.Fatalf("claimed %+v, want a2 with its payload", claimed)
	}
	got := updated()
	slices.Sort(got)
	want := []string{a1.ID, b1.ID, a2.ID, b2.ID}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("the settle updated %v, want each of a1, b1 (results), a2 (claimed) and b2 (marked ready) once: %v", got, want)
	}
	var aReady, bReady *time.Time
	if err := conn.QueryRow(ctx, `SELECT (SELECT ready_at FROM webhook_deliveries WHERE id = $1), (SELECT ready_at FROM webhook_deliveries WHERE id = $2)`,
		a2.ID, b2.ID).Scan(&aReady, &bReady); err != nil {
		t.Fatal(err)
	}
	if aReady == nil || !aReady.Equal(now.Add(time.Minute)) || bReady == nil || !bReady.Equal(now) {
		t.Errorf("ready_at: a2 %v (want its lease's end), b2 %v (want %v)", aReady, bReady, now)
	}
	next, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 10, nil)
	if err != nil || len(next) != 1 || next[0].ID != b2.ID {
		t.Fatalf("then claimed %+v (%v), want b2", next, err)
	}
}

// Another tenant's redelivery of a delivery is answered as one of a
// delivery that does not exist, at once: it does not wait for the
// delivery's pair lock, which the owner's enqueues, claims and results
// hold, so that neither its answer nor its time tells the other tenant
// that the delivery exists, or that its tenant is busy with it.
func TestAnotherTenantsRedeliveryTakesNoLockOfTheDelivery(t *testing.T) {
	ctx := context.Background()
	base := baseURL(t)
	url := inSchema(base, newSchema(t, base))
	s, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC().Truncate(time.Millisecond)
	key := webhooks.EndpointKey("acme", "crm")
	d := pendingDelivery(1, "tr_a", 1, now)
	if err := s.EnqueueDeliveries(ctx, key, 0, 1, []webhooks.Delivery{d}); err != nil {
		t.Fatal(err)
	}
	// The owner's work on the pair: its lock held in a transaction.
	busy, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close(ctx)
	tx, err := busy.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(1919247972, $1::int4)`, postgres.PairLockKey(key, "tr_a")); err != nil {
		t.Fatal(err)
	}
	for what, id := range map[string]string{"another tenant's delivery": d.ID, "no delivery": "dlv_000000000000000000000000"} {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		start := time.Now()
		_, err := s.Redeliver(rctx, "zeta", id, now, now.Add(time.Hour), nil)
		cancel()
		if orchestrator.KindOf(err) != orchestrator.KindNotFound {
			t.Errorf("%s: %v (after %s), want not found at once", what, err, time.Since(start).Round(time.Millisecond))
		}
	}
}
