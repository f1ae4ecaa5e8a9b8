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

// getFails fails its first Get as a store whose connection ended (a
// database restarting or failing over): an error of no kind.
type getFails struct {
	*memory.Store
	done bool
}

func (s *getFails) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	if !s.done {
		s.done = true
		return nil, errors.New("postgres: get " + id + ": FATAL: terminating connection due to administrator command (SQLSTATE 57P01)")
	}
	return s.Store.Get(ctx, id)
}

// A /complete or /cancel sent to a replica that does not drive the
// transfer reads it from the store first. When that read failed as the
// database's connections ended, the action was an internal error (a
// 500, no word of a retry): nothing had been recorded, and a client that
// did not retry a 500 left its complete undone, the consult running out
// and the caller given back. It is now ErrSignalNotRecorded, unavailable
// (a 503 telling the client to retry), and the action made again is
// recorded.
func TestAnActionWhoseTransferCouldNotBeReadIsToldToRetry(t *testing.T) {
	for _, sig := range []orchestrator.Signal{orchestrator.SignalComplete, orchestrator.SignalCancel} {
		t.Run(string(sig), func(t *testing.T) {
			ctx := context.Background()
			mem := memory.New()
			st := &getFails{Store: mem}
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
			act := e.Complete
			if sig == orchestrator.SignalCancel {
				act = e.Cancel
			}
			_, err := act(ctx, tr.ID)
			if !errors.Is(err, orchestrator.ErrSignalNotRecorded) || orchestrator.KindOf(err) != orchestrator.KindUnavailable {
				t.Fatalf("the action whose read failed: %v (kind %v); want ErrSignalNotRecorded, unavailable", err, orchestrator.KindOf(err))
			}
			if got, err := mem.PeekSignal(ctx, tr.ID); err != nil || got != orchestrator.SignalNone {
				t.Fatalf("the store's pending signal after the failed read: %q (%v); want none", got, err)
			}
			if _, err := act(ctx, tr.ID); err != nil {
				t.Fatalf("the action made again: %v", err)
			}
			if got, err := mem.PeekSignal(ctx, tr.ID); err != nil || got != sig {
				t.Fatalf("the store's pending signal: %q (%v); want %s", got, err, sig)
			}
		})
	}
}
