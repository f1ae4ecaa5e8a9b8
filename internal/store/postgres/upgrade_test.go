package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/transferd/transferd/internal/store/postgres"
	"github.com/transferd/transferd/internal/webhooks"
)

// olderReplicaPut writes d as a replica of a version before schema 12 does
// (its putDelivery): every column but ready_at. Such a replica fails on
// schema 15, whose record column is renamed; what it left before stays,
// its records in the new column.
func olderReplicaPut(t *testing.T, conn *pgx.Conn, d webhooks.Delivery) {
	t.Helper()
	rec, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var finished *time.Time
	if d.Status != webhooks.StatusPending {
		finished = &d.UpdatedAt
	}
	if _, err := conn.Exec(context.Background(), `UPDATE webhook_deliveries SET status = $2, next_attempt = $3, lease_until = $4,
		failing = $5, finished_at = $6, rec = $7 WHERE id = $1`, d.ID, string(d.Status), d.NextAttempt, d.LeaseUntil,
		d.Status == webhooks.StatusPending && d.LastError != "", finished, rec); err != nil {
		t.Fatal(err)
	}
}

// During a rolling upgrade an older replica delivers heads this version
// made ready and leaves them ready. They sort first in
// webhook_deliveries_ready, so every claim picks them first. A claim sets
// them right and goes on to a delivery that is due (found by review: it
// passed them over, spent its rounds on them and came back short, and
// the dispatcher, reading a short claim as "nothing more is due", waited
// for its next scan, where the same happened, until a RepairHeads).
func TestClaimSetsRightWhatAnOlderReplicaLeftReady(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	key := webhooks.EndpointKey("acme", "crm")
	const stale = 8 // more than claimRounds (4) times the limit (1, a dispatcher's claim when its slots are tight)
	var ds []webhooks.Delivery
	for i := range stale {
		ds = append(ds, pendingDelivery(int64(i+1), fmt.Sprintf("tr_old_%02d", i), 1, now.Add(-time.Hour+time.Duration(i)*time.Second)))
	}
	good := pendingDelivery(stale+1, "tr_good", 1, now.Add(-time.Minute))
	ds = append(ds, good)
	if err := s.EnqueueDeliveries(ctx, key, 0, stale+1, ds); err != nil {
		t.Fatal(err)
	}
	// The older replica claimed and delivered the first eight heads.
	for _, d := range ds[:stale] {
		d.Status, d.Attempts, d.UpdatedAt = webhooks.StatusDelivered, 1, now.Add(-time.Second)
		olderReplicaPut(t, conn, d)
	}
	got, err := s.ClaimDeliveries(ctx, "new", now, time.Minute, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != good.ID {
		t.Fatalf("the claim took %d deliveries, want %s, due since a minute, past %d deliveries an older replica finished and left ready",
			len(got), good.TransferID, stale)
	}
	var left int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE ready_at IS NOT NULL AND status <> 'pending'`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d finished deliveries still ready after the claim (%v), want 0", left, err)
	}
}

// During a rolling upgrade: an older replica delivers head X of a pair
// (ready_at left set), this version enqueues the pair's next event, whose
// promote makes the next delivery Y ready (X is no longer pending), and
// then an operator's redelivery on an older replica makes X pending again
// (ready_at still set: it never touches it). X is the head again and Y is
// ready too. RepairHeads leaves only X ready (found by review: it looked
// only for unready heads and wrong ready_at values, so a claim took X and
// Y at once, the transfer's later event with the earlier).
func TestRepairHeadsUnreadiesALaterDelivery(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	key := webhooks.EndpointKey("acme", "crm")
	x := pendingDelivery(1, "tr_a", 1, now.Add(-time.Minute))
	if err := s.EnqueueDeliveries(ctx, key, 0, 1, []webhooks.Delivery{x}); err != nil {
		t.Fatal(err)
	}
	// The older replica claims and delivers X.
	x.Status, x.Attempts, x.UpdatedAt = webhooks.StatusDelivered, 1, now.Add(-30*time.Second)
	olderReplicaPut(t, conn, x)
	// This version enqueues the transfer's next event.
	y := pendingDelivery(2, "tr_a", 2, now.Add(-20*time.Second))
	if err := s.EnqueueDeliveries(ctx, key, 1, 2, []webhooks.Delivery{y}); err != nil {
		t.Fatal(err)
	}
	// An operator redelivers X through the older replica (its Redeliver).
	x.Status, x.NextAttempt, x.Deadline, x.Redelivered, x.UpdatedAt = webhooks.StatusPending, now.Add(-10*time.Second), now.Add(time.Hour), x.Attempts, now.Add(-10*time.Second)
	olderReplicaPut(t, conn, x)

	if _, err := s.RepairHeads(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `SELECT seq FROM webhook_deliveries WHERE transfer_id = 'tr_a' AND status = 'pending' AND ready_at IS NOT NULL ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	ready, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if len(ready) != 1 || ready[0] != 1 {
		t.Errorf("after RepairHeads the pair's ready deliveries are seqs %v, want only the head, seq 1", ready)
	}
	got, err := s.ClaimDeliveries(ctx, "new", now, time.Minute, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []int64
	for _, d := range got {
		seqs = append(seqs, d.Seq)
	}
	if len(seqs) != 1 {
		t.Errorf("one claim took seqs %v of one transfer at once, want only its head (seq 1)", seqs)
	}
}

// A batch of results that gives up at its bound gives up on the server
// too, and lets go of the locks it took (found by review: pgx gives up by
// closing the connection, which the server, waiting for the stuck pair's
// lock, noticed only once it got it, keeping meanwhile the locks of the
// batch's other pairs, so that their finishes, enqueues and redeliveries
// waited on a session nobody owned).
func TestTimedOutResultsLetGoOfTheirLocks(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	postgres.SetFinishTimeout(s, time.Second)
	now := time.Now().UTC().Truncate(time.Millisecond)
	key := webhooks.EndpointKey("acme", "crm")
	// Two transfers, the first of lower lock key: taken first, so held
	// while the batch waits for the second's.
	trs := []string{"tr_a", "tr_b"}
	if postgres.PairLockKey(key, trs[0]) > postgres.PairLockKey(key, trs[1]) {
		trs[0], trs[1] = trs[1], trs[0]
	}
	ds := []webhooks.Delivery{pendingDelivery(1, trs[0], 1, now), pendingDelivery(2, trs[1], 1, now)}
	if err := s.EnqueueDeliveries(ctx, key, 0, 2, ds); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 2, nil)
	if err != nil || len(claimed) != 2 {
		t.Fatalf("claimed %d (%v)", len(claimed), err)
	}
	stuck, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Rollback(ctx)
	low, high := postgres.PairLockKey(key, trs[0]), postgres.PairLockKey(key, trs[1])
	if _, err := stuck.Exec(ctx, `SELECT pg_advisory_xact_lock(1919247972, $1::int4)`, high); err != nil {
		t.Fatal(err)
	}
	// Both results in one batch.
	queued, release := postgres.HoldFinishTurn(s)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range claimed {
		d := claimed[i]
		d.Status, d.UpdatedAt = webhooks.StatusDelivered, now
		wg.Go(func() { _, _, errs[i] = s.FinishDelivery(ctx, d) })
	}
	<-queued
	<-queued
	release()
	wg.Wait()
	if errs[0] == nil || errs[1] == nil {
		t.Fatalf("the batch did not fail: %v", errs)
	}
	// The client gave up. Does the server still hold the first pair's lock?
	var free bool
	if err := stuck.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(1919247972, $1::int4)`, low).Scan(&free); err != nil {
		t.Fatal(err)
	}
	if !free {
		var n int
		if err := stuck.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = ($1::int4::bigint & 4294967295)::oid`, high).Scan(&n); err != nil {
			t.Fatal(err)
		}
		t.Errorf("after the batch of results gave up, the lock of pair %s is still held by its abandoned session (%d session(s) still waiting for the stuck pair's lock): finishes, enqueues and redeliveries of that pair wait on it for as long as the stuck lock lasts", trs[0], n)
	}
}

