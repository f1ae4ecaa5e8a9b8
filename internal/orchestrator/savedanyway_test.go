package orchestrator_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// ackLost is a store whose first Create is saved, but whose caller is told
// it failed, as when a connection drops between a commit and its answer.
// getFails makes that many Gets fail; beforeGet, if set, runs before the
// first Get.
type ackLost struct {
	*memory.Store
	createOnce, getOnce sync.Once
	getFails            atomic.Int32
	beforeGet           func(s *memory.Store)
}

func (s *ackLost) Create(ctx context.Context, t *orchestrator.Transfer) error {
	if err := s.Store.Create(ctx, t); err != nil {
		return err
	}
	lost := false
	s.createOnce.Do(func() { lost = true })
	if lost {
		return orchestrator.E("store.Create", orchestrator.KindInternal, errors.New("connection reset after the commit"))
	}
	return nil
}

func (s *ackLost) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	s.getOnce.Do(func() {
		if s.beforeGet != nil {
			s.beforeGet(s.Store)
		}
	})
	if s.getFails.Add(-1) >= 0 {
		return nil, orchestrator.E("store.Get", orchestrator.KindInternal, errors.New("connection refused"))
	}
	return s.Store.Get(ctx, id)
}

func waitTerminal(t *testing.T, e *orchestrator.Engine, id string) *orchestrator.Transfer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	end, err := e.Wait(ctx, id, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return end
}

// Found by review: a create whose save was committed although the store's
// answer said it failed left a transfer that held its call (every new
// transfer of it a 409) and that nobody drove until the replica restarted.
// The engine now reads such a record back: saved, it is driven, and the
// create succeeds.
func TestCreateSavedDespiteALostAnswerIsDriven(t *testing.T) {
	st := &ackLost{Store: memory.New()}
	e := testEngine(t, fastConfig(time.Second, stormWindowShort), st, orchestratortest.NewFake("fake"), nil)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatalf("Start: %v; want the saved transfer", err)
	}
	if end := waitTerminal(t, e, tr.ID); end.State != orchestrator.StateCompleted {
		t.Fatalf("the transfer ended %v; want completed", end.State)
	}
}

// When the read-back fails too, the create fails as the store said, and
// the engine goes on looking for the record: saved, it is driven (a
// second review: it stayed pending, undriven, until the replica
// restarted).
func TestCreateWhoseReadBackFailedIsFoundLaterAndDriven(t *testing.T) {
	st := &ackLost{Store: memory.New()}
	st.getFails.Store(2) // the read-back and the first look after it
	e := testEngine(t, fastConfig(time.Second, stormWindowShort), st, orchestratortest.NewFake("fake"), nil)
	_, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if orchestrator.KindOf(err) != orchestrator.KindInternal {
		t.Fatalf("Start: %v; want the store's internal error", err)
	}
	ts, _, err := st.Store.List(context.Background(), orchestrator.ListFilter{})
	if err != nil || len(ts) != 1 {
		t.Fatalf("stored transfers %d (%v); want the one saved", len(ts), err)
	}
	var end *orchestrator.Transfer
	eventually(t, "the saved transfer driven to its end", func() bool {
		end, _ = st.Store.Get(context.Background(), ts[0].ID)
		return end != nil && end.State.Terminal()
	})
	if end.State != orchestrator.StateCompleted {
		t.Fatalf("the transfer ended %v; want completed", end.State)
	}
}

// Found by a second review: the read-back set only its version on the
// engine's own record of the create, and adopted it. When another replica
// had claimed the transfer meanwhile (this one's heartbeat lapsing while
// the store could not be reached) and saved a step, the creator's first
// save was a compare-and-set at the claimer's version: it overwrote the
// claim, and both replicas drove the transfer. Now a record read back is
// driven only if it is still as the create saved it; otherwise the create
// answers with it, and leaves it to its owner.
func TestCreateReadBackClaimedByAnotherReplicaIsLeftToIt(t *testing.T) {
	st := &ackLost{Store: memory.New(), beforeGet: func(s *memory.Store) {
		ts, err := s.Claim(context.Background(), "other", time.Now(), false, 0)
		if err != nil || len(ts) != 1 {
			panic("the claim by the other replica failed")
		}
		c := ts[0]
		c.State = orchestrator.StateHolding
		c.UpdatedAt = time.Now()
		if err := s.Update(context.Background(), c); err != nil {
			panic(err)
		}
	}}
	cfg := fastConfig(time.Second, stormWindowShort)
	cfg.Owner = "creator"
	reg := prometheus.NewRegistry()
	f := orchestratortest.NewFake("fake")
	e := testEngine(t, cfg, st, f, reg)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatalf("Start: %v; the transfer was saved, so the create succeeds", err)
	}
	if tr.Owner != "other" || tr.State != orchestrator.StateHolding {
		t.Errorf("the create answered %s owned by %q; want the record as the claimer saved it", tr.State, tr.Owner)
	}
	// Not adopted: this replica drives nothing, and sends nothing.
	if n := metric(t, reg, "transferd_transfers_in_flight", map[string]string{"provider": "fake"}); n != 0 {
		t.Errorf("%v transfers in flight on the creator; want 0 (the claimer drives it)", n)
	}
	if n := metric(t, reg, "transferd_transfers_started_total", map[string]string{"provider": "fake"}); n != 1 {
		t.Errorf("%v transfers counted started; want 1", n)
	}
	if acts := f.ActionsFor(tr.ID); len(acts) != 0 {
		t.Errorf("the creator sent %v", acts)
	}
}
