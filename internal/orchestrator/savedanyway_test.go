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

// ackLost is a store whose Creates are saved while lost is set, but whose
// callers are told they failed, as when a connection drops between a
// commit and its answer; getFails makes Get fail too.
type ackLost struct {
	*memory.Store
	lost, getFails atomic.Bool
}

func (s *ackLost) Create(ctx context.Context, t *orchestrator.Transfer) error {
	if err := s.Store.Create(ctx, t); err != nil {
		return err
	}
	if s.lost.Load() {
		return orchestrator.E("store.Create", orchestrator.KindInternal, errors.New("connection reset after the commit"))
	}
	return nil
}

func (s *ackLost) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	if s.getFails.Load() {
		return nil, orchestrator.E("store.Get", orchestrator.KindInternal, errors.New("connection refused"))
	}
	return s.Store.Get(ctx, id)
}

// Found by review: a create whose save was committed although the store's
// answer said it failed left a transfer that held its call (every new
// transfer of it a 409) and that nobody drove until the replica restarted.
// The engine now reads such a record back: saved, it is driven, and the
// create succeeds.
func TestCreateSavedDespiteALostAnswerIsDriven(t *testing.T) {
	st := &ackLost{Store: memory.New()}
	st.lost.Store(true)
	f := orchestratortest.NewFake("fake")
	e := testEngine(t, fastConfig(time.Second, stormWindowShort), st, f, nil)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatalf("Start: %v; want the saved transfer", err)
	}
	st.lost.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	end, err := e.Wait(ctx, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if err != nil || end.State != orchestrator.StateCompleted {
		t.Fatalf("the transfer ended %v (%v); want completed", end.State, err)
	}
}

// When the record cannot be read back either, the create fails as the
// store said: nothing claims a success it cannot show.
func TestCreateWhoseAnswerAndReadBackFailFails(t *testing.T) {
	st := &ackLost{Store: memory.New()}
	st.lost.Store(true)
	st.getFails.Store(true)
	e := testEngine(t, fastConfig(time.Second, stormWindowShort), st, orchestratortest.NewFake("fake"), nil)
	_, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if orchestrator.KindOf(err) != orchestrator.KindInternal {
		t.Fatalf("Start: %v; want the store's internal error", err)
	}
}
