package orchestrator_test

import (
	"context"
	"slices"
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

// One test per finding of issue 7 ("What was seen" 1-10) that the engine
// can show with the Fake; 8 is the API's. Each scripts the provider so
// that the engine cannot tell the truth by luck: actions applied later
// than they are answered, readings that fail while actions succeed, legs
// that are listed late or never.

// heldSeen waits until a reading showed the caller held, so that the
// engine knows the hold was applied (Transfer.Seen.Held).
func heldSeen(t *testing.T, h *harness) {
	t.Helper()
	eventually(t, "a reading showing the caller held", func() bool {
		return metric(t, h.reg, "transferd_callers_on_hold", map[string]string{"provider": "fake"}) == 1
	})
}

// Finding 1: a join whose effect cannot be read is never undone. The
// provider accepts the join but applies it later, and cannot be read from
// then on, well past VerifyTimeout. Nothing is hung up or unheld: the
// transfer ends unverified (failed, a cleanup obligation open) once its
// patience is over, rather than staying completing for as long as the
// provider is unreadable, and the sweeper corrects it to a verified
// completed once a reading shows the caller with the target.
func TestFinding1JoinUnreadableIsNeverUndone(t *testing.T) {
	cfg := testConfig()
	h := newHarness(t, cfg)
	h.f.Defer(complete, 1).Before(complete, func(orchestratortest.Record) {
		h.f.FailOn(observe, fakeErr(observe, orchestrator.KindProviderUnavailable), -1)
	})
	id := h.start(t, request("fake", "1000"))

	tr := h.done(t, id)
	wantOutcome(t, tr, orchestrator.StateFailed, orchestrator.ReasonProviderUnavailable, false)
	if tr.Outcome.Verified || tr.Cleanup == nil || tr.Sent.Join.IsZero() {
		t.Fatalf("outcome %+v cleanup %+v join sent %v: want an unverified outcome with an obligation",
			tr.Outcome, tr.Cleanup, tr.Sent.Join)
	}
	if got, want := h.f.ActionsFor(id), []string{locate, hold, dial, complete}; !slicesEqual(got, want) {
		t.Fatalf("actions %q, want %q: nothing undone while the join's effect is unknown", got, want)
	}

	h.f.ApplyDeferred(id)
	h.f.ClearFaults()
	tr = h.store.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.Cleanup == nil })
	wantOutcome(t, tr, orchestrator.StateCompleted, orchestrator.ReasonTransferred, false)
	if !tr.Outcome.Verified {
		t.Errorf("outcome %+v, want verified", tr.Outcome)
	}
	if got, want := h.f.ActionsFor(id), []string{locate, hold, dial, complete}; !slicesEqual(got, want) {
		t.Fatalf("actions %q, want %q: nothing undone, the join sent once", got, want)
	}
	if c, _ := h.f.State(id); c.Caller != orchestrator.CallerTransferred {
		t.Fatalf("provider shows the caller %v, want transferred", c.Caller)
	}
	checkSaves(t, h.store, id)
}

// Finding 2: a cancel right after the dial, while the consult is not
// listed yet: the hang-up is sent blind (it finds nothing), the transfer
// ends at once, and the consult that appears late is hung up by the
// tombstone, which is then cleared and the outcome verified.
func TestFinding2LateConsultAfterCancelIsHungUpByTheTombstone(t *testing.T) {
	cfg := testConfig()
	// Wide enough that the cancel comes first; the tombstone outlives the
	// late appearance below.
	cfg.VisibilityWindow, cfg.TombstoneTTL = time.Second, 2*time.Second
	h := newHarness(t, cfg)
	h.f.SetTarget(orchestratortest.TargetRings).Defer(dial, 1)
	id := h.start(t, request("fake", "1000"))
	h.waitFor(t, id, inState(orchestrator.StateConsulting))
	heldSeen(t, h)
	if _, err := h.e.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	tr := h.done(t, id)
	wantOutcome(t, tr, orchestrator.StateCancelled, orchestrator.ReasonCancelled, true)
	if tr.Cleanup == nil || !strings.HasPrefix(tr.Cleanup.Reason, "tombstone") {
		t.Fatalf("cleanup %+v, want a tombstone for the consult never seen", tr.Cleanup)
	}
	if n := countActions(h.f.ActionsFor(id), hangup); n != 1 || h.f.Deferred(id) != 1 {
		t.Fatalf("%d hang-ups, %d deferred: want the hang-up sent blind before the consult exists", n, h.f.Deferred(id))
	}

	h.f.ApplyDeferred(id) // the consult appears, ringing
	tr = h.store.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.Cleanup == nil })
	if !tr.Outcome.Verified || !tr.Outcome.CallerRestored || !hasStep(tr, orchestrator.StepVerify) {
		t.Fatalf("outcome %+v steps %+v, want verified by a recorded step", tr.Outcome, tr.Steps)
	}
	if n := countActions(h.f.ActionsFor(id), hangup); n != 2 {
		t.Errorf("%d hang-ups, want 2: the late consult hung up", n)
	}
	wantCallerSafe(t, h.f, id)
	// The transfer reports after it ended: its discharged obligation is
	// an event that follows the terminal one, which a consumer (and the
	// webhook storm) must expect after the state is terminal.
	evs, err := h.store.Events(context.Background(), orchestrator.EventFilter{Tenant: orchestrator.DefaultTenant, TransferID: id})
	if err != nil {
		t.Fatal(err)
	}
	var types []orchestrator.EventType
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	cancelled := slices.Index(types, orchestrator.EventCancelled)
	if n := len(types); cancelled < 0 || types[n-1] != orchestrator.EventOutcomeVerified || cancelled > n-2 {
		t.Errorf("events %v: want transfer.outcome_verified last, after transfer.cancelled", types)
	}
}

