package postgres_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
)

// A PutSignal whose caller leaves (its context ends) while it waits for a
// connection stops waiting, and records nothing. Found by review: since
// the insert ran on a context of its own, so did the wait for its
// connection, which went on for up to 10 s after the caller had left
// (every connection busy: a pool sized for fewer transfers than run, a
// server slow to answer), and then recorded the signal all the same.
func TestPutSignalStopsWaitingForAConnectionWhenItsCallerLeaves(t *testing.T) {
	url := withParam(inSchema(baseURL(t), newSchema(t, baseURL(t))), "pool_max_conns", "1")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var hook atomic.Pointer[func()]
	s, err := postgres.OpenWithAcquireHook(ctx, url, &hook)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ids := batchIDs{at: time.Date(2026, 12, 7, 11, 0, 0, 0, time.UTC)}
	tr := ids.transfer("1000")
	createAll(t, s, tr)

	release, err := postgres.HoldConn(ctx, s) // the pool's only connection
	if err != nil {
		t.Fatal(err)
	}
	callerCtx, leave := context.WithCancel(ctx)
	leaves := func() { leave() }
	hook.Store(&leaves) // the caller leaves as the store starts to wait
	err = s.PutSignal(callerCtx, tr.ID, orchestrator.SignalCancel, tr.Version)
	release()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("PutSignal whose caller left while it waited for a connection = %v, want its caller's context.Canceled", err)
	}
	if sig, err := s.PeekSignal(ctx, tr.ID); err != nil || sig != orchestrator.SignalNone {
		t.Errorf("PeekSignal = %q, %v; want none: the caller had left before anything was sent", sig, err)
	}
}
