package netsapiens_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
	"github.com/transferd/transferd/internal/store/memory"
)

// hookStore is the harness's savedStore with a hook run before every
// Update reaches the store: the engine's worker is inside its save there,
// which is where the tests below let a client's action in.
//
// With blind set it is a store that does not look for a signal when a
// save asks it to (Transfer.LookForSignal), as a store outside this
// repository may not: the engine then reads the signal itself. peeks
// counts those reads.
type hookStore struct {
	*savedStore
	mu    sync.Mutex
	hook  func(*orchestrator.Transfer)
	blind atomic.Bool
	peeks atomic.Int64
}

func (s *hookStore) Update(ctx context.Context, t *orchestrator.Transfer) error {
	s.mu.Lock()
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		hook(t)
	}
	err := s.savedStore.Update(ctx, t)
	if s.blind.Load() {
		t.SignalLooked, t.PendingSignal = false, orchestrator.SignalNone
	}
	return err
}

func (s *hookStore) PeekSignal(ctx context.Context, id string) (orchestrator.Signal, error) {
	s.peeks.Add(1)
	return s.savedStore.PeekSignal(ctx, id)
}

func (s *hookStore) setHook(f func(*orchestrator.Transfer)) {
	s.mu.Lock()
	s.hook = f
	s.mu.Unlock()
}

// setupHooked is setup (netsapiens_test.go) with a hookStore.
func setupHooked(t *testing.T, simCfg nssim.Config, tweak ...func(*orchestrator.Config)) (*harness, *hookStore) {
	t.Helper()
	return setupHookedWrapped(t, simCfg, nil, tweak...)
}

// setupHookedWrapped is setupHooked with wrap around nssim's API handler.
func setupHookedWrapped(t *testing.T, simCfg nssim.Config, wrap func(*nssim.Sim, http.Handler) http.Handler,
	tweak ...func(*orchestrator.Config)) (*harness, *hookStore) {
	t.Helper()
	sim, srv := newSimServer(t, simCfg, wrap)
	hs := &hookStore{savedStore: orchestratortest.NewSaved(memory.New())}
	h := newHarness(t, sim, srv, hs, hs.savedStore, "", tweak...)
	t.Cleanup(func() { hs.setHook(nil) }) // before the engine's shutdown
	return h, hs
}

// holdSave makes the worker's save of a record that when reports stop
// there, once: reached is closed once it does, and release lets it go
// on. The test's actions in between race the worker's decision that the
// save carries.
func holdSave(hs *hookStore, when func(*orchestrator.Transfer) bool) (reached <-chan struct{}, release func()) {
	r, rel := make(chan struct{}), make(chan struct{})
	var once, relOnce sync.Once
	hs.setHook(func(tr *orchestrator.Transfer) {
		if when(tr) {
			once.Do(func() {
				close(r)
				<-rel
			})
		}
	})
	return r, func() { relOnce.Do(func() { close(rel) }) }
}

// completeDuringSave sends a complete while a save is held (holdSave),
// lets the save go on, and returns the complete's answer. The complete
// runs beside the test: it may wait for the decision the save carries.
func completeDuringSave(h *harness, id string, release func()) (*orchestrator.Transfer, error) {
	type answer struct {
		t   *orchestrator.Transfer
		err error
	}
	done := make(chan answer, 1)
	go func() {
		got, err := h.eng.Complete(context.Background(), id)
		done <- answer{got, err}
	}()
	release()
	a := <-done
	return a.t, a.err
}

