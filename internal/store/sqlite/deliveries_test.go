package sqlite_test

import (
	"context"
	"database/sql"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/sqlite"
	"github.com/transferd/transferd/internal/webhooks"
	"github.com/transferd/transferd/internal/webhooks/webhookstest"
)

// TestDeliveryStoreSuite runs the webhook store suite every store passes, so that
// the dispatcher behaves the same on every store; and checks that every
// statement webhook delivery ran on the writer was one prepared at Open
// (compiling them at each run was a tenth of transferd's CPU with every
// event delivered).
func TestDeliveryStoreSuite(t *testing.T) {
	webhookstest.Run(t, func(t *testing.T) webhooks.Store {
		s := open(t, t.TempDir())
		t.Cleanup(func() {
			if n := sqlite.Unprepared(s); n != 0 {
				t.Errorf("%d statements of webhook delivery ran unprepared: add them to preparedSQL", n)
			}
		})
		return s
	})
}

// TestDeliveries: the cursor moves with the inserts, a stale cursor is
// refused, only a transfer's first pending delivery is claimed, a lost
// claim's result is ignored, and redelivery is scoped to the tenant.
func TestDeliveries(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC()
	key := webhooks.EndpointKey("acme", "crm")
	mk := func(seq int64, tr string) webhooks.Delivery {
		id := tr + "_" + string(rune('0'+seq))
		return webhooks.Delivery{ID: webhooks.DeliveryID(key, id), Tenant: "acme", Endpoint: "crm", EventID: id, TransferID: tr,
			Seq: seq, Pos: seq, Type: orchestrator.EventStateChanged, Payload: []byte(`{}`), Status: webhooks.StatusPending,
			NextAttempt: now, Deadline: now.Add(time.Hour), CreatedAt: now}
	}
	ds := []webhooks.Delivery{mk(1, "tr_a"), mk(2, "tr_a"), mk(3, "tr_b")}
	if err := s.EnqueueDeliveries(ctx, key, 0, 3, ds); err != nil {
		t.Fatal(err)
	}
	if err := s.EnqueueDeliveries(ctx, key, 0, 3, ds); err != webhooks.ErrCursorMoved {
		t.Fatalf("a stale cursor: %v", err)
	}
	if c, _ := s.DeliveryCursor(ctx, key); c != 3 {
		t.Fatalf("cursor %d", c)
	}
	got, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 10, nil)
	if err != nil || len(got) != 2 || got[0].Seq != 1 || got[1].TransferID != "tr_b" {
		t.Fatalf("claimed %+v (%v), want tr_a seq 1 and tr_b", got, err)
	}
	if again, _ := s.ClaimDeliveries(ctx, "r2", now, time.Minute, 10, nil); len(again) != 0 {
		t.Fatalf("leased deliveries claimed again: %+v", again)
	}
	done := got[0]
	done.Status = webhooks.StatusDelivered
	if _, ok, err := s.FinishDelivery(ctx, done); !ok || err != nil {
		t.Fatalf("finish: %v %v", ok, err)
	}
	if _, ok, _ := s.FinishDelivery(ctx, done); ok {
		t.Fatal("finished twice")
	}
	next, _ := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 10, nil)
	if len(next) != 1 || next[0].Seq != 2 {
		t.Fatalf("after seq 1: %+v", next)
	}
	if n, _, _ := s.DeliveryBacklog(ctx); n != 2 {
		t.Fatalf("backlog %d, want 2", n)
	}
	if _, err := s.Redeliver(ctx, "other", done.ID, now, now.Add(time.Hour), nil); orchestrator.KindOf(err) != orchestrator.KindNotFound {
		t.Fatalf("another tenant redelivered: %v", err)
	}
	if d, err := s.Redeliver(ctx, "acme", done.ID, now, now.Add(time.Hour), nil); err != nil || d.Status != webhooks.StatusPending {
		t.Fatalf("redeliver: %+v %v", d, err)
	}
	list, _, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", Statuses: []webhooks.Status{webhooks.StatusPending}, Limit: 10})
	if err != nil || len(list) != 3 {
		t.Fatalf("pending %d (%v), want 3", len(list), err)
	}
}

