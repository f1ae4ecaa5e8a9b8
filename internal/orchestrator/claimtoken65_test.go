package orchestrator_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// Found by the storage review of the sixty-fifth pass: a process whose
// name another process took over, its lease still held (it has not
// heartbeaten since), claims nothing: its claim carries its token, is
// refused, and stops it. Before, it made a dead replica's transfer the
// name's; its first save of it was refused, and the name's live process
// adopted it only a heartbeat TTL after its takeover (afterTakeover),
// where any live replica would have claimed it at its next claim.
func TestAProcessTakenOverClaimsNothing(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	fake := orchestratortest.NewFake("fake")
	z := replicaWith(t, orchestrator.Config{Owner: "z", LeaseTTL: time.Hour}, mem, fake)
	if err := z.Open(ctx); err != nil {
		t.Fatal(err)
	}
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	tr, err := z.Start(ctx, r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, z, tr.ID, answered)

	// The first process's clock stands still: its lease holds whenever
	// its claims run, and its heartbeat waits, so that only its claim can
	// tell it of the takeover.
	clock := newManualClock()
	first := &tickedBeats{heldBeats: &heldBeats{Store: mem, gate: make(chan struct{})}, settled: make(chan struct{})}
	defer close(first.gate)
	x := replicaWith(t, orchestrator.Config{Owner: "x", LeaseTTL: 2 * time.Second, Clock: clock.Now}, first, fake)
	if err := x.Open(ctx); err != nil {
		t.Fatal(err)
	}
	// The second process takes the name over; its own claims of others'
	// transfers come a quarter of an hour apart, after the test.
	second := replicaWith(t, orchestrator.Config{Owner: "x", LeaseTTL: time.Hour}, mem, fake)
	if err := second.Open(ctx); err != nil {
		t.Fatal(err)
	}
	// z dies: its heartbeat ends before the first process's clock.
	if _, err := mem.Heartbeat(ctx, "z", "", clock.Now().Add(-time.Hour), time.Minute, true); err != nil {
		t.Fatal(err)
	}
	// Two rounds of the first process's maintenance: the second one's
	// claim began after z's heartbeat ended.
	for range 2 {
		select {
		case <-first.settled:
		case <-time.After(20 * time.Second):
			t.Fatal("the first process's maintenance never ran")
		}
	}
	got, err := mem.Get(ctx, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Owner != "z" {
		t.Errorf("the process taken over claimed %s (owner %q): want it left to the live replicas", tr.ID, got.Owner)
	}
	select {
	case <-x.Superseded():
	default:
		t.Error("the process whose claim was refused for its token is not superseded")
	}
}