// Finding 3: a process that dies after sending the dial, before saving
// its result, is restarted; the consult is not listed yet. The new
// process watches for it instead of dialling again, although the PBX
// would accept a duplicate.
func TestFinding3RestartAfterDialNeverDialsAgain(t *testing.T) {
	store := memory.New()
	fake := orchestratortest.NewFake("fake").DuplicateDials(true)
	release, hit := make(chan struct{}), make(chan struct{})
	var once sync.Once
	crash := func(tr *orchestrator.Transfer, p string) {
		if p == "dial:effect" {
			once.Do(func() {
				fake.HideConsult(tr.ID, 3) // not listed yet
				close(hit)
			})
			<-release // the process is "dead" from here on
		}
	}
	engine := func(crash func(*orchestrator.Transfer, string)) *orchestrator.Engine {
		e, err := orchestrator.New(orchestrator.Config{Owner: "x", PollInterval: time.Millisecond,
			PollMaxInterval: 5 * time.Millisecond, VisibilityWindow: 5 * time.Second, CrashPoint: crash},
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
	tr, err := first.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-hit
	second := engine(nil)
	if err := second.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr = waitFor(t, second, tr.ID, func(*orchestrator.Transfer) bool { return false })
	wantOutcome(t, tr, orchestrator.StateCompleted, orchestrator.ReasonTransferred, false)
	c, _ := fake.State(tr.ID)
	if n := countActions(fake.ActionsFor(tr.ID), dial); n != 1 || c.Dials != 1 {
		t.Fatalf("%d dials, %d consult legs: want one", n, c.Dials)
	}
	if tr.Legs.Consult != c.Legs.Consult {
		t.Errorf("consult ids %+v, the provider's %+v: a reading should have revealed them", tr.Legs.Consult, c.Legs.Consult)
	}
}

// Finding 4: the provider accepts the hold and applies it late, after the
// unhold of a cancel. A reading taken before the hold applied shows the
// caller connected; the restore is not confirmed from it: the engine
// waits, sees the caller held, unholds again, and only then reports
// caller_restored.
func TestFinding4RestoreIsNotConfirmedBeforeTheHoldApplied(t *testing.T) {
	cfg := testConfig()
	// The hold may take a second to show; the recovery waits longer than
	// that for the provider to show the caller back.
	cfg.VisibilityWindow, cfg.VerifyTimeout = time.Second, 10*time.Second
	h := newHarness(t, cfg)
	ctx := context.Background()
	var unholds, readings atomic.Int32
	var earlyEnd atomic.Bool
	var id string
	h.f.SetTarget(orchestratortest.TargetRings).Defer(hold, 1).
		Before(unhold, func(orchestratortest.Record) { unholds.Add(1) }).
		Before(observe, func(r orchestratortest.Record) {
			// The hold applies at the second reading after the unhold.
			if unholds.Load() == 0 || readings.Add(1) != 2 {
				return
			}
			if tr, err := h.store.Get(ctx, r.TransferID); err == nil && tr.State.Terminal() {
				earlyEnd.Store(true)
			}
			h.f.ApplyDeferred(r.TransferID)
		})
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	id = h.start(t, r)
	h.waitFor(t, id, inState(orchestrator.StateConsulting))
	if _, err := h.e.Cancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	tr := h.done(t, id)
	if earlyEnd.Load() {
		t.Fatal("the transfer ended on readings taken before the hold applied")
	}
	wantOutcome(t, tr, orchestrator.StateCancelled, orchestrator.ReasonCancelled, true)
	if !tr.Seen.Held || !tr.Outcome.Verified {
		t.Errorf("seen held %v, verified %v: the restore must be confirmed after the hold showed", tr.Seen.Held, tr.Outcome.Verified)
	}
	if n := countActions(h.f.ActionsFor(id), unhold); n != 2 {
		t.Errorf("%d unholds, want 2: the late hold undone again", n)
	}
	wantCallerSafe(t, h.f, id)
}

// Finding 5: the provider cannot be read during a cancel. The hang-up
// and the unhold are still sent (blind); the unhold is lost by the
// provider, so once readings work again and show the caller held, it is
// sent again and the outcome verified.
func TestFinding5UnholdIsSentWhileReadsFailAndAgainAfter(t *testing.T) {
	h := newHarness(t, testConfig())
	h.f.SetTarget(orchestratortest.TargetRings)
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	id := h.start(t, r)
	h.waitFor(t, id, inState(orchestrator.StateConsulting))
	heldSeen(t, h)
	h.f.FailOn(observe, fakeErr(observe, orchestrator.KindProviderUnavailable), -1).
		Defer(unhold, 1) // accepted, never applied
	if _, err := h.e.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	tr := h.done(t, id)
	if tr.State != orchestrator.StateCancelled || tr.Outcome.Verified || tr.Cleanup == nil {
		t.Fatalf("state %s outcome %+v cleanup %+v, want cancelled, unverified, with an obligation", tr.State, tr.Outcome, tr.Cleanup)
	}
	if got := h.f.ActionsFor(id); !slicesEqual(got, []string{locate, hold, dial, hangup, unhold}) {
		t.Fatalf("actions %q: the hang-up and the unhold were not sent while reads failed", got)
	}
	if c, _ := h.f.State(id); c.Caller != orchestrator.CallerHeld {
		t.Fatalf("provider shows the caller %v, want still held (the unhold was lost)", c.Caller)
	}

	h.f.ClearFaults()
	tr = h.store.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.Cleanup == nil })
	if !tr.Outcome.Verified || !tr.Outcome.CallerRestored {
		t.Fatalf("outcome %+v, want verified and restored", tr.Outcome)
	}
	if n := countActions(h.f.ActionsFor(id), unhold); n != 2 {
		t.Errorf("%d unholds, want 2", n)
	}
	wantCallerSafe(t, h.f, id)
}

