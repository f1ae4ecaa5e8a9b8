package orchestrator_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// tickedBeats is heldBeats that also tells each settling of reservations,
// the last step of a maintenance round after its claim.
type tickedBeats struct {
	*heldBeats
	settled chan struct{}
}

func (s *tickedBeats) SettleIdempotency(ctx context.Context, owner string, now, ownBefore time.Time) (int, error) {
	n, err := s.heldBeats.SettleIdempotency(ctx, owner, now, ownBefore)
	select {
	case s.settled <- struct{}{}:
	default:
	}
	return n, err
}

// Found by the second review of the sixty-fourth pass's storage fixes: a
// process whose lease has run out (a paused VM that wakes, its heartbeat
// not renewed yet) claims no other replica's transfers. Woken beside the
// process that took its name over while it slept, it claimed, before its
// heartbeat told it to stop, the transfers of a replica it found dead:
// they became the name's, its first save of each was refused (saves carry
// the token), and the process that drives the name had no entry for them
// until its look for orphans, a minute later, their callers perhaps held
// all that time (it took a live heartbeat over only when the sleeper's had
// not run out: here it had, and it looks for nothing sooner). A replica
// whose lease lapsed could send nothing for them anyway.
func TestAProcessWhoseLeaseRanOutClaimsNothing(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	fake := orchestratortest.NewFake("fake")
	// A replica the sleeper's clock finds dead, live by everyone else's.
	z := replicaWith(t, orchestrator.Config{Owner: "z", LeaseTTL: time.Hour}, mem, fake)
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

	clock := newManualClock()
	sleeper := &tickedBeats{heldBeats: &heldBeats{Store: mem, gate: make(chan struct{})}, settled: make(chan struct{})}
	defer close(sleeper.gate)
	first := replicaWith(t, orchestrator.Config{Owner: "x", LeaseTTL: 2 * time.Second, Clock: clock.Now}, sleeper, fake)
	if err := first.Open(ctx); err != nil {
		t.Fatal(err)
	}
	// It sleeps past its heartbeat's end; another process takes the name
	// over meanwhile, and then it wakes.
	clock.Advance(2 * time.Hour)
	second := replica(t, "x", mem, fake, nil)
	if err := second.Open(ctx); err != nil {
		t.Fatal(err)
	}
	// Two rounds of the sleeper's maintenance: the second one's claim
	// began after the wake.
	for range 2 {
		select {
		case <-sleeper.settled:
		case <-time.After(20 * time.Second):
			t.Fatal("the woken process's maintenance never ran")
		}
	}
	got, err := mem.Get(ctx, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Owner != "z" {
		t.Errorf("a process whose lease had run out claimed %s (owner %q, driven by the name's live process: %v); want it left to z",
			tr.ID, got.Owner, second.Drives(tr.ID))
	}
}
