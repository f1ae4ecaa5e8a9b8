package netsapiens_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
	"github.com/transferd/transferd/internal/store/memory"
)

// revStore is hookStore with two more hooks: Create (run before the
// create reaches the store) and Signalled (a replica's poll for signals
// put through another replica).
type revStore struct {
	*hookStore
	createHook    atomic.Pointer[func()]
	signalledGate atomic.Pointer[chan struct{}]
}

func (s *revStore) Create(ctx context.Context, t *orchestrator.Transfer) error {
	if h := s.createHook.Load(); h != nil {
		(*h)()
	}
	return s.hookStore.Create(ctx, t)
}

func (s *revStore) Signalled(ctx context.Context, owner string) ([]string, error) {
	if ch := s.signalledGate.Load(); ch != nil {
		<-*ch
	}
	return s.hookStore.Signalled(ctx, owner)
}

// letGo takes every hook away, so that no engine waits on one as it
// shuts down.
func (s *revStore) letGo() {
	s.setHook(nil)
	s.createHook.Store(nil)
	if ch := s.signalledGate.Swap(nil); ch != nil {
		close(*ch)
	}
}

// setupRev is setupHookedWrapped on a revStore, with the engine named
// "a"; newReplica adds another engine on the same store and simulator.
func setupRev(t *testing.T, wrap func(*nssim.Sim, http.Handler) http.Handler, tweak ...func(*orchestrator.Config)) (*harness, *revStore, func(owner string) *orchestrator.Engine) {
	t.Helper()
	sim, srv := newSimServer(t, nssim.Config{}, wrap)
	rs := &revStore{hookStore: &hookStore{savedStore: orchestratortest.NewSaved(memory.New())}}
	newReplica := func(owner string) *orchestrator.Engine {
		h := newHarness(t, sim, srv, rs, rs.savedStore, owner, tweak...)
		t.Cleanup(rs.letGo) // before the engine's shutdown
		return h.eng
	}
	h := newHarness(t, sim, srv, rs, rs.savedStore, "a", tweak...)
	t.Cleanup(rs.letGo)
	return h, rs, newReplica
}

// A complete that comes in while the worker saves the failure it decided
// because the provider stayed unreadable past the consult deadline is
// refused (409) or honoured, never accepted and dropped. Found by review:
// only the deadline branch with a reading was decided under the gate.
func TestCompleteAsAnUnreadableDeadlinePassesIsHonouredOrRefused(t *testing.T) {
	var failReads atomic.Bool
	wrap := func(_ *nssim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && failReads.Load() {
				http.Error(w, `{"code":503,"message":"replica unavailable"}`, http.StatusServiceUnavailable)
				return
			}
			api.ServeHTTP(w, r)
		})
	}
	h, hs := setupHookedWrapped(t, nssim.Config{}, wrap)
	orig := h.placeCall(t)
	reached, release := holdSave(hs, func(tr *orchestrator.Transfer) bool {
		return tr.State == orchestrator.StateRecovering && tr.Failure != nil && strings.HasPrefix(tr.Failure.Detail, "observe")
	})
	tr := h.start(t, orchestrator.CompletionManual, time.Second)
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	if tr.State != orchestrator.StateConsulting {
		t.Fatalf("state %s, want consulting", tr.State)
	}
	failReads.Store(true)
	<-reached // the worker saves the failure "observe: ..." past deadline+window
	got, err := completeDuringSave(h, tr.ID, release)
	failReads.Store(false)
	final := h.end(t, tr.ID)
	user, held := callerWith(t, h, orig)
	switch {
	case err == nil && (final.State != orchestrator.StateCompleted || user != "1010" || held):
		t.Fatalf("a complete accepted against state %s was dropped: the transfer ended %s (%+v), the PBX shows the caller with %q (held %v)",
			got.State, final.State, final.Outcome, user, held)
	case err != nil && orchestrator.KindOf(err) != orchestrator.KindConflict:
		t.Fatalf("the complete: %v, want success or a conflict", err)
	case err != nil && (final.State != orchestrator.StateFailed || user != "1000" || held):
		t.Fatalf("a refused complete, yet the transfer ended %s (%+v) with the caller with %q (held %v), want failed and back with 1000",
			final.State, final.Outcome, user, held)
	}
}

// A cancel accepted through another replica (any replica serves the API)
// while the owner saves the join's intent is honoured. Found by review:
// the owner's last look before the join read only its own flag, which a
// signal put elsewhere does not set, so the join went out and the caller
// was transferred. The owner's Signalled poll is held back for the window
// (it runs every 2*PollInterval, on its own).
func TestCancelThroughAnotherReplicaAsTheJoinIsDecidedIsHonoured(t *testing.T) {
	h, rs, newReplica := setupRev(t, nil)
	b := newReplica("b")
	orig := h.placeCall(t)
	reached, release := holdSave(rs.hookStore, func(tr *orchestrator.Transfer) bool {
		return tr.State == orchestrator.StateCompleting && !tr.Sent.Join.IsZero()
	})
	tr := h.start(t, orchestrator.CompletionAuto, 0)
	<-reached
	gate := make(chan struct{})
	rs.signalledGate.Store(&gate) // a's next Signalled poll comes later
	got, err := b.Cancel(context.Background(), tr.ID)
	release()
	if err != nil {
		t.Fatalf("the cancel, put while the stored record was consulting, was refused: %v", err)
	}
	final := h.end(t, tr.ID)
	if ch := rs.signalledGate.Swap(nil); ch != nil {
		close(*ch)
	}
	user, held := callerWith(t, h, orig)
	if final.State != orchestrator.StateCancelled || user != "1000" || held {
		t.Fatalf("a cancel accepted by replica b (checked against %s) was dropped: the transfer ended %s (%+v), the PBX shows the caller with %q (held %v)",
			got.State, final.State, final.Outcome, user, held)
	}
}