// Finding 6: a busy or rejecting target whose leg the PBX drops before any
// reading lists it. With a ten-minute consult_timeout, the caller is back
// within the visibility window, consult_failed, not no_answer at the
// deadline; the tombstone then expires and the outcome is verified.
func TestFinding6VanishedConsultEndsWithinTheVisibilityWindow(t *testing.T) {
	h := newHarness(t, testConfig())
	h.f.SetTarget(orchestratortest.TargetVanishes)
	r := request("fake", "1000")
	r.ConsultTimeout = 10 * time.Minute
	id := h.start(t, r)
	tr := h.done(t, id) // waits 10 s at most: far less than consult_timeout
	wantOutcome(t, tr, orchestrator.StateFailed, orchestrator.ReasonConsultFailed, true)
	if !strings.Contains(tr.Outcome.Detail, "visibility window") {
		t.Errorf("detail %q does not say the consult never appeared", tr.Outcome.Detail)
	}
	if got := h.f.ActionsFor(id); !slicesEqual(got, []string{locate, hold, dial, hangup, unhold}) {
		t.Errorf("actions %q", got)
	}
	tr = h.store.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.Cleanup == nil })
	if !tr.Outcome.Verified {
		t.Errorf("outcome %+v not verified after the tombstone expired", tr.Outcome)
	}
	wantCallerSafe(t, h.f, id)
}

// Finding 7: the target answers just before the consult deadline. The
// reading at the deadline decides: it shows the answer, and the transfer
// completes instead of hanging up on the target.
func TestFinding7AnswerAtTheDeadlineCompletes(t *testing.T) {
	h := newHarness(t, testConfig())
	ctx := context.Background()
	var answeredAt atomic.Bool
	h.f.SetTarget(orchestratortest.TargetRings).Before(observe, func(r orchestratortest.Record) {
		tr, err := h.store.Get(ctx, r.TransferID)
		if err != nil || tr.ConsultDeadline.IsZero() || time.Now().Before(tr.ConsultDeadline) {
			return
		}
		if h.f.Answer(r.TransferID) == 1 { // before this reading is taken
			answeredAt.Store(true)
		}
	})
	req := request("fake", "1000")
	req.ConsultTimeout = time.Second
	id := h.start(t, req)
	tr := h.done(t, id)
	if !answeredAt.Load() {
		t.Fatalf("the target never answered at the deadline: %+v", tr.Outcome)
	}
	wantOutcome(t, tr, orchestrator.StateCompleted, orchestrator.ReasonTransferred, false)
	if got := h.f.ActionsFor(id); !slicesEqual(got, []string{locate, hold, dial, complete}) {
		t.Errorf("actions %q", got)
	}
}

