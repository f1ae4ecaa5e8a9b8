package orchestrator_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// putFails fails its first PutSignal as a store whose answer was lost:
// after saving the signal (saved) or before.
type putFails struct {
	*memory.Store
	saved bool
	done  bool
}

func (s *putFails) PutSignal(ctx context.Context, id string, sig orchestrator.Signal, version int64) error {
	if s.done {
		return s.Store.PutSignal(ctx, id, sig, version)
	}
	s.done = true
	if s.saved {
		if err := s.Store.PutSignal(ctx, id, sig, version); err != nil {
			return err
		}
	}
	return orchestrator.E("store.PutSignal", orchestrator.KindInternal, errors.New("connection reset"))
}

// A /complete or /cancel made again while the first is still pending (a
// retry whose answer was lost, a second click) was refused as a conflict
// with "another signal is already pending", although it asked for what
// was already going to happen. The same action is accepted; another one
// is still a conflict. And an action whose signal the store neither
// confirmed nor refused is ErrSignalUnknown (unavailable), not an internal
// error: on both sides of what the engine cannot tell, the action made
// again is accepted. The transfer is owned by a live replica elsewhere,
// so that nothing takes the signal meanwhile: the store shows it pending.
func TestTheSameActionMadeAgainIsAccepted(t *testing.T) {
	for _, tc := range []struct {
		name        string
		lost, saved bool
	}{{"pending", false, false}, {"first answer lost, saved", true, true}, {"first answer lost, not saved", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			mem := memory.New()
			st := &putFails{Store: mem, saved: tc.saved, done: !tc.lost}
			now := time.Now()
			if _, err := mem.Heartbeat(ctx, "elsewhere", "", now, time.Hour, false); err != nil {
				t.Fatal(err)
			}
			r := request("fake", "1000")
			r.Completion = orchestrator.CompletionManual
			tr := &orchestrator.Transfer{ID: orchestrator.NewID(now), Tenant: orchestrator.DefaultTenant, Request: r,
				State: orchestrator.StateConsulting, Answered: true, Owner: "elsewhere", CreatedAt: now, UpdatedAt: now}
			if err := mem.Create(ctx, tr); err != nil {
				t.Fatal(err)
			}
			e := testEngine(t, fastConfig(time.Second, stormWindowShort), st, orchestratortest.NewFake("fake"), nil)

			_, err := e.Complete(ctx, tr.ID)
			switch {
			case tc.lost && (!errors.Is(err, orchestrator.ErrSignalUnknown) || orchestrator.KindOf(err) != orchestrator.KindUnavailable):
				t.Fatalf("the first complete: %v; want ErrSignalUnknown, unavailable", err)
			case !tc.lost && err != nil:
				t.Fatalf("the first complete: %v", err)
			}
			if _, err := e.Complete(ctx, tr.ID); err != nil {
				t.Fatalf("the complete made again: %v; want it accepted", err)
			}
			if sig, err := mem.PeekSignal(ctx, tr.ID); err != nil || sig != orchestrator.SignalComplete {
				t.Fatalf("the store's pending signal: %q (%v); want complete", sig, err)
			}
			_, err = e.Cancel(ctx, tr.ID)
			if orchestrator.KindOf(err) != orchestrator.KindConflict {
				t.Fatalf("a cancel while the complete is pending: %v; want a conflict", err)
			}
			if sig, err := mem.PeekSignal(ctx, tr.ID); err != nil || sig != orchestrator.SignalComplete {
				t.Fatalf("the store's pending signal after the cancel: %q (%v); want complete still", sig, err)
			}
		})
	}
}
