package orchestrator_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// Found by the sixty-fifth pass's engine review: a transfer handed over
// twice within one visibility window (a rolling restart through three
// replicas) waited a window after the second claim for a hang-up sent
// unrecorded, although no replica that drove it could have sent one: the
// first created it, the second took it from the first's hand-over, and
// both hand-overs' saves recorded all they sent. The second hand-over now
// says so, and the third replica joins at once.
func TestATransferHandedOverTwiceJoinsWithoutWaitingTheWindow(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	f := orchestratortest.NewFake("fake")
	prov := &accountView{Fake: f}
	clock := newManualClock()
	clock.Run()
	// c's window is an hour: only a jump of the clock ends a wait for it.
	c := clockedReplica(t, "c", clock, time.Hour, st, prov, nil)
	b := clockedReplica(t, "b", clock, 50*time.Millisecond, st, f, nil)
	a := clockedReplica(t, "a", clock, 50*time.Millisecond, st, f, nil)
	openAll(t, a, b)

	tr := consultingOn(t, a, "1000")
	if err := shutdownWithin(a); err != nil {
		t.Fatalf("Shutdown a: %v", err)
	}
	waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "b" && saysStep(x, "resumed by b") })
	// The second hand-over comes within c's window: time runs, and only a
	// jump of the clock ends it.
	openAll(t, c)
	// A consult of c's own, so that its watcher reads the account all
	// along.
	consultingOn(t, c, "2000")
	if err := shutdownWithin(b); err != nil {
		t.Fatalf("Shutdown b: %v", err)
	}
	waitFor(t, c, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "c" && saysStep(x, "resumed by c") })
	if _, err := c.Complete(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	if !joinedWithin(t, f, prov, tr.ID) {
		t.Fatalf("actions %q: the join of a transfer handed over twice waited a visibility window after the claim", f.ActionsFor(tr.ID))
	}
	// The join's own window. The jump also lapses c's lease until its
	// next heartbeat: the transfer is woken until it ends.
	clock.Advance(2 * time.Hour)
	eventually(t, "the transfer ended", func() bool {
		orchestrator.Wake(c, tr.ID)
		x, err := c.Get(ctx, tr.ID)
		return err == nil && x.State.Terminal()
	})
	done := waitFor(t, c, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if done.State != orchestrator.StateCompleted || done.Outcome == nil || !done.Outcome.Verified {
		t.Fatalf("the transfer ended %s (%+v), want completed, verified", done.State, done.Outcome)
	}
}
