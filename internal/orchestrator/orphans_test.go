package orchestrator_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// claimLost is a store whose first claim that takes anything is saved but
// answered with an internal error, as when a connection drops between a
// commit and its answer.
type claimLost struct {
	*memory.Store
	once sync.Once
}

func (s *claimLost) Claim(ctx context.Context, owner string, now time.Time, own bool, limit int) ([]*orchestrator.Transfer, error) {
	ts, err := s.Store.Claim(ctx, owner, now, own, limit)
	if err != nil || len(ts) == 0 {
		return ts, err
	}
	lost := false
	s.once.Do(func() { lost = true })
	if lost {
		return nil, orchestrator.E("store.Claim", orchestrator.KindInternal, errors.New("connection reset after the commit"))
	}
	return ts, nil
}

// Found by review (older than this pass): a claim whose commit landed
// although its answer was lost made a dead replica's transfers this
// replica's, at a higher version, and no later claim returns a replica's
// own transfers: nobody drove them until this replica restarted, the
// caller held meanwhile. Now the replica looks for the open transfers it
// owns and drives none of, and drives them.
func TestTransfersOfAClaimWhoseAnswerWasLostAreDriven(t *testing.T) {
	ctx := context.Background()
	store := &claimLost{Store: memory.New()}
	fake := orchestratortest.NewFake("fake")
	dead := &freeze{release: make(chan struct{})}
	// a is never Opened: it has no heartbeat, so its transfers are
	// claimable at once; it freezes after the hold, the caller held.
	a := replica(t, "a", store, fake, dead.point)
	b := replica(t, "b", store, fake, nil)
	t.Cleanup(func() { close(dead.release) })
	fake.Before(orchestratortest.MethodHold, func(orchestratortest.Record) { dead.arm() })
	if err := b.Open(ctx); err != nil {
		t.Fatal(err)
	}
	// b's periodic claim takes it: saved, its answer lost.
	tr, err := a.Start(ctx, request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if end.State != orchestrator.StateCompleted {
		t.Errorf("the transfer ended %s %+v; want completed", end.State, end.Outcome)
	}
	if end.Owner != "b" {
		t.Errorf("the transfer ended owned by %q; want b", end.Owner)
	}
	if c, _ := fake.State(tr.ID); c.Caller != orchestrator.CallerTransferred {
		t.Errorf("the provider shows the caller %v, want with the target", c.Caller)
	}
}

// adoptsInCreate is a store that, once a create has committed and before
// Start hears of it, runs the engine's look for orphans: the moment a
// claim's lost answer can make that look run.
type adoptsInCreate struct {
	*memory.Store
	e     *orchestrator.Engine
	found bool // the look could read the store
}

func (s *adoptsInCreate) Create(ctx context.Context, t *orchestrator.Transfer) error {
	if err := s.Store.Create(ctx, t); err != nil {
		return err
	}
	s.found = orchestrator.AdoptOrphans(ctx, s.e)
	return nil
}

// Found by review (left open since the twenty-first pass): a look for
// orphans that ran between a create's commit and Start's adopt took the
// new transfer for an orphan and drove it as resumed, with a "resumed by"
// step, a save and a warning, although no process had driven it before.
func TestAJustCreatedTransferIsNotAnOrphan(t *testing.T) {
	ctx := context.Background()
	store := &adoptsInCreate{Store: memory.New()}
	fake := orchestratortest.NewFake("fake")
	e := replica(t, "a", store, fake, nil)
	store.e = e
	tr, err := e.Start(ctx, request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !store.found {
		t.Fatal("the look for orphans could not read the store")
	}
	end := waitFor(t, e, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if end.State != orchestrator.StateCompleted {
		t.Errorf("the transfer ended %s %+v; want completed", end.State, end.Outcome)
	}
	for _, s := range end.Steps {
		if s.Name == orchestrator.StepReconcile && strings.HasPrefix(s.Detail, "resumed by") {
			t.Errorf("the new transfer was driven as resumed: step %s %q", s.Name, s.Detail)
		}
	}
}
