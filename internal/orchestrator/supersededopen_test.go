package orchestrator_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// takenOverAtClaims is a store under whose name another process took
// over between the opening process's heartbeat and its claims: every
// claim is refused for the token (ErrSuperseded). A second claim ends
// the opening's context.
type takenOverAtClaims struct {
	*memory.Store
	claims atomic.Int32
	cancel context.CancelFunc
}

func (s *takenOverAtClaims) Claim(context.Context, string, string, time.Time, bool, int) ([]*orchestrator.Transfer, error) {
	if s.claims.Add(1) > 1 {
		s.cancel()
	}
	return nil, orchestrator.E("test.Claim", orchestrator.KindConflict, orchestrator.ErrSuperseded)
}

// A claim refused because another process took the name over while this
// one opened ends Open at once, with the refusal: every try would meet
// it again, and trying again for OpenPatience (a minute by default) kept
// the process up, its API about to serve, for nothing (opening stops at
// a supersede; the sixty-sixth pass's mutation O13 found this
// untested).
func TestOpenEndsAtAClaimRefusedForATakeover(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := &takenOverAtClaims{Store: memory.New(), cancel: cancel}
	e, err := orchestrator.New(orchestrator.Config{
		Owner: "x", OpenPatience: time.Hour, PollInterval: time.Millisecond, PollMaxInterval: 4 * time.Millisecond,
	}, store, []orchestrator.Provider{orchestratortest.NewFake("fake")}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
	})
	err = e.Open(ctx)
	if !errors.Is(err, orchestrator.ErrSuperseded) {
		t.Errorf("Open returned %v, want the claim's refusal (ErrSuperseded)", err)
	}
	if n := store.claims.Load(); n != 1 {
		t.Errorf("the claim was tried %d times, want once", n)
	}
}