// A database of schema 7 with finished deliveries migrates: schema 8
// takes each finished delivery's finished_at from its record's UpdatedAt
// (to the second), leaves pending ones without, and the purge then
// deletes the finished ones past the cut and only those.
func TestMigrateDeliveriesToSchema8(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	ids := webhookstest.Finished(t, s, map[string]webhookstest.Finish{
		"tr_old":     {Status: webhooks.StatusDelivered, At: now.Add(-48*time.Hour + 123456789)},
		"tr_dead":    {Status: webhooks.StatusDead, At: now.Add(-47 * time.Hour)},
		"tr_young":   {Status: webhooks.StatusDelivered, At: now.Add(-time.Hour)},
		"tr_pending": {Status: webhooks.StatusPending, At: now.Add(-40 * time.Hour)},
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, dir)
	undoSchema11(t, db)
	for _, q := range []string{`DROP INDEX webhook_deliveries_finished`, `ALTER TABLE webhook_deliveries DROP COLUMN finished_at`,
		`DELETE FROM schema_migrations WHERE version >= 8`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("back to schema 7: %s: %v", q, err)
		}
	}
	s = open(t, dir)
	want := map[string]sql.NullString{
		"tr_old":     {String: "2026-11-28T12:00:00.000000000Z", Valid: true},
		"tr_dead":    {String: "2026-11-28T13:00:00.000000000Z", Valid: true},
		"tr_young":   {String: "2026-11-30T11:00:00.000000000Z", Valid: true},
		"tr_pending": {},
	}
	for tr, w := range want {
		var got sql.NullString
		if err := db.QueryRow(`SELECT finished_at FROM webhook_deliveries WHERE id = ?`, ids[tr]).Scan(&got); err != nil || got != w {
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

// PurgeDeliveries works through a backlog in slices, as Purge does: a
// write transaction runs steps of a few rows until it has held the writer
// for the budget, then commits (so that saves never wait long behind it),
// and a limit that is not a multiple of a step is honoured exactly.
func TestPurgeDeliveriesInSlices(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	// Three steps of 2 rows a slice; the reclaim one step.
	sqlite.SetSlices(s, 25*time.Millisecond, 2, 1<<20, tickClock(10*time.Millisecond))
	done := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	at := map[string]webhookstest.Finish{"tr_pending": {Status: webhooks.StatusPending, At: done}}
	for i := range 9 {
		at["tr_"+strconv.Itoa(i)] = webhookstest.Finish{Status: webhooks.StatusDelivered, At: done.Add(time.Duration(i) * time.Second)}
	}
	webhookstest.Finished(t, s, at)
	slices := sqlite.Slices(s)
	// One slice of 2+2+1; one reclaim.
	if n, err := s.PurgeDeliveries(ctx, done.Add(time.Hour), 5); err != nil || n != 5 {
		t.Errorf("PurgeDeliveries(limit 5) = %d, %v; want 5", n, err)
	}
	if got := sqlite.Slices(s) - slices; got != 1+1 {
		t.Errorf("PurgeDeliveries(limit 5) took %d slices, want 2", got)
	}
	// 4 left: one slice of 2+2, then a step that finds none; one reclaim.
	slices = sqlite.Slices(s)
	if n, err := s.PurgeDeliveries(ctx, done.Add(time.Hour), 0); err != nil || n != 4 {
		t.Errorf("PurgeDeliveries(no limit) = %d, %v; want 4", n, err)
	}
	if got := sqlite.Slices(s) - slices; got != 1+1 {
		t.Errorf("PurgeDeliveries(no limit) took %d slices, want 2", got)
	}
	if n, _, err := s.DeliveryBacklog(ctx); n != 1 || err != nil {
		t.Errorf("backlog %d (%v) after the purges, want the pending delivery", n, err)
	}
}

// A database of schema 10 with deliveries pending, in flight, failing and
// delivered migrates: schema 11 makes ready exactly the first pending
// delivery of each endpoint and transfer, claimable when its back-off or
// lease ends.
func TestMigrateDeliveriesToSchema11(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	webhookstest.ClaimsBeforeMigration(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, dir)
	undoSchema11(t, db)
	db.Close()
	webhookstest.ClaimsAfterMigration(t, open(t, dir))
}

func BenchmarkClaimPastABacklog(b *testing.B) {
	for _, backlog := range webhookstest.Backlogs {
		b.Run(backlog, func(b *testing.B) { webhookstest.BenchClaimPastABacklog(b, open(b, b.TempDir()), backlog) })
	}
}

// Webhook delivery's writes commit without syncing the WAL (NORMAL, 1):
// losing them in a power cut makes an endpoint get a delivery again, and
// an fsync each cost more than a transfer's own saves. The writer's
// connection is FULL (2) again after each of them, before it saves a
// transfer, whatever the operation did.
func TestDeliveryWritesDoNotSyncAndSavesStillDo(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	if n, err := sqlite.UnsyncedLevel(ctx, s); err != nil || n != 1 {
		t.Fatalf("synchronous within a delivery's transaction = %d (%v), want 1 (NORMAL)", n, err)
	}
	full := func(after string) {
		t.Helper()
		if n, err := sqlite.WriterPragma(ctx, s, "synchronous"); err != nil || n != 2 {
			t.Fatalf("after %s the writer's synchronous = %d (%v), want 2 (FULL)", after, n, err)
		}
	}
	full("an unsynced transaction")
	now := time.Now().UTC()
	key := webhooks.EndpointKey("acme", "crm")
	d := webhooks.Delivery{ID: webhooks.DeliveryID(key, "evt_1"), Tenant: "acme", Endpoint: "crm", EventID: "evt_1", TransferID: "tr_a",
		Seq: 1, Pos: 1, Type: orchestrator.EventStateChanged, Payload: []byte(`{}`), Status: webhooks.StatusPending,
		NextAttempt: now, Deadline: now.Add(time.Hour), CreatedAt: now}
	if err := s.EnqueueDeliveries(ctx, key, 0, 1, []webhooks.Delivery{d}); err != nil {
		t.Fatal(err)
	}
	full("an enqueue")
	if err := s.EnqueueDeliveries(ctx, key, 0, 1, []webhooks.Delivery{d}); err != webhooks.ErrCursorMoved {
		t.Fatalf("a stale enqueue: %v", err)
	}
	full("a refused enqueue")
	got, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 10, nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("claimed %d (%v)", len(got), err)
	}
	full("a claim")
	got[0].Status = webhooks.StatusDelivered
	if _, ok, err := s.FinishDelivery(ctx, got[0]); !ok || err != nil {
		t.Fatalf("finish: %v %v", ok, err)
	}
	full("a finish")
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.ClaimDeliveries(cctx, "r1", now, time.Minute, 10, nil); err == nil {
		t.Fatal("a claim with its context done succeeded")
	}
	full("a claim whose context was done")
}

// Results that arrive while a batch of them is being written go together
// in the next transaction, each with its own verdict: a result whose claim
// was lost is refused in its batch, the others stored. A transaction each
// cost more than a transfer's own saves.
func TestResultsWrittenTogether(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	now := time.Now().UTC()
	key := webhooks.EndpointKey("acme", "crm")
	var ds []webhooks.Delivery
	for i := range 8 {
		ev := "evt_" + strconv.Itoa(i)
		ds = append(ds, webhooks.Delivery{ID: webhooks.DeliveryID(key, ev), Tenant: "acme", Endpoint: "crm", EventID: ev,
			TransferID: "tr_" + strconv.Itoa(i), Seq: 1, Pos: int64(i + 1), Type: orchestrator.EventStateChanged, Payload: []byte(`{}`),
			Status: webhooks.StatusPending, NextAttempt: now, Deadline: now.Add(time.Hour), CreatedAt: now})
	}
	if err := s.EnqueueDeliveries(ctx, key, 0, 8, ds); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 8, nil)
	if err != nil || len(claimed) != 8 {
		t.Fatalf("claimed %d (%v)", len(claimed), err)
	}
	claimed[3].Attempts = 7 // a claim lost to another replica's
	queued, release := sqlite.HoldFinishTurn(s)
	before := sqlite.FinishBatches(s)
	type verdict struct {
		ok  bool
		err error
	}
	verdicts := make([]chan verdict, len(claimed))
	for i, d := range claimed {
		verdicts[i] = make(chan verdict, 1)
		d.Status, d.UpdatedAt = webhooks.StatusDelivered, now
		go func() {
			_, ok, err := s.FinishDelivery(ctx, d)
			verdicts[i] <- verdict{ok, err}
		}()
	}
	for range claimed {
		<-queued
	}
	release()
	for i, v := range verdicts {
		if got := <-v; got.err != nil || got.ok != (i != 3) {
			t.Errorf("result %d: ok %v (%v), want %v", i, got.ok, got.err, i != 3)
		}
	}
	if n := sqlite.FinishBatches(s) - before; n != 1 {
		t.Errorf("eight results queued together written in %d transactions, want 1", n)
	}
	pending, _, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", Statuses: []webhooks.Status{webhooks.StatusPending}})
	if err != nil || len(pending) != 1 || pending[0].ID != claimed[3].ID {
		t.Errorf("pending after the batch: %d (%v), want the one whose claim was lost", len(pending), err)
	}
}

// One set of statuses, however a client repeats or orders it, lists with
// one statement (found by review: each repeat made a new text, which the
// reader pool prepared and kept, so a tenant could fill the cache of
// prepared reads and hold its memory for good).
func TestDeliveryFiltersShareOneStatement(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	f := webhooks.DeliveryFilter{Tenant: "acme", Limit: 10}
	if _, _, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme", Limit: 10, Statuses: []webhooks.Status{webhooks.StatusPending, webhooks.StatusDead}}); err != nil {
		t.Fatal(err)
	}
	before := sqlite.ReadStmts(s)
	for _, sts := range [][]webhooks.Status{
		{webhooks.StatusDead, webhooks.StatusPending},
		{webhooks.StatusDead, webhooks.StatusDead, webhooks.StatusPending},
		{webhooks.StatusPending, webhooks.StatusDead, webhooks.StatusPending, webhooks.StatusDead},
	} {
		f.Statuses = sts
		if _, _, err := s.Deliveries(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	if n := sqlite.ReadStmts(s) - before; n != 0 {
		t.Errorf("the same two statuses, repeated and reordered, prepared %d statements more", n)
	}
}

// A delivery's payload is written once, apart from its record (schema 13):
// the records its claims and results rewrite carry none, the payload is
// still there for the next claim (webhookstest's withPayloads), and it
// goes with its delivery at the purge. The record's old column is gone,
// so that a process of an older version, which would read no payload
// from the record, fails instead of sending an empty body.
func TestPayloadsApart(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	webhookstest.Finished(t, s, map[string]webhookstest.Finish{
		"tr_a": {Status: webhooks.StatusDelivered, At: time.Now().Add(-48 * time.Hour)},
		"tr_b": {Status: webhooks.StatusPending, At: time.Now().Add(-48 * time.Hour)},
	})
	db := rawDB(t, dir)
	count := func(q string) int {
		t.Helper()
		var n int
		if err := db.QueryRow(q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	if n := count(`SELECT count(*) FROM webhook_payloads`); n != 2 {
		t.Errorf("%d payloads stored, want 2", n)
	}
	if n := count(`SELECT count(*) FROM webhook_deliveries WHERE rec ->> '$.Payload' IS NOT NULL`); n != 0 {
		t.Errorf("%d records carry their payload after their claim and result, want 0", n)
	}
	if _, err := db.Exec(`SELECT record FROM webhook_deliveries`); err == nil || !strings.Contains(err.Error(), "no such column") {
		t.Errorf("an older version's read of the record: %v, want no such column", err)
	}
	if n, err := s.PurgeDeliveries(context.Background(), time.Now(), 0); n != 1 || err != nil {
		t.Fatalf("purged %d (%v), want the delivered one", n, err)
	}
	if n := count(`SELECT count(*) FROM webhook_payloads`); n != 1 {
		t.Errorf("%d payloads after the purge, want the pending delivery's alone", n)
	}
}

// A database of schema 12 migrates: schema 13 copies every delivery's
// payload out of its record, past the slices movePayloads reads (1,000
// rows), each payload the bytes it was; a delivery with an empty payload
// gets no row.
func TestMigratePayloadsInSlices(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	const n = 2500
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	key := webhooks.EndpointKey("acme", "crm")
	want := map[string]string{}
	var ds []webhooks.Delivery
	for i := range n {
		ev := "evt_" + strconv.Itoa(i)
		d := webhooks.Delivery{ID: webhooks.DeliveryID(key, ev), Tenant: "acme", Endpoint: "crm", EventID: ev,
			TransferID: "tr_" + strconv.Itoa(i), Seq: 1, Pos: int64(i + 1), Type: orchestrator.EventStateChanged,
			Status: webhooks.StatusPending, NextAttempt: at, Deadline: at.Add(time.Hour), CreatedAt: at, UpdatedAt: at}
		if i%100 != 0 {
			d.Payload = []byte(`{"n":` + strconv.Itoa(i) + `,"bytes":"` + strings.Repeat("\x00\xff", i%7) + `"}`)
			want[d.ID] = string(d.Payload)
		}
		ds = append(ds, d)
	}
	if err := s.EnqueueDeliveries(ctx, key, 0, n, ds); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, dir)
	undoSchema13(t, db)
	var inRecords int
	if err := db.QueryRow(`SELECT count(*) FROM webhook_deliveries WHERE record ->> '$.Payload' IS NOT NULL`).Scan(&inRecords); err != nil || inRecords != len(want) {
		t.Fatalf("back to schema 12: %d payloads in records (%v), want %d", inRecords, err, len(want))
	}
	s = open(t, dir)
	got := map[string]string{}
	rows, err := db.Query(`SELECT id, payload FROM webhook_payloads`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var p []byte
		if err := rows.Scan(&id, &p); err != nil {
			t.Fatal(err)
		}
		got[id] = string(p)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d payloads after the migration, want %d", len(got), len(want))
	}
	for id, p := range want {
		if got[id] != p {
			t.Fatalf("%s: payload %q after the migration, want %q", id, got[id], p)
		}
	}
	claimed, err := s.ClaimDeliveries(ctx, "r1", at, time.Minute, n, nil)
	if err != nil || len(claimed) != n {
		t.Fatalf("claimed %d (%v), want %d", len(claimed), err, n)
	}
	for _, d := range claimed {
		if string(d.Payload) != want[d.ID] {
			t.Fatalf("%s claimed with payload %q, want %q", d.ID, d.Payload, want[d.ID])
		}
	}
}

// An enqueue inserts its pairs' heads ready (insertDeliverySQL) rather
// than writing their rows twice: a trigger records every update of a
// delivery's row.
func TestEnqueueInsertsHeadsReady(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	db := rawDB(t, dir)
	for _, q := range []string{
		`CREATE TABLE updates_seen (id TEXT NOT NULL)`,
		`CREATE TRIGGER delivery_updated AFTER UPDATE ON webhook_deliveries BEGIN INSERT INTO updates_seen VALUES (old.id); END`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	webhookstest.EnqueueHeads(t, s, func() []string {
		rows, err := db.Query(`DELETE FROM updates_seen RETURNING id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var ids []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		slices.Sort(ids)
		return ids
	})
}
