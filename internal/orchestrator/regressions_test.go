package orchestrator_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// Found by review (2026-12-01, second session): each test failed on the
// engine as reviewed.

// reviewStore is a memory store whose saves of a record in one state fail
// (as a store that times out does) while failState is set.
type reviewStore struct {
	*memory.Store
	failState atomic.Value // orchestrator.State; "" for none
}

func (s *reviewStore) Update(ctx context.Context, t *orchestrator.Transfer) error {
	if st, _ := s.failState.Load().(orchestrator.State); st != "" && t.State == st {
		return orchestrator.E("review.Update", orchestrator.KindUnavailable, errors.New("store timed out"))
	}
	return s.Store.Update(ctx, t)
}

// A client's cancel was taken out of the store (TakeSignal deleted it)
// before the transition it causes was saved. If that save does not land
// and the process then dies, the restarted process resumed the transfer
// in consulting with no signal left: the cancel, acknowledged to the
// client, was lost. Now the signal stays pending until its effect is
// saved (PeekSignal, then TakeSignal). Here the target then answers and the restarted engine
// (completion auto) joins the caller to the target: a transfer the client
// cancelled while the target was still ringing completes.
func TestCancelWhoseEffectWasNotSavedSurvivesARestart(t *testing.T) {
	ctx := context.Background()
	store := &reviewStore{Store: memory.New()}
	store.failState.Store(orchestrator.State(""))
	fake := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings)

	release, hit := make(chan struct{}), make(chan struct{})
	var once sync.Once
	crash := func(tr *orchestrator.Transfer, p string) {
		if p == "state:recovering" {
			once.Do(func() { close(hit) })
			<-release // the process is dead from here on
		}
	}
	engine := func(crash func(*orchestrator.Transfer, string)) *orchestrator.Engine {
		e, err := orchestrator.New(orchestrator.Config{Owner: "x", PollInterval: time.Millisecond,
			PollMaxInterval: 5 * time.Millisecond, VisibilityWindow: 50 * time.Millisecond,
			VerifyTimeout: 200 * time.Millisecond, StepTimeout: time.Second, CrashPoint: crash},
			store, []orchestrator.Provider{fake}, zerolog.Nop(), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = e.Shutdown(ctx)
		})
		return e
	}
	first := engine(crash)
	t.Cleanup(func() { close(release) }) // before first shuts down

	r := request("fake", "1000")
	r.ConsultTimeout = time.Minute
	tr, err := first.Start(ctx, r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := tr.ID
	// The consult rings and has been seen.
	waitFor(t, first, id, func(x *orchestrator.Transfer) bool {
		return x.State == orchestrator.StateConsulting && x.Seen.Consult
	})

	// The move to recovering cannot be saved; the process dies right after.
	store.failState.Store(orchestrator.StateRecovering)
	if _, err := first.Cancel(ctx, id); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	<-hit
	store.failState.Store(orchestrator.State(""))

	second := engine(nil)
	if err := second.Open(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, second, id, func(x *orchestrator.Transfer) bool {
		return x.Owner == "x" && hasStep(x, orchestrator.StepReconcile)
	})
	// The target answers while the restarted process drives the transfer
	// the client cancelled (a no-op once the cancel hung the consult up).
	fake.Answer(id)

	final := waitFor(t, second, id, func(*orchestrator.Transfer) bool { return false })
	c, _ := fake.State(id)
	if final.State != orchestrator.StateCancelled || c.Caller != orchestrator.CallerConnected {
		t.Errorf("the transfer the client cancelled (cancel accepted) ended %s (%+v); the provider shows the caller %v, the consult %v, actions %q",
			final.State, final.Outcome, c.Caller, c.Consult, fake.ActionsFor(id))
	}
}

