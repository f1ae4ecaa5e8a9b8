package orchestrator_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

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
	// Its consult is still up at the end, handed over to no one.
	t.Cleanup(func() { stopAtOnce(z) })
	if err := z.Open(ctx); err != nil {
		t.Fatal(err)
	}
	tr := consultingOn(t, z, "1000")

	clock := newManualClock()
	sleeper := &heldBeatsOn{Store: mem, gate: make(chan struct{}), settled: make(chan struct{})}
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
	sleeper.settledTwice(t, "the woken process's maintenance never ran")
	got, err := mem.Get(ctx, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Owner != "z" {
		t.Errorf("a process whose lease had run out claimed %s (owner %q, driven by the name's live process: %v); want it left to z",
			tr.ID, got.Owner, second.Drives(tr.ID))
	}
}

// lostThenTaken answers one save of a transfer with an error after
// writing it (a commit whose answer was lost), and has another process
// take the name over while the engine reads the record to tell its own
// write (ownWrite).
type lostThenTaken struct {
	*heldBeats
	mu        sync.Mutex
	id        string
	lose, got bool
}

func (s *lostThenTaken) Update(ctx context.Context, t *orchestrator.Transfer) error {
	s.mu.Lock()
	lose := s.lose && t.ID == s.id
	s.lose = s.lose && !lose
	s.mu.Unlock()
	v := t.Version
	err := s.heldBeats.Update(ctx, t)
	if lose && err == nil {
		t.Version = v // as a store that answered with an error leaves it
		return orchestrator.E("test", orchestrator.KindUnavailable, errors.New("the commit's answer was lost"))
	}
	return err
}

func (s *lostThenTaken) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	s.mu.Lock()
	take := !s.lose && s.id == id && !s.got
	s.got = s.got || take
	s.mu.Unlock()
	if take {
		if _, err := s.Store.Heartbeat(ctx, "x", "newer", time.Now(), time.Minute, true); err != nil {
			return nil, err
		}
	}
	return s.heldBeats.Get(ctx, id)
}

// Found by the second review of the sixty-fourth pass's storage fixes: a
// save made again after one whose answer was lost, and refused for the
// token (another process took the name over between the two), stops the
// process as any refused save does. Taken for a version conflict, it only
// dropped the transfer, and the process, not superseded, stayed ready and
// took creates until its next refused save or heartbeat.
func TestASaveRefusedAfterItsOwnLostWriteStopsTheProcess(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	st := &lostThenTaken{heldBeats: &heldBeats{Store: mem, gate: make(chan struct{})}}
	defer close(st.gate)
	fake := orchestratortest.NewFake("fake")
	first := replica(t, "x", st, fake, nil)
	if err := first.Open(ctx); err != nil {
		t.Fatal(err)
	}
	tr := consultingOn(t, first, "1000")
	st.mu.Lock()
	st.id, st.lose = tr.ID, true
	st.mu.Unlock()
	if _, err := first.Complete(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the transfer dropped after the refused save", func() bool { return !slices.Contains(first.Running(), tr.ID) })
	select {
	case <-first.Superseded():
	default:
		t.Error("a save refused for the token after its own lost write did not stop the process")
	}
	if n := countActions(fake.ActionsFor(tr.ID), orchestratortest.MethodComplete); n != 0 {
		t.Errorf("%d joins sent by the process whose name was taken over, want none", n)
	}
}
