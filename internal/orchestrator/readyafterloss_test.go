package orchestrator_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// A save that failed makes the replica unready until a save succeeds. The
// transfer whose save failed may meanwhile be taken over by another
// replica (its heartbeat lapsed in the same outage): its next save is then
// refused as a version conflict, which is the store answering a write, and
// it is never saved here again. Ready reported "the store cannot save
// transfers" from then on, for good on a replica left with nothing else
// to save: /readyz kept it out of its Service, so no new transfer came to
// clear it, and an outage that lapsed every replica's heartbeat left none
// ready.
func TestReadyAgainAfterAFailedSaveIsAnsweredWithAConflict(t *testing.T) {
	h := newHarness(t, testConfig())
	ctx := context.Background()
	h.f.SetTarget(orchestratortest.TargetRings)
	r := request("fake", "1000")
	r.ConsultTimeout = time.Second
	id := h.start(t, r)
	h.waitFor(t, id, inState(orchestrator.StateConsulting))

	h.store.failing.Store(true)
	eventually(t, "a save failed", func() bool { return h.e.Ready(ctx) != nil })
	// Another replica claims the transfer meanwhile.
	tr, err := h.store.Store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	tr.Owner = "other"
	if err := h.store.Store.Update(ctx, tr); err != nil {
		t.Fatal(err)
	}
	h.store.failing.Store(false)
	eventually(t, "the transfer let go", func() bool { return len(h.e.Running()) == 0 })
	if err := h.e.Ready(ctx); err != nil {
		t.Fatalf("Ready = %v once the store answers writes again", err)
	}
}
