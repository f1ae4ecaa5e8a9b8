package orchestrator_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/sendgate"
	"github.com/transferd/transferd/internal/store/memory"
)

// gateOfHold keeps the send gate of its first hold's context and holds
// the hold until released: a process stopped after the step was decided,
// before its request was written.
type gateOfHold struct {
	*orchestratortest.Fake
	gate    chan func() bool
	release chan struct{}
}

func (p *gateOfHold) Hold(ctx context.Context, t *orchestrator.Transfer) error {
	p.gate <- sendgate.Of(ctx)
	<-p.release
	return ctx.Err()
}

// beats counts a store's successful heartbeats.
type beats struct {
	*partitionedStore
	n atomic.Int32
}

func (s *beats) Heartbeat(ctx context.Context, owner, token string, now time.Time, ttl time.Duration, take bool) (bool, error) {
	expired, err := s.partitionedStore.Heartbeat(ctx, owner, token, now, ttl, take)
	if err == nil {
		s.n.Add(1)
	}
	return expired, err
}

// A step's requests carry a gate (sendgate.With) that the provider clients
// check right before each write: open while this replica's heartbeat
// runs, shut once it has run out, and shut for good once it has lapsed,
// even after a renewal (another replica may own the transfer since). The
// storm that pauses replicas found a hold written by a process that woke
// after its heartbeat had run out, after the new owner had given the
// caller back: the caller was left held.
func TestAStepsSendGateShutsWhenTheHeartbeatRunsOut(t *testing.T) {
	ctx := context.Background()
	store := &beats{partitionedStore: &partitionedStore{Store: memory.New()}}
	prov := &gateOfHold{Fake: orchestratortest.NewFake("fake"), gate: make(chan func() bool, 1), release: make(chan struct{})}
	e := leaseEngine(t, store, prov)
	t.Cleanup(func() { store.cut.Store(false) }) // before the Shutdown
	if _, err := e.Start(ctx, request("fake", "1000"), orchestrator.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	gate := <-prov.gate
	defer close(prov.release)
	if gate == nil {
		t.Fatal("the hold's context carries no send gate")
	}
	if !gate() {
		t.Fatal("the send gate is shut while the heartbeat runs")
	}
	store.cut.Store(true) // no heartbeat from now on
	eventually(t, "the send gate shut once the heartbeat ran out", func() bool { return !gate() })
	renewed := store.n.Load()
	store.cut.Store(false)
	eventually(t, "a heartbeat renewed", func() bool { return store.n.Load() > renewed })
	if gate() {
		t.Error("the send gate opened again with the next heartbeat: the step was decided before the lapse, and another replica may own the transfer")
	}
	if g := sendgate.Of(ctx); g != nil {
		t.Error("a context no step made carries a send gate")
	}
}
