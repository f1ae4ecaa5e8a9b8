package storetest

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// A create that holds its request's reservation (IdempotencyReservedAt)
// is saved only while that reservation is pending, unlinked and the one
// created then; otherwise it saves nothing — no transfer, no event, no
// hold on the call — and fails with ErrReservationLost. (A request that
// outlived orchestrator.ReservationTimeout had its reservation settled;
// the key may be a retry's by now, and a late save would start a second
// transfer for one key.)
func testCreateHoldsItsReservation(f *fixture) {
	const scope = "POST /v1/transfers"
	rec := func(key string, at time.Time) orchestrator.IdempotencyRecord {
		return orchestrator.IdempotencyRecord{Scope: scope, Key: key, RequestHash: "h", CreatedAt: at, Owner: "A"}
	}
	holding := func(user, key string, at time.Time) *orchestrator.Transfer {
		t := f.transfer(user)
		t.IdempotencyScope, t.IdempotencyKey, t.IdempotencyReservedAt = scope, key, at
		Emit(t, orchestrator.EventCreated, "", "")
		return t
	}
	lost := func(what string, t *orchestrator.Transfer) {
		f.Helper()
		err := f.s.Create(f.ctx, t)
		if !errors.Is(err, orchestrator.ErrReservationLost) || orchestrator.KindOf(err) != orchestrator.KindUnavailable {
			f.Fatalf("%s: Create = %v (kind %v), want ErrReservationLost of kind unavailable", what, err, orchestrator.KindOf(err))
		}
		if _, err := f.s.Get(f.ctx, t.ID); orchestrator.KindOf(err) != orchestrator.KindNotFound {
			f.Errorf("%s: Get of the refused transfer = %v, want not found", what, err)
		}
		if evs := f.events(orchestrator.EventFilter{TransferID: t.ID, Limit: 10}); len(evs) != 0 {
			f.Errorf("%s: the refused create wrote %d events", what, len(evs))
		}
		// Nor does it hold the call.
		f.create(f.transfer(t.Request.Call.User))
	}

	// Held: saved and linked.
	reserve(f, rec("k-held", now))
	held := holding("1000", "k-held", now)
	f.create(held)
	clearOutbox(held)
	f.equal("Get of a transfer whose create held its reservation", f.get(held.ID), withoutReservation(held))
	held.State = orchestrator.StateHolding // saved again, still naming the reservation: it is not stored
	f.update(held)
	f.equal("Get of that transfer once updated", f.get(held.ID), withoutReservation(held))

	// Settled: the reservation is gone.
	reserve(f, rec("k-settled", now))
	if err := f.s.DeleteIdempotency(f.ctx, scope, "k-settled", now); err != nil {
		f.Fatal(err)
	}
	lost("a settled reservation", holding("2000", "k-settled", now))

	// Settled, and the key reserved again by a retry: the retry's
	// reservation is left as it was, for the retry's own create.
	reserve(f, rec("k-retried", now))
	if err := f.s.DeleteIdempotency(f.ctx, scope, "k-retried", now); err != nil {
		f.Fatal(err)
	}
	retry := rec("k-retried", now.Add(time.Second))
	reserve(f, retry)
	lost("a key reserved again by a retry", holding("3000", "k-retried", now))
	f.create(holding("4000", "k-retried", retry.CreatedAt))

	// Answered (by the request itself, or a settle): no create holds it.
	reserve(f, rec("k-answered", now))
	if err := f.s.CompleteIdempotency(f.ctx, scope, "k-answered", now, orchestrator.IdempotentResponse{Status: 422}); err != nil {
		f.Fatal(err)
	}
	lost("an answered reservation", holding("5000", "k-answered", now))

	// Linked already: a second create holding it is refused.
	lost("a reservation linked to another transfer", holding("6000", "k-held", now))

	// What each create linked shows once settled: the held ones replay
	// their transfers; the answered one keeps its answer.
	if n := f.settle("B", now, never); n != 2 {
		f.Errorf("SettleIdempotency = %d, want 2 (k-held, k-retried)", n)
	}
	got, _ := reserve(f, rec("k-held", now))
	want := rec("k-held", now)
	want.Response = replayOf(held.ID)
	equalIdem(f, "the held reservation, settled", got, want)
	got, _ = reserve(f, rec("k-answered", now))
	if got.Response == nil || got.Response.Status != 422 || got.Response.TransferID != "" {
		f.Errorf("the answered reservation became %s", fmtIdem(got))
	}

	// A request whose create was saved although it failed (a 5xx after
	// the save) releases its key: the linked reservation is answered with
	// its transfer instead, so that a retry finds it.
	reserve(f, rec("k-failed", now))
	failed := holding("7000", "k-failed", now)
	f.create(failed)
	if err := f.s.DeleteIdempotency(f.ctx, scope, "k-failed", now); err != nil {
		f.Fatal(err)
	}
	got, free := reserve(f, rec("k-failed", now.Add(time.Second)))
	want = rec("k-failed", now)
	want.Response = replayOf(failed.ID)
	if free {
		f.Errorf("the Delete of a linked reservation freed its key")
	} else {
		equalIdem(f, "a linked reservation, released", got, want)
	}
}

// withoutReservation is t as a store keeps it: without the reservation
// its create held.
func withoutReservation(t *orchestrator.Transfer) *orchestrator.Transfer {
	c := t.Clone()
	c.IdempotencyReservedAt = time.Time{}
	return c
}

// A create that holds its reservation and a settle of that reservation,
// at the same time: either the create is saved and the reservation linked
// (the settle then answers it with the transfer), or nothing is saved and
// the reservation is gone — never a transfer whose reservation was
// deleted, which would let a retry start a second one.
func testCreateRacesSettle(f *fixture) {
	const scope, rounds = "POST /v1/transfers", 30
	f.heartbeat("dead", now.Add(-time.Hour), time.Second) // every reservation of "dead" is settled
	for i := range rounds {
		key := fmt.Sprintf("race-%d", i)
		reserve(f, orchestrator.IdempotencyRecord{Scope: scope, Key: key, RequestHash: "h", CreatedAt: now, Owner: "dead"})
		t := f.transfer(fmt.Sprint(1000 + i))
		t.IdempotencyScope, t.IdempotencyKey, t.IdempotencyReservedAt = scope, key, now
		var (
			wg        sync.WaitGroup
			createErr error
		)
		wg.Go(func() { createErr = f.s.Create(f.ctx, t) })
		wg.Go(func() {
			if _, err := f.s.SettleIdempotency(f.ctx, "B", now, never); err != nil {
				f.Errorf("SettleIdempotency: %v", err)
			}
		})
		wg.Wait()
		if createErr != nil && !errors.Is(createErr, orchestrator.ErrReservationLost) {
			f.Fatalf("round %d: Create = %v", i, createErr)
		}
		f.settle("B", now, never) // whichever went first, the reservation is settled now
		cur, free := reserve(f, orchestrator.IdempotencyRecord{Scope: scope, Key: key, RequestHash: "h", CreatedAt: now.Add(time.Second),
			Owner: "checker"})
		switch {
		case createErr == nil && (free || cur.Response == nil || cur.Response.TransferID != t.ID):
			f.Fatalf("round %d: the create was saved, but its reservation is %s (free: %v)", i, fmtIdem(cur), free)
		case createErr != nil && !free:
			f.Fatalf("round %d: the create was refused, but its reservation is %s", i, fmtIdem(cur))
		}
	}
}