// olderReplicaBeat writes owner's heartbeat as a replica of a version
// before schema 18 does: it knows no token, and its upsert sets the end
// only.
func olderReplicaBeat(t *testing.T, conn *pgx.Conn, owner string, expires time.Time) {
	t.Helper()
	if err := olderReplicaTry(conn, owner, expires); err != nil {
		t.Fatal(err)
	}
}

// olderReplicaTry is olderReplicaBeat, answering its error.
func olderReplicaTry(conn *pgx.Conn, owner string, expires time.Time) error {
	_, err := conn.Exec(context.Background(), `INSERT INTO replicas (name, expires) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET expires = excluded.expires`, owner, expires)
	return err
}

// A replica of a release before schema 18 under the name a newer process
// took over cannot renew that process's heartbeat: its write is refused
// (SQLSTATE TR001), so that it sends nothing more once its last heartbeat
// runs out, and the newer process, which finds nothing amiss in its row,
// drives the name's transfers alone. Before schema 19 the older replica's
// upsert renewed the row, the newer process saw its own token in it, and
// both drove the name's transfers. Once the newer process has released
// the row (a roll back to the older release), the older replica's
// heartbeat is taken, the row then without a token; an older replica
// under a name of its own, and a replica of schema 18 (which writes its
// token), renew theirs as before. Times are the server's (the trigger
// judges a row live by now()).
func TestAnOlderReleaseCannotRenewANewerProcesssHeartbeat(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	now := time.Now().Truncate(time.Microsecond)
	const ttl = time.Minute
	if _, err := s.Heartbeat(ctx, "shared", "new", now, ttl, true); err != nil {
		t.Fatal(err)
	}
	err := olderReplicaTry(conn, "shared", now.Add(time.Second+ttl))
	if code, _ := postgres.PgCode(err); code != "TR001" {
		t.Fatalf("an older release's heartbeat over a newer process's live row = %v, want refused (TR001)", err)
	}
	if expired, err := s.Heartbeat(ctx, "shared", "new", now.Add(2*time.Second), ttl, false); err != nil || expired {
		t.Errorf("the newer process's heartbeat after the refused one: expired %v, %v; want false, nil", expired, err)
	}
	if err := s.Release(ctx, "shared", "new", now.Add(2*time.Second+ttl), now); err != nil {
		t.Fatal(err)
	}
	olderReplicaBeat(t, conn, "shared", time.Now().Add(ttl)) // rolled back: the row had run out
	var tok string
	if err := conn.QueryRow(ctx, `SELECT token FROM replicas WHERE name = 'shared'`).Scan(&tok); err != nil || tok != "" {
		t.Errorf("the row the older release took after the newer process released it has token %q (%v), want none", tok, err)
	}

	olderReplicaBeat(t, conn, "old", now.Add(ttl))
	olderReplicaBeat(t, conn, "old", now.Add(time.Second+ttl))
	for i := range 2 {
		// A schema 18 replica's heartbeat: it sets the token.
		if _, err := conn.Exec(ctx, `INSERT INTO replicas (name, expires, token) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET expires = excluded.expires, token = excluded.token
			WHERE replicas.token IN ('', excluded.token) OR replicas.expires <= $4`,
			"eighteen", now.Add(time.Duration(i)*time.Second+ttl), "t18", now); err != nil {
			t.Errorf("a schema 18 replica's heartbeat %d: %v", i, err)
		}
	}
}

