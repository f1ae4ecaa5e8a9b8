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

// secondGetFails fails the second Get as a store whose connection the
// database ended, and tells failed once it has.
type secondGetFails struct {
	*memory.Store
	gets   atomic.Int32
	failed chan struct{}
}

func (s *secondGetFails) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	if s.gets.Add(1) == 2 {
		defer close(s.failed)
		return nil, errors.New("postgres: get " + id + ": FATAL: terminating connection due to administrator command (SQLSTATE 57P01)")
	}
	return s.Store.Get(ctx, id)
}

// A long poll on a transfer another replica drives reads the store at
// each poll. One read that failed as the database's connections ended (a
// restart, a failover) ended the wait with the error, a 500 for a
// transfer the poll had read while its owner drove it on. The read is
// now tried again at the next poll, and the wait sees the end.
func TestALongPollOnAnotherReplicasTransferOutlastsAFailedRead(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	st := &secondGetFails{Store: mem, failed: make(chan struct{})}
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

	type result struct {
		t   *orchestrator.Transfer
		err error
	}
	done := make(chan result, 1)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	go func() {
		got, err := e.Wait(wctx, tr.ID, func(*orchestrator.Transfer) bool { return false })
		done <- result{got, err}
	}()
	<-st.failed
	// The owner ends the transfer after the failed read.
	cur, err := mem.Get(ctx, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	cur.State, cur.Outcome = orchestrator.StateCancelled, &orchestrator.Outcome{Reason: orchestrator.ReasonCancelled, CallerRestored: true, Verified: true}
	if err := mem.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil || res.t == nil || res.t.State != orchestrator.StateCancelled {
		t.Fatalf("the long poll answered %+v, %v; want the transfer cancelled", res.t, res.err)
	}
}
