package orchestrator_test

import (
	"context"
	"errors"
	"runtime"
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

// Deterministic rewrites of the violations the storm (internal/crashtest,
// TestStorm) found; docs/invariants.md lists them with their seeds. Each
// scripts with the Fake the order in which the simulator applied accepted
// actions, and checks invariant (d) against the Fake's calls at the end:
// completed exactly when the caller is with the target, caller_restored
// exactly when the caller is connected and not held.

// stormWindow is the visibility window of these tests: long against the
// Fake's speed, so that "before the window ends" holds on a loaded machine.
const stormWindow = 2 * time.Second

func stormRegressionEngine(t *testing.T, f *orchestratortest.Fake) *orchestrator.Engine {
	t.Helper()
	cfg := orchestrator.Config{
		PollInterval:     time.Millisecond,
		PollMaxInterval:  5 * time.Millisecond,
		StepTimeout:      5 * time.Second,
		VerifyTimeout:    30 * time.Second,
		VisibilityWindow: stormWindow,
		TombstoneTTL:     stormWindow,
	}
	e, err := orchestrator.New(cfg, memory.New(), []orchestrator.Provider{f}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return e
}

// waitStorm waits until cond holds or the transfer is terminal.
func waitStorm(t *testing.T, e *orchestrator.Engine, id string, cond func(*orchestrator.Transfer) bool) *orchestrator.Transfer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr, err := e.Wait(ctx, id, cond)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return tr
}

// wantTruthful is invariant (d) against what the Fake shows.
func wantTruthful(t *testing.T, f *orchestratortest.Fake, tr *orchestrator.Transfer) {
	t.Helper()
	c, _ := f.State(tr.ID)
	if !tr.State.Terminal() || tr.Outcome == nil {
		t.Fatalf("transfer %s is %s with outcome %+v, want terminal", tr.ID, tr.State, tr.Outcome)
	}
	withTarget := c.Caller == orchestrator.CallerTransferred
	if (tr.State == orchestrator.StateCompleted) != withTarget {
		t.Errorf("transfer %s (%s: %s) but the provider shows the caller in state %d", tr.State, tr.Outcome.Reason, tr.Outcome.Detail, c.Caller)
	}
	if tr.State != orchestrator.StateCompleted && tr.Outcome.CallerRestored != (c.Caller == orchestrator.CallerConnected) {
		t.Errorf("caller_restored %v (%s) but the provider shows the caller in state %d", tr.Outcome.CallerRestored, tr.Outcome.Detail, c.Caller)
	}
}

// TestStormDialMovesCallerLate: storm seed 1 (cases 79 and 123) and seed
// 2349275538410565 (case 54), Bandwidth attended. The dial first takes the
// agent out of the caller's bridge (an accepted update applied later), then
// creates the consult bridge, which the provider refuses because the agent
// is still in the caller's bridge. The recovery unholds the caller; the
// unhold is applied, a reading shows the caller connected, and the engine
// reported caller_restored — then the dial's late update took the agent
// away again and left the caller alone, on hold. The recovery must judge
// the caller only on a reading taken once the dial's actions could have
// shown (a visibility window after it), and unhold again.
func TestStormDialMovesCallerLate(t *testing.T) {
	f := orchestratortest.NewFake("bw")
	f.FailOn(orchestratortest.MethodDial, orchestrator.E("fake.Dial", orchestrator.KindProviderRejected,
		errors.New("HTTP 400 bridge-bridged-callId: the agent is already in another bridge")), 1)
	// As in the storm: a reading shows the caller held (the unhold is
	// accepted, not applied yet), the next shows the unhold applied and the
	// caller connected, and the dial's late update lands on the one after.
	f.Defer(orchestratortest.MethodUnhold, 1)
	var unheld, readsAfter atomic.Int32
	f.Before(orchestratortest.MethodUnhold, func(orchestratortest.Record) { unheld.Add(1) })
	landed := false
	f.Before(orchestratortest.MethodObserve, func(r orchestratortest.Record) {
		if unheld.Load() != 1 {
			return
		}
		switch readsAfter.Add(1) {
		case 2:
			f.ApplyDeferred(r.TransferID)
		case 3:
			landed = f.SetCaller(r.TransferID, orchestrator.CallerHeld)
		}
	})
	e := stormRegressionEngine(t, f)
	tr, err := e.Start(context.Background(), orchestrator.Request{Provider: "bw",
		Call: orchestrator.CallRef{Domain: "TEST", User: "1079"}, Target: "+15557100079"}, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := waitStorm(t, e, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if !landed {
		// The engine finished before a second reading: the update lands
		// now, as it did in the simulator after the outcome was reported.
		f.SetCaller(tr.ID, orchestrator.CallerHeld)
	}
	if end.Outcome == nil || !end.Outcome.CallerRestored {
		t.Errorf("outcome %+v, want the caller restored (unheld again after the dial's late update)", end.Outcome)
	}
	wantTruthful(t, f, end)
}

// TestStormHangupLandsAfterAnnouncedAnswer: storm seed 2349275538410565
// (case 26), Bandwidth announced. The client cancels while the B-leg rings;
// the hang-up is accepted but applied later; meanwhile the target answers
// and a reading shows the caller with the target, so the engine reported
// completed — then the hang-up ended the B-leg, and with it the caller's
// call. A reading that shows the caller with the target while a hang-up of
// ours may still land is not the truth yet.
func TestStormHangupLandsAfterAnnouncedAnswer(t *testing.T) {
	f := orchestratortest.NewFake("bw").AnnouncedOnly().SetTarget(orchestratortest.TargetRings)
	// Every hang-up is accepted and applied later: one sent before the
	// consult was seen is sent again as soon as it shows.
	f.Defer(orchestratortest.MethodHangupConsult, -1)
	var answered, readsAfter atomic.Int32
	landed := false
	f.Before(orchestratortest.MethodObserve, func(r orchestratortest.Record) {
		if answered.Load() == 1 && readsAfter.Add(1) == 2 {
			landed = f.ApplyDeferred(r.TransferID) > 0
		}
	})
	e := stormRegressionEngine(t, f)
	tr, err := e.Start(context.Background(), orchestrator.Request{Provider: "bw", Mode: orchestrator.ModeAnnounced,
		Call: orchestrator.CallRef{Domain: "TEST", User: "1026"}, Target: "+15557100026"}, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitStorm(t, e, tr.ID, func(tr *orchestrator.Transfer) bool { return tr.State == orchestrator.StateConsulting })
	if _, err := e.Cancel(context.Background(), tr.ID); err != nil {
		t.Fatal(err)
	}
	// The hang-up is accepted, not applied; then the target answers.
	deadline := time.Now().Add(20 * time.Second)
	for f.Deferred(tr.ID) == 0 {
		// The Fake publishes no change to wait on: yield until the engine
		// has sent the hang-up.
		if time.Now().After(deadline) {
			t.Fatal("the engine did not hang the B-leg up")
		}
		runtime.Gosched()
	}
	if f.Answer(tr.ID) != 1 {
		c, _ := f.State(tr.ID)
		t.Fatalf("the B-leg was not ringing: %+v", c)
	}
	answered.Store(1)
	end := waitStorm(t, e, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if !landed {
		f.ApplyDeferred(tr.ID)
	}
	wantTruthful(t, f, end)
}

// twinHold is a provider whose hold request has a twin: the first is
// applied at once, the second (an adapter's safe retry after an answer it
// lost) is accepted and applied only when the test says.
type twinHold struct {
	*orchestratortest.Fake
	twins atomic.Int32
}

func (p *twinHold) Hold(ctx context.Context, t *orchestrator.Transfer) error {
	if err := p.Fake.Hold(ctx, t); err != nil {
		return err
	}
	p.twins.Add(1)
	return nil
}

// TestStormHoldTwinLandsAfterUnhold: storm seed 3 (case 172), Bandwidth
// attended, cancelled 17 ms after creation. The caller and agent ended up
// in the caller's bridge with audio off after transferd had reported the
// caller restored: a hold request that the adapter had sent twice (a safe
// retry after a lost answer) was applied after the unhold. A hold seen
// applied may have a twin in flight: the caller is judged only on
// readings taken a visibility window after the hold step, and unheld
// again when one shows the caller held.
func TestStormHoldTwinLandsAfterUnhold(t *testing.T) {
	f := orchestratortest.NewFake("bw").SetTarget(orchestratortest.TargetRings)
	p := &twinHold{Fake: f}
	var unholds, readsAfter atomic.Int32
	landed := atomic.Bool{}
	f.Before(orchestratortest.MethodUnhold, func(orchestratortest.Record) { unholds.Add(1) })
	f.Before(orchestratortest.MethodObserve, func(r orchestratortest.Record) {
		// The first reading after the unhold shows the caller connected;
		// the twin lands on the one after.
		if unholds.Load() == 1 && readsAfter.Add(1) == 2 && landed.CompareAndSwap(false, true) {
			f.SetCaller(r.TransferID, orchestrator.CallerHeld)
		}
	})
	cfg := orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		StepTimeout: 5 * time.Second, VerifyTimeout: 30 * time.Second, VisibilityWindow: stormWindow, TombstoneTTL: stormWindow}
	e, err := orchestrator.New(cfg, memory.New(), []orchestrator.Provider{p}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	tr, err := e.Start(context.Background(), orchestrator.Request{Provider: "bw",
		Call: orchestrator.CallRef{Domain: "TEST", User: "1172"}, Target: "+15557100172"}, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitStorm(t, e, tr.ID, func(tr *orchestrator.Transfer) bool { return tr.State == orchestrator.StateConsulting })
	if _, err := e.Cancel(context.Background(), tr.ID); err != nil {
		t.Fatal(err)
	}
	end := waitStorm(t, e, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if landed.CompareAndSwap(false, true) {
		// The engine finished before a second reading: the twin lands
		// now, as it did in the simulator after the outcome was reported.
		f.SetCaller(tr.ID, orchestrator.CallerHeld)
	}
	if end.Outcome == nil || !end.Outcome.CallerRestored || unholds.Load() < 2 {
		t.Errorf("outcome %+v after %d unholds, want the caller restored by a second unhold", end.Outcome, unholds.Load())
	}
	wantTruthful(t, f, end)
}

// TestStormHangupInterruptedByAKillIsSentAgain: storm seed
// 1428677398471462 (case 223), Bandwidth attended, busy target. transferd
// was killed between saving the consult hang-up's intent and sending it;
// the restarted process never sent it again, because no reading showed
// the consult (the busy leg had vanished) — but the hang-up also empties
// the consult bridge that holds the agent, so every unhold was refused and
// the caller stayed held. A compensation whose intent was saved and whose
// result was not is owed again after a restart.
func TestStormHangupInterruptedByAKillIsSentAgain(t *testing.T) {
	f := orchestratortest.NewFake("bw").SetTarget(orchestratortest.TargetRings)
	hangupOwedAfterRestart(t, f, "1223", "hangup_consult:intent")
}

// hangupOwedAfterRestart cancels a consulting transfer whose process dies
// at crashPoint of its consult hang-up; from then on no reading shows the
// consult (a busy leg that vanished), so only a hang-up sent again by the
// restarted process clears it. It fails the test unless one is.
func hangupOwedAfterRestart(t *testing.T, f *orchestratortest.Fake, user, crashPoint string) {
	t.Helper()
	store := memory.New()
	release := make(chan struct{})
	hit := make(chan struct{})
	var once sync.Once
	crash := func(_ *orchestrator.Transfer, p string) {
		if p == crashPoint {
			once.Do(func() { close(hit) })
			<-release // the process is dead from here on
		}
	}
	first := replica(t, "x", store, f, crash)
	if err := first.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(release) })
	tr, err := first.Start(context.Background(), request("bw", user), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, first, tr.ID, inState(orchestrator.StateConsulting))
	if _, err := first.Cancel(context.Background(), tr.ID); err != nil {
		t.Fatal(err)
	}
	<-hit
	f.HideConsult(tr.ID, 1<<30)
	before := countActions(f.ActionsFor(tr.ID), orchestratortest.MethodHangupConsult)
	second := replica(t, "x", store, f, nil)
	if err := second.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	end := waitFor(t, second, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if got := countActions(f.ActionsFor(tr.ID), orchestratortest.MethodHangupConsult); got <= before {
		t.Fatalf("hang-ups %d after the restart, %d before: the hang-up was not sent again", got, before)
	}
	if c, _ := f.State(tr.ID); c.Consult == orchestrator.ConsultRinging || c.Consult == orchestrator.ConsultAnswered {
		t.Fatalf("the consult is still up (%v) after %s", c.Consult, end.State)
	}
}

// TestStormHoldLandsAfterJoin: storm seed 1330082130184645 (case 48),
// NetSapiens attended auto, the target answering after 170 ms, transferd
// killed and restarted while consulting. The hold was accepted and applied
// only after the join: the caller ended up with the target but on hold,
// while the transfer said completed. A PBX holds the caller's call
// whoever is on the other end, so the join must wait until no hold of
// ours can still land: the hold seen applied and sent once.
func TestStormHoldLandsAfterJoin(t *testing.T) {
	f := orchestratortest.NewFake("ns")
	f.Defer(orchestratortest.MethodHold, 1)
	var dialled atomic.Bool
	var readsAfter atomic.Int32
	f.Before(orchestratortest.MethodDial, func(orchestratortest.Record) { dialled.Store(true) })
	f.Before(orchestratortest.MethodObserve, func(r orchestratortest.Record) {
		// The hold lands on the fourth reading after the dial: after the
		// target answered (at once), before the window ends.
		if dialled.Load() && readsAfter.Add(1) == 4 {
			f.ApplyDeferred(r.TransferID)
		}
	})
	e := stormRegressionEngine(t, f)
	tr, err := e.Start(context.Background(), orchestrator.Request{Provider: "ns",
		Call: orchestrator.CallRef{Domain: "TEST", User: "20048"}, Target: "60048"}, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := waitStorm(t, e, tr.ID, func(*orchestrator.Transfer) bool { return false })
	// A hold still deferred lands now, after the outcome was reported, as
	// it did in the simulator.
	f.ApplyDeferred(tr.ID)
	if end.State != orchestrator.StateCompleted {
		t.Errorf("transfer %s (%+v), want completed", end.State, end.Outcome)
	}
	wantTruthful(t, f, end)
}

// TestStormHoldTwinLandsAfterJoin is the same with a hold sent twice (a
// retry after a lost answer): the first is applied and seen, the twin is
// applied a little later. A hold seen applied is not enough when it was
// sent more than once: the join waits until readings settle.
func TestStormHoldTwinLandsAfterJoin(t *testing.T) {
	f := orchestratortest.NewFake("ns")
	f.LoseResponse(orchestratortest.MethodHold, orchestrator.E("fake.Hold", orchestrator.KindProviderUnavailable,
		errors.New("connection reset by peer")), 1)
	var holds, readsAfter atomic.Int32
	var twinSent atomic.Bool
	f.Before(orchestratortest.MethodHold, func(orchestratortest.Record) {
		if holds.Add(1) == 2 {
			f.Defer(orchestratortest.MethodHold, 1)
			twinSent.Store(true)
		}
	})
	f.Before(orchestratortest.MethodObserve, func(r orchestratortest.Record) {
		// The twin lands on the fourth reading after it was sent, well
		// within the visibility window.
		if twinSent.Load() && readsAfter.Add(1) == 4 {
			f.ApplyDeferred(r.TransferID)
		}
	})
	e := stormRegressionEngine(t, f)
	tr, err := e.Start(context.Background(), orchestrator.Request{Provider: "ns",
		Call: orchestrator.CallRef{Domain: "TEST", User: "20049"}, Target: "60049"}, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := waitStorm(t, e, tr.ID, func(*orchestrator.Transfer) bool { return false })
	f.ApplyDeferred(tr.ID)
	if holds.Load() != 2 {
		t.Fatalf("%d holds sent, want 2 (the lost answer retried once)", holds.Load())
	}
	if end.State != orchestrator.StateCompleted {
		t.Errorf("transfer %s (%+v), want completed", end.State, end.Outcome)
	}
	wantTruthful(t, f, end)
}

// TestStormFailedHangupIsSentAgainAfterARestart: storm seed 1 with read
// outages (case 203), Bandwidth attended, busy target. The consult
// hang-up was refused (503: the leg was still being set up) and the
// refusal saved; transferd was killed before the retry was due, and the
// restarted process never sent it again, because no reading showed the
// consult (the busy leg had vanished) — but the hang-up also empties the
// consult bridge that holds the agent, so every unhold was refused and
// the caller stayed held. A compensation whose last try failed is owed
// again after a restart.
func TestStormFailedHangupIsSentAgainAfterARestart(t *testing.T) {
	f := orchestratortest.NewFake("bw").SetTarget(orchestratortest.TargetRings)
	f.FailOn(orchestratortest.MethodHangupConsult, orchestrator.E("fake.HangupConsult", orchestrator.KindProviderUnavailable,
		errors.New("HTTP 503 call-unavailable: the call is being initialized")), 1)
	// The process dies once the refusal is saved.
	hangupOwedAfterRestart(t, f, "1203", "hangup_consult:result")
}

// leaveAnswered is a provider whose consult hang-up leaves an answered
// leg alone, as the Bandwidth adapter does with an announced transfer's
// B-leg that carries the caller.
type leaveAnswered struct{ *orchestratortest.Fake }

func (p leaveAnswered) HangupConsult(ctx context.Context, t *orchestrator.Transfer) error {
	if c, _ := p.State(t.ID); c.Consult == orchestrator.ConsultAnswered {
		return nil
	}
	return p.Fake.HangupConsult(ctx, t)
}

// TestStormSweeperCorrectsAnUnverifiedFailureToCompleted: storm seed
// 2822450117039015 with read outages (cases 146, 150, 158, 173), Bandwidth
// announced. Reads failed from before the target answered until past the
// consult deadline and the verification patience: the transfer ended
// failed with an unverified outcome. The target had answered meanwhile, so
// the caller was with the target; the sweeper saw that once reads came
// back, verified the outcome and left it failed. An unverified outcome is
// corrected to what the provider shows, the state included.
func TestStormSweeperCorrectsAnUnverifiedFailureToCompleted(t *testing.T) {
	f := orchestratortest.NewFake("bw").AnnouncedOnly().SetTarget(orchestratortest.TargetRings)
	st := &recStore{Store: memory.New(), saved: make(chan struct{})}
	cfg := orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		StepTimeout: time.Second, VerifyTimeout: 100 * time.Millisecond, VisibilityWindow: 50 * time.Millisecond,
		TombstoneTTL: 50 * time.Millisecond}
	e, err := orchestrator.New(cfg, st, []orchestrator.Provider{leaveAnswered{f}}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	r := orchestrator.Request{Provider: "bw", Mode: orchestrator.ModeAnnounced,
		Call: orchestrator.CallRef{Domain: "TEST", User: "1173"}, Target: "+15557100173", ConsultTimeout: time.Second}
	tr, err := e.Start(context.Background(), r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitStorm(t, e, tr.ID, func(tr *orchestrator.Transfer) bool {
		return tr.State == orchestrator.StateConsulting && tr.Seen.Consult
	})
	// The read outage begins; the target answers inside it.
	unavailable := orchestrator.E("fake.Observe", orchestrator.KindProviderUnavailable, errors.New("HTTP 503 call-unavailable"))
	f.FailOn(orchestratortest.MethodObserve, unavailable, -1)
	if f.Answer(tr.ID) != 1 {
		t.Fatal("the B-leg was not ringing")
	}
	end := st.waitSaved(t, tr.ID, func(tr *orchestrator.Transfer) bool { return tr.State.Terminal() })
	if end.State == orchestrator.StateCompleted || end.Outcome.Verified {
		t.Fatalf("during the outage the transfer ended %s, verified %v; want an unverified failure", end.State, end.Outcome.Verified)
	}
	f.ClearFaults() // the outage ends
	end = st.waitSaved(t, tr.ID, func(tr *orchestrator.Transfer) bool { return tr.Cleanup == nil })
	if !end.Outcome.Verified || !hasStep(end, orchestrator.StepVerify) {
		t.Errorf("after the outage: %s %+v, want a verified outcome and a verify step", end.State, end.Outcome)
	}
	wantTruthful(t, f, end)
}
