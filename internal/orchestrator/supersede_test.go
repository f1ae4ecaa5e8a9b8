package orchestrator_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// Two processes given one name (a Deployment with a fixed
// TRANSFERD_INSTANCE_ID, a cloned VM): the second's Open takes the name's
// transfers over at once, as a restart after a crash does; the first,
// still running, finds the second's token in the heartbeat at its next
// renewal and stops: Superseded, not ready, no new transfer, and no
// request sent for the transfer the second drives to its end alone.
func TestTwoProcessesUnderOneNameTheOlderStops(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	fake := orchestratortest.NewFake("fake")
	first := replica(t, "x", store, fake, nil)
	if err := first.Open(ctx); err != nil {
		t.Fatal(err)
	}
	tr := consultingOn(t, first, "1000")

	second := replica(t, "x", store, fake, nil)
	if err := second.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(second.Running(), tr.ID) {
		t.Fatalf("the second process did not take %s over at once (running %q)", tr.ID, second.Running())
	}
	select {
	case <-first.Superseded():
	case <-time.After(20 * time.Second):
		t.Fatal("the first process never found that the second took its name over")
	}
	if err := first.Ready(ctx); !errors.Is(err, orchestrator.ErrSuperseded) {
		t.Errorf("the superseded process's Ready = %v, want ErrSuperseded", err)
	}
	if _, err := first.Start(ctx, request("fake", "1001"), orchestrator.StartOptions{}); !errors.Is(err, orchestrator.ErrSuperseded) ||
		orchestrator.KindOf(err) != orchestrator.KindUnavailable {
		t.Errorf("a create on the superseded process = %v, want unavailable, ErrSuperseded", err)
	}
	calls := len(fake.CallsFor(tr.ID))

	// The client's complete may land on either process: the second acts.
	if _, err := first.Complete(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	tr = waitFor(t, second, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if tr.State != orchestrator.StateCompleted || tr.Outcome.Reason != orchestrator.ReasonTransferred {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	if n := countActions(fake.ActionsFor(tr.ID), orchestratortest.MethodComplete); n != 1 {
		t.Errorf("%d joins, want 1", n)
	}
	if n := len(fake.CallsFor(tr.ID)); n <= calls {
		t.Errorf("no provider call after the first process stopped (%d before, %d after): the second did not drive the transfer", calls, n)
	}
	select {
	case <-second.Superseded():
		t.Error("the second process was superseded too")
	default:
	}
	if err := second.Ready(ctx); err != nil {
		t.Errorf("the second process's Ready = %v", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// The superseded process sends nothing and compensates nothing: it
	// lets go of what it still holds. Whether it still held the transfer
	// depends on a race it does not act on: its worker, woken by the
	// complete, drops the entry once a save fails on the second's version,
	// or the entry is still there at the shutdown, which reports it left
	// to the second (this test failed about one run in 24 when it wanted
	// nil only). Either way nothing was sent, as checked above.
	if err := first.Shutdown(sctx); err != nil && (!errors.Is(err, orchestrator.ErrSuperseded) || !strings.Contains(err.Error(), "; 1 transfers left to it")) {
		t.Errorf("the superseded process's Shutdown = %v, want nil or ErrSuperseded with the one transfer left to the second", err)
	}
	if got := first.Running(); len(got) != 0 {
		t.Errorf("the superseded process still runs %q after its shutdown", got)
	}
}

// heldBeats holds a process's heartbeats after Open's until gate is
// closed: the process runs on without learning that another took its
// name over.
type heldBeats struct {
	*memory.Store
	gate chan struct{}
}

func (s *heldBeats) Heartbeat(ctx context.Context, owner, token string, now time.Time, ttl time.Duration, take bool) (bool, error) {
	if !take {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return s.Store.Heartbeat(ctx, owner, token, now, ttl, take)
}

// A create on the older of two processes under one name, after the newer
// one's Open and before the older's next heartbeat would tell it to stop,
// is refused by the store (the save carries the older's token, which the
// name's heartbeat no longer holds): nothing is saved or sent, the older
// process stops at once, and the call is free for a retry on a replica
// that serves on. Before saves carried the token, the create was saved
// and driven by the older process, and then by the newer one as well
// once it looked for what the older had created (afterTakeover).
func TestACreateOnAProcessWhoseNameWasTakenOverIsRefused(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	held := &heldBeats{Store: mem, gate: make(chan struct{})}
	defer close(held.gate)
	fake := orchestratortest.NewFake("fake")
	first := replica(t, "x", held, fake, nil)
	if err := first.Open(ctx); err != nil {
		t.Fatal(err)
	}
	second := replica(t, "x", mem, fake, nil)
	if err := second.Open(ctx); err != nil {
		t.Fatal(err)
	}
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	if tr, err := first.Start(ctx, r, orchestrator.StartOptions{}); !errors.Is(err, orchestrator.ErrSuperseded) ||
		orchestrator.KindOf(err) != orchestrator.KindUnavailable {
		t.Fatalf("a create on the process whose name was taken over = %+v, %v; want unavailable, ErrSuperseded", tr, err)
	}
	select {
	case <-first.Superseded():
	default:
		t.Error("the refused create did not stop the process whose name was taken over")
	}
	if ts, _, err := mem.List(ctx, orchestrator.ListFilter{Tenant: orchestrator.TenantOf(ctx)}); err != nil || len(ts) != 0 {
		t.Errorf("the store holds %d transfers (%v) after the refused create, want none", len(ts), err)
	}
	if n := len(fake.Actions()); n != 0 {
		t.Errorf("%d provider actions after the refused create, want none", n)
	}
	// The call is free: the client's retry reaches a replica that serves on.
	tr, err := second.Start(ctx, r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, second, tr.ID, answered)
	if _, err := second.Complete(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	tr = waitFor(t, second, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if tr.State != orchestrator.StateCompleted {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	if n := countActions(fake.ActionsFor(tr.ID), orchestratortest.MethodDial); n != 1 {
		t.Errorf("%d dials, want 1", n)
	}
}
