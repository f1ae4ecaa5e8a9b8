package orchestrator_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// spyStore is a memory store that records each durable write (the state
// and the last step it carried) and counts its Gets.
type spyStore struct {
	*memory.Store
	mu     sync.Mutex
	writes []string
	gets   atomic.Int32
}

func (s *spyStore) record(t *orchestrator.Transfer) {
	w := string(t.State)
	if n := len(t.Steps); n > 0 {
		w += " " + t.Steps[n-1].Name + "/" + string(t.Steps[n-1].Status)
	}
	s.mu.Lock()
	s.writes = append(s.writes, w)
	s.mu.Unlock()
}

func (s *spyStore) Create(ctx context.Context, t *orchestrator.Transfer) error {
	s.record(t)
	return s.Store.Create(ctx, t)
}

func (s *spyStore) Update(ctx context.Context, t *orchestrator.Transfer) error {
	s.record(t)
	return s.Store.Update(ctx, t)
}

// completeOne runs one transfer that goes well to its end on an engine
// over a spyStore.
func completeOne(t *testing.T) (*spyStore, *orchestrator.Engine, *orchestrator.Transfer) {
	t.Helper()
	return completeOneWith(t, orchestratortest.NewFake("fake"))
}

func completeOneWith(t *testing.T, fake *orchestratortest.Fake) (*spyStore, *orchestrator.Engine, *orchestrator.Transfer) {
	t.Helper()
	st := &spyStore{Store: memory.New()}
	e := replica(t, "w", st, fake, nil)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := waitFor(t, e, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if end.State != orchestrator.StateCompleted {
		t.Fatalf("transfer %s (%+v), want completed", end.State, end.Outcome)
	}
	return st, e, end
}

// TestDurableWritesPerTransfer pins the writes of a transfer that goes
// well (issue #11: no write that carries no recovery information). Each
// write is an intent that must be durable before its request is sent, a
// result the engine waits on, or the end: the results of locate and hold
// go with the next intent, the move to completing with the join's intent,
// and the join's accepted answer with the end.
func TestDurableWritesPerTransfer(t *testing.T) {
	st, _, _ := completeOne(t)
	want := []string{
		"pending",                      // create
		"holding hold/started",         // the hold's intent, with the located legs
		"dialing dial/started",         // the dial's intent, with the hold's result
		"consulting dial/succeeded",    // the consult leg's ids and deadline
		"completing transfer/started",  // the join's intent, with the answer
		"completed transfer/succeeded", // the end, with the join's answer
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if !slices.Equal(st.writes, want) {
		t.Errorf("writes:\n  %q\nwant:\n  %q", st.writes, want)
	}
}

// Hanging up the agent once the join shows (Flow.HangupAgent: Bandwidth's
// attended consult) adds no write: its intent carries nothing to recover,
// and its result goes with the end.
func TestHangingUpTheAgentAddsNoWrite(t *testing.T) {
	fake := orchestratortest.NewFake("fake").SetFlow(orchestrator.Flow{Hold: true, Join: true, HangupAgent: true})
	st, _, tr := completeOneWith(t, fake)
	want := []string{"pending", "holding hold/started", "dialing dial/started", "consulting dial/succeeded",
		"completing transfer/started", "completed hangup_agent/succeeded"}
	st.mu.Lock()
	defer st.mu.Unlock()
	if !slices.Equal(st.writes, want) {
		t.Errorf("writes:\n  %q\nwant:\n  %q", st.writes, want)
	}
	if got := fake.ActionsFor(tr.ID); !slices.Equal(got, []string{locate, hold, dial, complete, orchestratortest.MethodHangupAgent}) {
		t.Errorf("actions %q", got)
	}
}

func (s *spyStore) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, id)
}

// TestWaitFindsAFinishedTransferInMemory: a long poll that wakes as its
// transfer finishes gets the final record from memory, not from the store
// (issue #11: a query and a decode per finished transfer), the record the
// store holds, and still scoped to its tenant.
func TestWaitFindsAFinishedTransferInMemory(t *testing.T) {
	st, e, tr := completeOne(t)
	before := st.gets.Load()
	again, err := e.Wait(context.Background(), tr.ID, func(*orchestrator.Transfer) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	if n := st.gets.Load() - before; n != 0 {
		t.Errorf("Wait on a transfer this replica finished read the store %d times", n)
	}
	stored, err := st.Store.Get(context.Background(), tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	if again.Version != stored.Version || again.State != stored.State || len(again.Steps) != len(stored.Steps) {
		t.Errorf("in memory: version %d %s %d steps; stored: version %d %s %d steps",
			again.Version, again.State, len(again.Steps), stored.Version, stored.State, len(stored.Steps))
	}
	other := orchestrator.WithTenant(context.Background(), "another")
	if _, err := e.Wait(other, tr.ID, func(*orchestrator.Transfer) bool { return false }); orchestrator.KindOf(err) != orchestrator.KindNotFound {
		t.Errorf("another tenant's Wait: %v, want not found", err)
	}
}

// TestWaitReturnsTheCallersOwnRecord: Wait shows its predicate the record
// the replica shares with every reader, but what it returns is the
// caller's: changing it changes nothing another Wait or Get sees.
func TestWaitReturnsTheCallersOwnRecord(t *testing.T) {
	_, e, tr := completeOne(t)
	ctx := context.Background()
	first, err := e.Wait(ctx, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	want := first.Clone()
	first.State, first.Owner = orchestrator.StateFailed, "someone else"
	first.Steps[0].Name = "changed"
	first.Outcome.Detail = "changed"
	again, err := e.Wait(ctx, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	if again.State != want.State || again.Owner != want.Owner || again.Steps[0].Name != want.Steps[0].Name ||
		again.Outcome.Detail != want.Outcome.Detail {
		t.Errorf("a caller's change to Wait's record reached the next Wait: %s %q %q %q",
			again.State, again.Owner, again.Steps[0].Name, again.Outcome.Detail)
	}
}
