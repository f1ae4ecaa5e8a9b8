package postgres_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/store/postgres"
	"github.com/transferd/transferd/internal/webhooks"
)

// Two enqueues of different endpoints whose pairs' lock keys collide
// crosswise do not deadlock. The locks were taken in the order of the
// pairs sorted as strings, while a lock is keyed by a 32-bit hash of its
// pair, so the order of the pairs was not an order of the locks (found by
// review): with key(e1,A) = key(e2,D) and key(e1,B) = key(e2,C), A < B and
// C < D, one enqueue took A and wanted B while the other took C and
// wanted D, and PostgreSQL failed one of them. The test finds such pairs,
// and holds the lock of a third pair of e1, between A and B in both
// orders, so that the enqueues interleave the bad way every time.
func TestEnqueuesTakePairLocksInKeyOrder(t *testing.T) {
	ctx := context.Background()
	s, conn := openRaw(t)
	e1, e2 := webhooks.EndpointKey("t", "e1"), webhooks.EndpointKey("t", "e2")
	key := postgres.PairLockKey
	second := map[int32]string{}
	for i := range 400000 {
		tr := fmt.Sprintf("tr_b%07d", i)
		second[key(e2, tr)] = tr
	}
	type collision struct{ first, second string }
	var cs []collision
	for i := range 400000 {
		tr := fmt.Sprintf("tr_a%07d", i)
		if o, ok := second[key(e1, tr)]; ok {
			cs = append(cs, collision{tr, o})
		}
	}
	var A, B, C, D string
	for i := range cs {
		for j := i + 1; j < len(cs) && A == ""; j++ {
			// cs is in e1's order: cs[i].first < cs[j].first.
			if cs[j].second < cs[i].second && key(e1, cs[i].first) < key(e1, cs[j].first) {
				A, D, B, C = cs[i].first, cs[i].second, cs[j].first, cs[j].second
			}
		}
	}
	if A == "" {
		t.Fatalf("no crossing collisions among %d", len(cs))
	}
	gate := ""
	for i := 0; gate == ""; i++ {
		g := A + "~" + strconv.Itoa(i) // after A, before B
		if k := key(e1, g); key(e1, A) < k && k < key(e1, B) {
			gate = g
		}
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	mk := func(ep, tr string, pos int64) webhooks.Delivery {
		k := webhooks.EndpointKey("t", ep)
		ev := "evt_" + tr
		return webhooks.Delivery{ID: webhooks.DeliveryID(k, ev), Tenant: "t", Endpoint: ep, EventID: ev, TransferID: tr, Seq: 1, Pos: pos,
			Type: "x", Payload: []byte(`{}`), Status: webhooks.StatusPending, NextAttempt: now, Deadline: now.Add(time.Hour), CreatedAt: now, UpdatedAt: now}
	}
	gateTx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer gateTx.Rollback(ctx)
	if _, err := gateTx.Exec(ctx, `SELECT pg_advisory_xact_lock(1919247972, $1::int4)`, key(e1, gate)); err != nil {
		t.Fatal(err)
	}
	// waitedFor returns once a session waits for the lock of k (pg_locks
	// shows the key as an unsigned objid); it reads pg_locks until then.
	waitedFor := func(k int32) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		for {
			var n int
			if err := gateTx.QueryRow(wctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 1919247972
				AND objid::text::bigint = $1 AND NOT granted`, int64(uint32(k))).Scan(&n); err != nil {
				t.Fatalf("nobody waits for lock %d: %v", k, err)
			}
			if n > 0 {
				return
			}
		}
	}
	errs := make(chan error, 2)
	go func() {
		errs <- s.EnqueueDeliveries(ctx, e1, 0, 3, []webhooks.Delivery{mk("e1", A, 1), mk("e1", gate, 2), mk("e1", B, 3)})
	}()
	waitedFor(key(e1, gate)) // the first holds A's lock
	go func() {
		errs <- s.EnqueueDeliveries(ctx, e2, 0, 2, []webhooks.Delivery{mk("e2", C, 1), mk("e2", D, 2)})
	}()
	waitedFor(key(e1, A)) // the second waits for A's (D's), or holds C's (B's) and waits for D's
	if err := gateTx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("enqueue (e1 %s, %s, %s; e2 %s, %s): %v", A, gate, B, C, D, err)
		}
	}
}
