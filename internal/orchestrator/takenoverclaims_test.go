package orchestrator_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// Found by the storage review of the sixty-fifth pass: a process whose
// name another process took over, its lease still held (it has not
// heartbeaten since), claims nothing: its claim carries its token, is
// refused, and stops it. Before, it made a dead replica's transfer the
// name's; its first save of it was refused, and the name's live process
// adopted it only a heartbeat TTL after its takeover (afterTakeover),
// where any live replica would have claimed it at its next claim.
func TestAProcessTakenOverClaimsNothing(t *testing.T) {
	takenOverClaimsNothing(t, memory.New())
}

// heldBeatsOn is heldBeats on any store that also tells each maintenance
// round's end: its renewals of a heartbeat wait for gate, and each
// settling of reservations, the last step of a round after its claim,
// ticks settled.
type heldBeatsOn struct {
	orchestrator.Store
	gate, settled chan struct{}
}

func (s *heldBeatsOn) Heartbeat(ctx context.Context, owner, token string, now time.Time, ttl time.Duration, take bool) (bool, error) {
	if !take {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return s.Store.Heartbeat(ctx, owner, token, now, ttl, take)
}

func (s *heldBeatsOn) SettleIdempotency(ctx context.Context, owner string, now, ownBefore time.Time) (int, error) {
	n, err := s.Store.SettleIdempotency(ctx, owner, now, ownBefore)
	select {
	case s.settled <- struct{}{}:
	default:
	}
	return n, err
}

// settledTwice waits for two rounds of maintenance on s, the second one's
// claim begun after anything done before the call; it fails the test
// saying what if they never come.
func (s *heldBeatsOn) settledTwice(t *testing.T, what string) {
	t.Helper()
	for range 2 {
		select {
		case <-s.settled:
		case <-time.After(20 * time.Second):
			t.Fatal(what)
		}
	}
}

// TestAProcessTakenOverClaimsNothing on the stores replicas share: the
// claim of a process whose name another process took over, its lease
// still held, is refused by SQLite and PostgreSQL for its token, leaves
// the dead replica's transfer to the live replicas, and stops the
// process, as on memory.
func TestAProcessTakenOverClaimsNothingOnEveryStore(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			takenOverClaimsNothing(t, handoverStores[name](t))
		})
	}
}

// takenOverClaimsNothing has a process whose name another process took
// over, its lease still held (it has not heartbeaten since), run its
// claims on st after a replica died, and wants the dead replica's
// transfer left to the live replicas and the process superseded.
func takenOverClaimsNothing(t *testing.T, st orchestrator.Store) {
	t.Helper()
	ctx := context.Background()
	fake := orchestratortest.NewFake("fake")
	z := replicaWith(t, orchestrator.Config{Owner: "z", LeaseTTL: time.Hour}, st, fake)
	if err := z.Open(ctx); err != nil {
		t.Fatal(err)
	}
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	tr, err := z.Start(ctx, r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, z, tr.ID, answered)

	// The first process's clock stands still: its lease holds whenever
	// its claims run, and its heartbeat waits, so that only its claim can
	// tell it of the takeover.
	clock := newManualClock()
	first := &heldBeatsOn{Store: st, gate: make(chan struct{}), settled: make(chan struct{})}
	defer close(first.gate)
	x := replicaWith(t, orchestrator.Config{Owner: "x", LeaseTTL: 2 * time.Second, Clock: clock.Now}, first, fake)
	if err := x.Open(ctx); err != nil {
		t.Fatal(err)
	}
	// The second process takes the name over; its own claims of others'
	// transfers come a quarter of an hour apart, after the test.
	second := replicaWith(t, orchestrator.Config{Owner: "x", LeaseTTL: time.Hour}, st, fake)
	if err := second.Open(ctx); err != nil {
		t.Fatal(err)
	}
	// z dies: its heartbeat ends before the first process's clock.
	if _, err := st.Heartbeat(ctx, "z", "", clock.Now().Add(-time.Hour), time.Minute, true); err != nil {
		t.Fatal(err)
	}
	// Two rounds of the first process's maintenance: the second one's
	// claim began after z's heartbeat ended.
	first.settledTwice(t, "the first process's maintenance never ran")
	got, err := st.Get(ctx, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Owner != "z" {
		t.Errorf("the process taken over claimed %s (owner %q): want it left to the live replicas", tr.ID, got.Owner)
	}
	select {
	case <-x.Superseded():
	default:
		t.Error("the process whose claim was refused for its token is not superseded")
	}
}