// Finding 9: monitoring tells the truth. The callers-on-hold gauge follows
// readings (the agent takes the caller off hold on the phone: it drops);
// while the store cannot save, Ready fails, and the caller is still given
// back at the consult deadline (restorative steps need no saved intent);
// once saves work again the outcome is saved.
func TestFinding9MonitoringFollowsTheProviderAndTheStore(t *testing.T) {
	h := newHarness(t, testConfig())
	ctx := context.Background()
	fake := map[string]string{"provider": "fake"}
	onHold := func() float64 { return metric(t, h.reg, "transferd_callers_on_hold", fake) }
	h.f.SetTarget(orchestratortest.TargetRings)
	r := request("fake", "1000")
	r.ConsultTimeout = time.Second
	id := h.start(t, r)
	h.waitFor(t, id, inState(orchestrator.StateConsulting))
	eventually(t, "the held caller counted", func() bool { return onHold() == 1 })
	h.f.SetCaller(id, orchestrator.CallerConnected)
	eventually(t, "the caller taken off hold by the agent uncounted", func() bool { return onHold() == 0 })
	h.f.SetCaller(id, orchestrator.CallerHeld)
	eventually(t, "the held caller counted again", func() bool { return onHold() == 1 })
	if err := h.e.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}

	h.store.failing.Store(true)
	eventually(t, "the caller given back at the deadline", func() bool {
		c, _ := h.f.State(id)
		return c.Caller == orchestrator.CallerConnected && c.Consult == orchestrator.ConsultEnded
	})
	if err := h.e.Ready(ctx); err == nil {
		t.Fatal("Ready reports ready while no save succeeds")
	}
	if tr, _ := h.e.Get(ctx, id); tr == nil || tr.State != orchestrator.StateConsulting {
		t.Fatalf("stored %+v, want still consulting: nothing could be saved", tr)
	}

	h.store.failing.Store(false)
	tr := h.store.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.State.Terminal() })
	wantOutcome(t, tr, orchestrator.StateFailed, orchestrator.ReasonNoAnswer, true)
	eventually(t, "ready again", func() bool { return h.e.Ready(ctx) == nil })
	eventually(t, "no caller on hold", func() bool { return onHold() == 0 })
}

// Finding 10: Shutdown returns at its deadline although a provider call
// is blocked; the unfinished transfer stays open in the store, and the
// next process carries it on without dialling again.
func TestFinding10ShutdownHonoursItsDeadline(t *testing.T) {
	h := newHarness(t, testConfig())
	gate := h.f.Block(dial)
	t.Cleanup(gate.Release)
	id := h.start(t, request("fake", "1000"))
	<-gate.Entered()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	h.stopped = true
	if err := h.e.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown returned nil with a transfer blocked in a provider call")
	}
	tr, err := h.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if tr.State.Terminal() || !tr.Open() || tr.Sent.Dial.IsZero() {
		t.Fatalf("stored %s, open %v, dial sent %v: want an open record that remembers the dial", tr.State, tr.Open(), tr.Sent.Dial)
	}

	gate.Release()
	e2, err := orchestrator.New(testConfig(), h.store, []orchestrator.Provider{h.f}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e2.Shutdown(context.Background()) })
	if err := e2.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, e2, id, func(*orchestrator.Transfer) bool { return false })
	// The old process was abandoning the transfer (reason shutdown) when
	// its calls were cancelled; its outcome may be reported unverified
	// first, and the sweeper then verifies it.
	tr = h.store.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.State.Terminal() && tr.Cleanup == nil })
	if tr.Outcome.Reason != orchestrator.ReasonShutdown || !tr.Outcome.CallerRestored || !tr.Outcome.Verified {
		t.Fatalf("outcome %+v, want shutdown with the caller restored, verified", tr.Outcome)
	}
	if n := countActions(h.f.ActionsFor(id), dial); n != 1 {
		t.Errorf("%d dials, want 1: the cancelled dial's effect is unknown, so it is watched for, not repeated", n)
	}
	wantCallerSafe(t, h.f, id)
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