// A transfer of a call whose last transfer is active when Start begins is
// refused, even if that transfer ends, owing the call its end state,
// before the create reaches the store. Found by review: Start looked at
// the last transfer before the create and let an active one through to
// the store's rule of one active transfer per call, which let it by once
// it ended; the look is now the create's own (Store.Create).
func TestStartRefusesACallWhoseLastTransferEndsOwingIt(t *testing.T) {
	var hideConsults, failReads atomic.Bool
	wrap := hidingOursFailingReads(&hideConsults, &failReads)
	h, rs, _ := setupRev(t, wrap, func(c *orchestrator.Config) {
		c.VerifyTimeout = time.Second
		c.TombstoneTTL = 2 * time.Second
	})
	h.placeCall(t)
	hideConsults.Store(true)
	var firstID atomic.Value
	firstID.Store("")
	rs.setHook(func(tr *orchestrator.Transfer) {
		if tr.ID == firstID.Load().(string) && tr.State == orchestrator.StateRecovering {
			failReads.Store(true)
		}
	})
	a := h.start(t, orchestrator.CompletionAuto, 30*time.Second)
	firstID.Store(a.ID)
	h.wait(t, a.ID, func(x *orchestrator.Transfer) bool { return x.State == orchestrator.StateConsulting })

	// The second start begins while the first is active, and the first
	// ends (unverified, owing the call) before the create reaches the
	// store, which must then refuse it.
	var listed atomic.Bool
	hook := func() {
		if listed.Swap(true) {
			return
		}
		h.waitSaved(t, a.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	}
	rs.createHook.Store(&hook)
	req := orchestrator.Request{Provider: netsapiens.Name, Call: orchestrator.CallRef{Domain: domain, User: "1000"}, Target: "1020",
		Completion: orchestrator.CompletionManual, ConsultTimeout: 60 * time.Second}
	h.sim.SetBehaviour(domain, "1020", nssim.Behaviour{Mode: nssim.ModeManual})
	b, err := h.eng.Start(context.Background(), req, orchestrator.StartOptions{})
	rs.createHook.Store(nil)
	first, gerr := h.store.Get(context.Background(), a.ID)
	if gerr != nil {
		t.Fatal(gerr)
	}
	if first.Cleanup == nil || first.Outcome == nil || first.Outcome.Verified {
		t.Fatalf("the first transfer ended %s %+v without an open obligation; the scenario did not arise", first.State, first.Outcome)
	}
	var active *orchestrator.ActiveTransferError
	if err == nil || !errors.As(err, &active) || active.ID != a.ID {
		t.Errorf("a second transfer %v of the call started (err %v) while %s is %s with an unverified outcome and an open cleanup",
			b != nil, err, a.ID, first.State)
	}
	failReads.Store(false)
	hideConsults.Store(false)
	if b != nil {
		_, _ = h.eng.Cancel(context.Background(), b.ID)
		h.end(t, b.ID)
	}
}

// A complete put through another replica between the owner's look at
// signals and the save of its decision to give up (the consult deadline)
// cannot be honoured: the owner decided without it, and this replica's
// gate does not order another's. The transfer says so in its steps, since
// the client was told the complete was accepted. (Put after that save,
// the complete is refused: it was checked against a version saved over.)
func TestCompleteThroughAnotherReplicaTooLateIsSaidSo(t *testing.T) {
	h, rs, newReplica := setupRev(t, nil)
	b := newReplica("b")
	orig := h.placeCall(t)
	reached, release := holdSave(rs.hookStore, func(tr *orchestrator.Transfer) bool {
		return tr.State == orchestrator.StateRecovering && tr.Failure != nil && tr.Failure.Reason == orchestrator.ReasonTimeout
	})
	tr := h.start(t, orchestrator.CompletionManual, time.Second)
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	<-reached // the owner saves its decision to give up
	_, err := b.Complete(context.Background(), tr.ID)
	release()
	if err != nil {
		t.Fatalf("the complete, put while the stored record was consulting and answered: %v", err)
	}
	final := h.end(t, tr.ID)
	if user, held := callerWith(t, h, orig); final.State != orchestrator.StateFailed || final.Outcome.Reason != orchestrator.ReasonTimeout || user != "1000" || held {
		t.Fatalf("the transfer ended %s (%+v), the caller with %q (held %v); want failed/timeout, the caller back with 1000", final.State, final.Outcome, user, held)
	}
	said := false
	for _, s := range final.Steps {
		if strings.Contains(s.Detail, "the client's complete came after the transfer had given up (timeout)") {
			said = true
		}
	}
	if !said {
		t.Fatalf("the transfer does not say the accepted complete came too late: %+v", final.Steps)
	}
	if sig, err := rs.PeekSignal(context.Background(), tr.ID); err != nil || sig != orchestrator.SignalNone {
		t.Fatalf("the late complete is still pending: %q %v", sig, err)
	}
}