// An unhold answered with call_not_found made the engine take the caller
// for gone (entry.callerGone), and restored() then declared the recovery
// done on a reading that shows the caller's call alive and held, taken
// after that unhold. Now such a reading takes the "gone" back, and the
// unhold is sent again. Before, the outcome was verified, owed nothing,
// and said the caller "hung up before being taken off hold" while the
// provider showed the caller on hold, where nobody would ever take them
// off: the one answer of an action was believed over every later reading.
func TestUnholdAnsweredNotFoundIsSentAgainWhileTheCallerShowsHeld(t *testing.T) {
	h := newHarness(t, testConfig())
	h.f.SetTarget(orchestratortest.TargetBusy).
		FailOn(unhold, fakeErr(unhold, orchestrator.KindCallNotFound), 1)
	id := h.start(t, request("fake", "1000"))
	tr := h.done(t, id)
	if tr.Cleanup != nil {
		// An obligation left: the sweeper must take the caller off hold.
		tr = h.store.waitSaved(t, id, func(x *orchestrator.Transfer) bool { return x.Cleanup == nil })
	}
	c, _ := h.f.State(id)
	if c.Caller == orchestrator.CallerHeld {
		t.Errorf("transfer closed (state %s, outcome %+v, no obligation left) with the caller on hold at the provider; unholds sent: %d",
			tr.State, tr.Outcome, countActions(h.f.ActionsFor(id), unhold))
	}
}

// One reading shows the caller's call gone during the consult (a listing
// that left its row out), and every later one shows it held: the
// transfer was given up (the consult is hung up), but the caller is not
// taken for gone for good: the recovery unholds the caller, and the
// outcome says the provider was wrong (provider_error), caller restored,
// not that the caller hung up. Before, the recovery never unheld the
// caller, since the failure's reason said the caller had hung up.
func TestCallerShownGoneThenHeldIsGivenBack(t *testing.T) {
	h := newHarness(t, testConfig())
	h.f.SetTarget(orchestratortest.TargetRings)
	id := h.start(t, request("fake", "1000"))
	h.waitFor(t, id, func(x *orchestrator.Transfer) bool {
		return x.State == orchestrator.StateConsulting && x.Seen.Consult
	})
	heldSeen(t, h)
	var once sync.Once
	h.f.Before(hangup, func(orchestratortest.Record) {
		once.Do(func() { h.f.SetCaller(id, orchestrator.CallerHeld) }) // the wrong reading is over
	})
	h.f.SetCaller(id, orchestrator.CallerGone)
	tr := h.done(t, id)
	if tr.Cleanup != nil && !strings.HasPrefix(tr.Cleanup.Reason, "tombstone") {
		tr = h.store.waitSaved(t, id, func(x *orchestrator.Transfer) bool { return x.Cleanup == nil })
	}
	if c, _ := h.f.State(id); c.Caller != orchestrator.CallerConnected {
		t.Fatalf("the provider shows the caller %v; want connected (unholds sent: %d)", c.Caller, countActions(h.f.ActionsFor(id), unhold))
	}
	wantOutcome(t, tr, orchestrator.StateFailed, orchestrator.ReasonProviderError, true)
	if !hasStep(tr, orchestrator.StepReconcile) {
		t.Errorf("steps %+v: want the correction recorded", tr.Steps)
	}
}

// A recovery whose unhold was accepted, and whose next reading shows the
// caller's call ended, cannot tell whether the caller was back with the
// agent and hung up, or hung up still held: the unhold may have applied
// first or not. The detail said "ended before it was taken off hold",
// which no reading established; it now says what is known, the same
// whichever happened.
func TestACallerEndedAfterAnAcceptedUnholdIsNotSaidToHaveEndedHeld(t *testing.T) {
	for _, applied := range []bool{false, true} {
		t.Run(fmt.Sprintf("unhold applied %v", applied), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, patientConfig())
			h.f.SetTarget(orchestratortest.TargetBusy).Defer(unhold, 1)
			var once sync.Once
			h.f.Before(orchestratortest.MethodObserve, func(r orchestratortest.Record) {
				if h.f.Deferred(r.TransferID) == 0 {
					return // the unhold not yet accepted
				}
				once.Do(func() {
					if applied {
						h.f.ApplyDeferred(r.TransferID)
					}
					h.f.HangupCaller(r.TransferID)
				})
			})
			id := h.start(t, request("fake", "1000"))
			tr := h.done(t, id)
			wantOutcome(t, tr, orchestrator.StateFailed, orchestrator.ReasonBusy, false)
			if strings.Contains(tr.Outcome.Detail, "before it was taken off hold") ||
				!strings.Contains(tr.Outcome.Detail, "after transferd asked to take it off hold") {
				t.Fatalf("outcome detail %q: want it to say the call ended after the unhold was sent, not before it applied", tr.Outcome.Detail)
			}
		})
	}
}