// callerWith returns the user the caller's call is connected to in the
// simulator's ground truth once every accepted action was applied, and
// whether the caller is held.
func callerWith(t *testing.T, h *harness, orig nssim.ActiveCall) (user string, held bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.sim.WaitApplied(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range h.sim.Truth().Sessions {
		me, other := s.Orig, s.Term
		if other.CallID == orig.OrigCallID {
			me, other = other, me
		}
		if me.CallID != orig.OrigCallID {
			continue
		}
		return other.User, me.State != nssim.InfoActive || other.State != nssim.InfoActive
	}
	return "", false
}

// A cancel accepted (POST /cancel: 202) while the worker saves the join's
// intent of an auto transfer, before the join is sent, is honoured: the
// caller is back with the agent, not held, and the transfer says
// cancelled. Found by review: the cancel was checked against the record
// published before that save (consulting), put, and never looked at
// again; the caller was transferred and the outcome said "transferred".
//
// The join's intent's save looks for the cancel (Transfer.LookForSignal);
// the blind case is a store that does not, where the engine reads it.
func TestCancelAcceptedAsTheJoinIsDecidedIsHonoured(t *testing.T) {
	for _, blind := range []bool{false, true} {
		t.Run(map[bool]string{false: "the save looks", true: "a store that does not look"}[blind], func(t *testing.T) {
			cancelAsTheJoinIsDecided(t, blind)
		})
	}
}

func cancelAsTheJoinIsDecided(t *testing.T, blind bool) {
	h, hs := setupHooked(t, nssim.Config{})
	hs.blind.Store(blind)
	orig := h.placeCall(t)
	// The save of the join's intent: the join is not sent yet.
	reached, release := holdSave(hs, func(tr *orchestrator.Transfer) bool {
		return tr.State == orchestrator.StateCompleting && !tr.Sent.Join.IsZero()
	})
	tr := h.start(t, orchestrator.CompletionAuto, 0)
	<-reached
	got, err := h.eng.Cancel(context.Background(), tr.ID)
	release()
	if err != nil {
		t.Fatalf("the cancel, checked before the intent's save was published, was refused: %v", err)
	}
	if got.State != orchestrator.StateConsulting {
		t.Fatalf("the cancel was checked against state %s, want consulting", got.State)
	}
	final := h.end(t, tr.ID)
	user, held := callerWith(t, h, orig)
	if final.State != orchestrator.StateCancelled || user != "1000" || held {
		t.Fatalf("an accepted cancel was not honoured: the transfer ended %s (%+v), the PBX shows the caller with %q (held %v), want cancelled and back with 1000",
			final.State, final.Outcome, user, held)
	}
	for _, r := range h.sim.Requests() {
		if r.Operation == nssim.OpTransfer {
			t.Fatalf("a join was sent after the cancel was accepted: %+v", r)
		}
	}
}

// The join's last look for a cancel is made by its intent's save, in the
// same transaction, not by a read of its own (one round trip to the
// database fewer a transfer); a store that does not look gets the read.
func TestJoinsLastLookIsTheIntentsSave(t *testing.T) {
	for _, blind := range []bool{false, true} {
		h, hs := setupHooked(t, nssim.Config{})
		hs.blind.Store(blind)
		h.placeCall(t)
		tr := h.start(t, orchestrator.CompletionAuto, 0)
		if final := h.end(t, tr.ID); final.State != orchestrator.StateCompleted {
			t.Fatalf("blind %v: the transfer ended %s (%+v), want completed", blind, final.State, final.Outcome)
		}
		want := int64(0)
		if blind {
			want = 1
		}
		if got := hs.peeks.Load(); got != want {
			t.Errorf("blind %v: %d reads of the transfer's signal, want %d", blind, got, want)
		}
	}
}

// A complete that comes in while the worker saves the consult deadline's
// failure (the target answered, the client did not complete in time) is
// either refused (409: the transfer is recovering) or honoured: never
// accepted and dropped. Found by review: it was accepted (202, the record
// still consulting) and the transfer ended failed/timeout, the target hung
// up on, with no word of the complete.
func TestCompleteAsTheDeadlinePassesIsHonouredOrRefused(t *testing.T) {
	h, hs := setupHooked(t, nssim.Config{})
	orig := h.placeCall(t)
	reached, release := holdSave(hs, func(tr *orchestrator.Transfer) bool {
		return tr.State == orchestrator.StateRecovering && tr.Failure != nil && tr.Failure.Reason == orchestrator.ReasonTimeout
	})
	tr := h.start(t, orchestrator.CompletionManual, time.Second)
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	if tr.State != orchestrator.StateConsulting {
		t.Fatalf("state %s, want consulting", tr.State)
	}
	<-reached // the worker is saving the deadline's failure
	got, err := completeDuringSave(h, tr.ID, release)
	final := h.end(t, tr.ID)
	user, held := callerWith(t, h, orig)
	switch {
	case err == nil && (final.State != orchestrator.StateCompleted || user != "1010" || held):
		t.Fatalf("an accepted complete (checked against state %s) was not honoured: the transfer ended %s (%+v), the PBX shows the caller with %q (held %v)",
			got.State, final.State, final.Outcome, user, held)
	case err != nil && orchestrator.KindOf(err) != orchestrator.KindConflict:
		t.Fatalf("the complete: %v, want success or a conflict", err)
	case err != nil && (final.State != orchestrator.StateFailed || final.Outcome.Reason != orchestrator.ReasonTimeout || user != "1000" || held):
		t.Fatalf("a refused complete, yet the transfer ended %s (%+v) with the caller with %q (held %v), want failed/timeout and back with 1000",
			final.State, final.Outcome, user, held)
	}
}

// A complete whose client gives up while the worker holds the transfer's
// gate (here through a save that does not return) returns with its
// context. It waited for the gate with no regard for it: a store failing
// its saves kept the request, and its handler, until the save gave up.
func TestSignalGivesUpWithItsContextWhileTheGateIsHeld(t *testing.T) {
	h, hs := setupHooked(t, nssim.Config{})
	h.placeCall(t)
	reached, release := holdSave(hs, func(tr *orchestrator.Transfer) bool {
		return tr.State == orchestrator.StateRecovering && tr.Failure != nil && tr.Failure.Reason == orchestrator.ReasonTimeout
	})
	defer release()
	tr := h.start(t, orchestrator.CompletionManual, time.Second)
	<-reached // the worker saves the deadline's failure, under the gate
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := h.eng.Complete(ctx, tr.ID)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the complete: %v, want its context's error", err)
		}
	case <-time.After(10 * time.Second): // a liveness bound: it returns at once
		t.Fatal("the complete still waits for the gate after its context ended")
	}
	release()
	if final := h.end(t, tr.ID); final.State != orchestrator.StateFailed || final.Outcome.Reason != orchestrator.ReasonTimeout {
		t.Fatalf("the transfer ended %s (%+v), want failed/timeout", final.State, final.Outcome)
	}
}