// During a rolling upgrade an older replica may run under a name a newer
// process also runs under (a misconfiguration it cannot see): its
// heartbeats leave the newer one's token in the row, and the newer one
// is not stopped by a mistaken alarm. A row an older replica inserted has
// no token, which is no alarm either. (The times here are long past by
// the server's clock, so the older replica's write over the newer one's
// row is taken, as over a row that ran out: a live one refuses it, see
// TestAnOlderReleaseCannotRenewANewerProcesssHeartbeat.)
func TestOlderReplicasHeartbeatsRaiseNoAlarm(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	const ttl = 10 * time.Second
	if _, err := s.Heartbeat(ctx, "shared", "new", now, ttl, true); err != nil {
		t.Fatal(err)
	}
	olderReplicaBeat(t, conn, "shared", now.Add(time.Second+ttl))
	if expired, err := s.Heartbeat(ctx, "shared", "new", now.Add(2*time.Second), ttl, false); err != nil || expired {
		t.Errorf("the newer process's heartbeat after an older replica's: expired %v, %v; want false, nil", expired, err)
	}

	olderReplicaBeat(t, conn, "old", now.Add(ttl))
	if expired, err := s.Heartbeat(ctx, "old", "new", now.Add(time.Second), ttl, false); err != nil || expired {
		t.Errorf("a heartbeat over a live row an older replica inserted: expired %v, %v; want false, nil", expired, err)
	}
}

// Resend (a redelivery not made yet) is a field of a delivery's record,
// not a column, absent while false: the record of a delivery never
// redelivered is the one a replica of an older version writes. An older
// replica reads a record with it (a field it does not know is ignored)
// and rewrites the record without it, at its claim, its result or its own
// redelivery, which this version reads as no Resend: the redelivery is
// what the older replica made of it, as before this version. A column
// would outlive the older replica's writes, and have this version resend
// a redelivery the older replica had made.
func TestResendIsInTheRecordAndGoesWithAnOlderReplicasRewrite(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	first, second := pendingDelivery(1, "tr_a", 1, now), pendingDelivery(2, "tr_a", 2, now)
	if err := s.EnqueueDeliveries(ctx, webhooks.EndpointKey("acme", "crm"), 0, 2, []webhooks.Delivery{first, second}); err != nil {
		t.Fatal(err)
	}
	redelivered, err := s.Redeliver(ctx, "acme", second.ID, now, now.Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := func(id string) map[string]any {
		t.Helper()
		var m map[string]any
		if err := conn.QueryRow(ctx, `SELECT rec FROM webhook_deliveries WHERE id = $1`, id).Scan(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if _, ok := rec(first.ID)["Resend"]; ok {
		t.Errorf("a delivery never redelivered has Resend in its record: %v", rec(first.ID))
	}
	if r := rec(second.ID)["Resend"]; r != true {
		t.Fatalf("the redelivery's record has Resend %v, want true", r)
	}
	// An older replica claims it: its record, written whole, has no Resend.
	claimed := redelivered
	claimed.Resend, claimed.Attempts, claimed.Owner, claimed.LeaseUntil = false, 1, "older", now.Add(time.Minute)
	olderReplicaPut(t, conn, claimed)
	ds, _, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", TransferID: "tr_a"})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		if d.ID == second.ID && (d.Resend || d.Attempts != 1 || d.Owner != "older") {
			t.Errorf("the older replica's claim read back as %+v; want Attempts 1, its owner, no Resend", d)
		}
	}
}
