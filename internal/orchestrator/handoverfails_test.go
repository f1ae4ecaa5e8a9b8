package orchestrator_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// A replica shutting down beside a peer that has no account of the
// transfer's provider (a tenants file that reached the two at different
// times, a provider configured on one replica only) hands its consult over
// to that peer. The peer's claim takes the transfer (Store.Claim does not
// know accounts) and its adopt refuses it: nobody drives it. The replica
// shutting down sees the transfer another's and stops, and the caller
// stays on hold with the consult up, where a shutdown without the
// hand-over gave the caller back.
func TestAHandoverToAPeerThatCannotDriveItLeavesNoCallerOnHold(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	fake := orchestratortest.NewFake("fake")
	// The patience outlasts several of b's looks (every half second):
	// b has claimed the transfer long before it ends.
	cfg := func(owner string) orchestrator.Config {
		return orchestrator.Config{Owner: owner, LeaseTTL: 2 * time.Second, HandoverPatience: 3 * time.Second}
	}
	a := replicaWith(t, cfg("a"), store, fake)
	// b has no account of "fake": it serves another provider only.
	b := replicaWith(t, cfg("b"), store, orchestratortest.NewFake("other"))
	openAll(t, a, b)
	tr := consultingOn(t, a, "1000")

	if err := shutdownWithin(a); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	got, err := store.Get(ctx, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Open() && !b.Drives(tr.ID) {
		c, _ := fake.State(tr.ID)
		t.Fatalf("after a's shutdown the transfer is %s, owned by %q, which does not drive it; the provider shows caller %d, consult %d: "+
			"want it driven by a replica or its caller given back", got.State, got.Owner, c.Caller, c.Consult)
	}
}

// downAfterPeers is a store that goes down (every Update and Get fails,
// nothing written) once Peers has answered: the store fails as a
// shutdown begins, after it found a peer.
type downAfterPeers struct {
	orchestrator.Store
	down atomic.Bool
}

var errDown = errors.New("the store is down")

func (s *downAfterPeers) Peers(ctx context.Context, owner string, now time.Time) (int, error) {
	n, err := s.Store.Peers(ctx, owner, now)
	s.down.Store(true)
	return n, err
}

func (s *downAfterPeers) Update(ctx context.Context, t *orchestrator.Transfer) error {
	if s.down.Load() {
		return errDown
	}
	return s.Store.Update(ctx, t)
}

func (s *downAfterPeers) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	if s.down.Load() {
		return nil, errDown
	}
	return s.Store.Get(ctx, id)
}

// A store that fails from the moment a shutdown found a peer: the
// hand-over's save fails, and every read of the store after it. The
// replica dropped the transfer at the failed save (handOver), finds
// nothing it can read for HandoverPatience, takes nothing back, and
// Shutdown returns nil as if nothing were left: the caller stays on hold
// with the consult up, and the operator is told the shutdown finished
// everything. A shutdown without a peer gives the caller back with the
// store down (only steps that give the caller back are made while saves
// fail); here at least the transfer must be reported left.
func TestAHandoverTheStoreCannotSaveOrReadIsNotReportedFinished(t *testing.T) {
	store := &downAfterPeers{Store: memory.New()}
	fake := orchestratortest.NewFake("fake")
	a, _ := handoverPair(t, store, fake, 20*time.Millisecond)
	tr := consultingOn(t, a, "1000")
	err := shutdownWithin(a)
	c, _ := fake.State(tr.ID)
	held := c.Caller == orchestrator.CallerHeld
	if err == nil && held {
		t.Fatalf("Shutdown returned nil with the caller held (caller %d, consult %d) and the transfer never saved: "+
			"want the caller given back, or the transfer reported left", c.Caller, c.Consult)
	}
}

// claimInFlight holds one Claim of stall's until its context ends (the
// replica's maintenance stopped by its shutdown), then lets it commit and
// loses its answer: a claim that was on its way as the replica began
// shutting down. It also tells when a transfer is saved with no owner.
type claimInFlight struct {
	orchestrator.Store
	stall   string
	armed   atomic.Bool
	entered chan struct{}
	handed  chan struct{}
	once    atomic.Bool
}

func (s *claimInFlight) Claim(ctx context.Context, owner, token string, now time.Time, own bool, limit int) ([]*orchestrator.Transfer, error) {
	if owner == s.stall && !own && s.armed.CompareAndSwap(true, false) {
		close(s.entered)
		<-ctx.Done()
		_, _ = s.Store.Claim(context.WithoutCancel(ctx), owner, token, now, own, limit)
		return nil, ctx.Err()
	}
	return s.Store.Claim(ctx, owner, token, now, own, limit)
}

func (s *claimInFlight) Update(ctx context.Context, t *orchestrator.Transfer) error {
	owner := t.Owner
	err := s.Store.Update(ctx, t)
	if err == nil && owner == "" && s.once.CompareAndSwap(false, true) {
		close(s.handed)
	}
	return err
}

// Two replicas stopping one after another: b's claim is on its way as
// a hands its consult over, and b's shutdown begins before it lands.
// The claim commits (its answer lost to b's stopping): the transfer is
// b's, which drives nothing any more. a sees it claimed by a peer and
// stops; nobody gives the caller back, and nobody will until a replica
// starts and claims it. A shutdown without the hand-over gave the caller
// back.
func TestAHandoverClaimedByAPeerAlreadyStoppingLeavesNoCallerOnHold(t *testing.T) {
	ctx := context.Background()
	store := &claimInFlight{Store: memory.New(), stall: "b", entered: make(chan struct{}), handed: make(chan struct{})}
	fake := orchestratortest.NewFake("fake")
	a, b := handoverPair(t, store, fake, 3*time.Second)
	tr := consultingOn(t, a, "1000")

	store.armed.Store(true)
	<-store.entered // b's claim is on its way
	errA := make(chan error, 1)
	go func() { errA <- shutdownWithin(a) }()
	<-store.handed // a handed the consult over
	if err := shutdownWithin(b); err == nil {
		t.Log("b's shutdown returned nil")
	}
	if err := <-errA; err != nil {
		t.Logf("a's Shutdown: %v", err)
	}
	got, err := store.Get(ctx, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := fake.State(tr.ID)
	if got.Open() && c.Caller == orchestrator.CallerHeld {
		t.Fatalf("both replicas stopped; the transfer is %s, owned by %q, the caller held (consult %d): want the caller given back",
			got.State, got.Owner, c.Consult)
	}
}
