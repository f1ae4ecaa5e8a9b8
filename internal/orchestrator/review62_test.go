package orchestrator_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// claimBeforeTakeBack lands a claim of claimer's on the stored record just
// before the first take-back of a transfer handed over (a save by taker
// of a record stored with no owner): the claim of a peer that committed
// between the taker's last look and its take-back.
type claimBeforeTakeBack struct {
	orchestrator.Store
	taker, claimer string
	claimed        atomic.Bool
}

func (s *claimBeforeTakeBack) Update(ctx context.Context, t *orchestrator.Transfer) error {
	if t.Owner == s.taker && !s.claimed.Load() {
		if cur, err := s.Store.Get(ctx, t.ID); err == nil && cur.Owner == "" && s.claimed.CompareAndSwap(false, true) {
			if _, err := s.Store.Claim(ctx, s.claimer, time.Now(), false, 0); err != nil {
				return err
			}
		}
	}
	return s.Store.Update(ctx, t)
}

// A peer's claim that lands between the last look of a replica shutting
// down and its take-back makes the take-back fail on the version. The
// claimer may be one that never drives the transfer (stopping itself, or
// with no account of its provider), the case the resumption rule covers
// for a claim the look saw: the take-back's conflict was taken as "the
// claimer drives it", and the caller stayed on hold.
func TestAClaimLandingJustBeforeTheTakeBackLeavesNoCallerOnHold(t *testing.T) {
	ctx := context.Background()
	store := &claimBeforeTakeBack{Store: memory.New(), taker: "a", claimer: "b"}
	fake := orchestratortest.NewFake("fake")
	a := replicaWith(t, orchestrator.Config{Owner: "a", LeaseTTL: 2 * time.Second, HandoverPatience: 20 * time.Millisecond}, store, fake)
	openAll(t, a)
	// b: a live heartbeat, and a claim that drives nothing.
	if _, err := store.Heartbeat(ctx, "b", "token-b", time.Now(), time.Hour, false); err != nil {
		t.Fatal(err)
	}
	tr := consultingOn(t, a, "1000")

	err := shutdownWithin(a)
	if !store.claimed.Load() {
		t.Fatal("no take-back was tried")
	}
	got, gerr := store.Get(ctx, tr.ID)
	if gerr != nil {
		t.Fatal(gerr)
	}
	if got.Open() {
		c, _ := fake.State(tr.ID)
		t.Fatalf("a's shutdown returned %v; the transfer is %s, owned by %q, which never drives it; the provider shows caller %d, consult %d: want the caller given back",
			err, got.State, got.Owner, c.Caller, c.Consult)
	}
	if err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	wantOutcome(t, got, orchestrator.StateFailed, orchestrator.ReasonShutdown, true)
	wantCallerSafe(t, fake, tr.ID)
}
