package orchestrator_test

import (
	"context"
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

// Found by the review of what transferd reports (sixty-second pass): the
// caller's time on hold (transferd_caller_hold_duration_seconds) ran from
// Sent.Hold, which each hold attempt stamps anew. A hold whose answer was
// lost (it applied: the caller was held) and that was sent again after
// its back-off, or again by the process that resumed a transfer a stopped
// one left in holding, measured the caller's time on hold from the last
// attempt: the minute the caller had been held already was not in it. It
// runs from the first hold step's start, saved with the record.
func TestTheTimeOnHoldRunsFromTheFirstHold(t *testing.T) {
	const gap = time.Minute
	clock := newManualClock()
	cfg := testConfig()
	// The transient failure is tried again past the gap.
	cfg.StepTimeout, cfg.Clock = 10*time.Minute, clock.Now
	f := orchestratortest.NewFake("fake")
	f.LoseResponse(hold, fakeErr(hold, orchestrator.KindProviderUnavailable), 1)
	var holds atomic.Int32
	f.Before(hold, func(orchestratortest.Record) {
		if holds.Add(1) == 1 {
			// The first hold takes effect and its answer is lost a minute
			// later; from then on time passes as it does.
			clock.Advance(gap)
			clock.Run()
		}
	})
	h := newHarness(t, cfg, f)
	t.Cleanup(clock.Run)
	tr := h.done(t, h.start(t, request("fake", "1000")))
	if tr.State != orchestrator.StateCompleted || holds.Load() < 2 {
		t.Fatalf("state %s after %d holds: set-up wants a hold sent again, then completed", tr.State, holds.Load())
	}
	s := series(t, h.reg, "transferd_caller_hold_duration_seconds", map[string]string{"provider": "fake"}).GetHistogram()
	if s.GetSampleCount() != 1 || s.GetSampleSum() < gap.Seconds() {
		t.Errorf("time on hold observed %d times, %.3f s in all; want once, at least %s: the caller was held from the first hold",
			s.GetSampleCount(), s.GetSampleSum(), gap)
	}
}

// Found by the same review: the time a transfer spent in a state
// (transferd_transfer_state_duration_seconds) was counted from when this
// process took the transfer (entry.entered), so a transfer resumed after
// a restart, or claimed by another replica, observed the state it was in
// from the resumption: a join a replica decided a minute before it died
// observed completing as lasting a moment. The state's start is saved
// with the record (Transfer.StateAt).
func TestTheTimeInAStateRunsFromItsStartAcrossARestart(t *testing.T) {
	const gap = time.Minute
	ctx := context.Background()
	clock := newManualClock()
	clock.Run()
	st := memory.New()
	f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings)
	release, hit := make(chan struct{}), make(chan struct{})
	var once sync.Once
	cfg := func(crash func(*orchestrator.Transfer, string)) orchestrator.Config {
		return orchestrator.Config{Owner: "x", LeaseTTL: 2 * time.Second, CrashPoint: crash, Clock: clock.Now,
			PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond, VerifyTimeout: 200 * time.Millisecond,
			VisibilityWindow: 50 * time.Millisecond, StepTimeout: time.Second}
	}
	first := testEngine(t, cfg(func(_ *orchestrator.Transfer, p string) {
		if p == "state:completing" {
			once.Do(func() { close(hit) })
			<-release // the process is dead from here on
		}
	}), st, f, nil)
	t.Cleanup(func() { close(release) }) // before first shuts down
	tr := startCompleted(t, first, f)
	<-hit // completing is saved; the process dies before the join
	clock.Advance(gap)

	reg := prometheus.NewRegistry()
	second := testEngine(t, cfg(nil), st, f, reg)
	if err := second.Open(ctx); err != nil {
		t.Fatal(err)
	}
	end := waitFor(t, second, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if end.State != orchestrator.StateCompleted {
		t.Fatalf("%s %+v: set-up wants completed by the replica that resumed it", end.State, end.Outcome)
	}
	s := series(t, reg, "transferd_transfer_state_duration_seconds",
		map[string]string{"provider": "fake", "state": string(orchestrator.StateCompleting)}).GetHistogram()
	if s.GetSampleCount() != 1 || s.GetSampleSum() < gap.Seconds() {
		t.Errorf("time in completing observed %d times, %.3f s in all; want once, at least %s: the transfer entered it before the restart",
			s.GetSampleCount(), s.GetSampleSum(), gap)
	}
}

// The other side of TestTheTimeOnHoldRunsFromTheFirstHold: a hold that
// was never sent (its intent could not be saved: the store refused
// writes for a minute) held nobody, and the caller's time on hold runs
// from the first hold that may have reached the provider.
func TestTheTimeOnHoldDoesNotRunFromAHoldNeverSent(t *testing.T) {
	const gap = time.Minute
	clock := newManualClock()
	clock.Run()
	cfg := testConfig()
	cfg.Clock = clock.Now
	st := &failingUpdates{Store: memory.New()}
	st.failing.Store(true)
	reg := prometheus.NewRegistry()
	e := testEngine(t, cfg, st, orchestratortest.NewFake("fake"), reg)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st.refusedAfterAPass(t, e, tr.ID, "the hold's intent refused", func(x *orchestrator.Transfer) bool {
		return x.State == orchestrator.StateHolding
	})
	clock.Advance(gap)
	st.failing.Store(false)
	end := waitFor(t, e, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if end.State != orchestrator.StateCompleted {
		t.Fatalf("%s %+v: set-up wants completed", end.State, end.Outcome)
	}
	s := series(t, reg, "transferd_caller_hold_duration_seconds", map[string]string{"provider": "fake"}).GetHistogram()
	if s.GetSampleCount() != 1 || s.GetSampleSum() >= gap.Seconds() {
		t.Errorf("time on hold observed %d times, %.3f s in all; want once, less than %s: no hold was sent while the store refused its intent",
			s.GetSampleCount(), s.GetSampleSum(), gap)
	}
}

// Found by the same review: an end a replica decided while cut off from
// the store (its save failed: entry.ended waits for a save to count it)
// was counted once the replica claimed the transfer back into that entry
// (Engine.reclaim) and ended it again from the claimed record: the save
// of the second end counted both, so transferd_transfers_total and the
// time on hold counted one transfer twice, the first time for an end the
// store never held. The claimed record replaces what the entry held, its
// unsaved end included, as a version conflict's does.
func TestAnEndNeverSavedIsNotCountedAfterAClaimBack(t *testing.T) {
	ctx := context.Background()
	mem, fake := memory.New(), orchestratortest.NewFake("fake")
	aStore, bStore := &partitionedStore{Store: mem}, &partitionedStore{Store: mem}
	aLog, aReg := &logLines{}, prometheus.NewRegistry()
	parked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	cfg := func(owner string, crash func(*orchestrator.Transfer, string)) orchestrator.Config {
		return orchestrator.Config{Owner: owner, LeaseTTL: 400 * time.Millisecond, CrashPoint: crash,
			PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond, StepTimeout: time.Second,
			VerifyTimeout: 10 * time.Second, VisibilityWindow: 50 * time.Millisecond}
	}
	aCfg := cfg("a", nil)
	// a looks at an ended transfer whose save fails only after an hour:
	// it sits idle until it claims the transfer back.
	aCfg.PollMaxInterval = time.Hour
	a := loggingEngine(t, aCfg, aStore, fake, aReg, zerolog.New(aLog))
	b := testEngine(t, cfg("b", func(_ *orchestrator.Transfer, p string) {
		if p == "state:"+string(orchestrator.StateRecovering) {
			once.Do(func() { close(parked) })
			<-release // b is cut off from here on
		}
	}), bStore, fake, nil)
	t.Cleanup(func() { aStore.cut.Store(false); bStore.cut.Store(false); close(release) }) // before the Shutdowns
	for _, e := range []*orchestrator.Engine{a, b} {
		if err := e.Open(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	r.ConsultTimeout = time.Minute
	tr, err := a.Start(ctx, r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, a, tr.ID, answered)

	// a, cut off, sees the target hang up and ends the transfer, a save
	// that fails; b claims the transfer and saves its recovery.
	aStore.cut.Store(true)
	fake.HangupTarget(tr.ID)
	a.Notify(tr.ID)
	eventually(t, "a ending the transfer it cannot save", func() bool { return aLog.has("transfer failed", tr.ID) })
	<-parked
	// b is cut off in turn; a, back, claims the transfer into the entry it
	// still holds and ends it, saved this time.
	bStore.cut.Store(true)
	aStore.unlisted.Store(true) // or a, back, lets its entry go (lookForTakeovers)
	aStore.cut.Store(false)
	eventually(t, "a claimed it back into the entry it still held", func() bool {
		return aLog.has("claimed back a transfer this replica still held", tr.ID)
	})
	a.Notify(tr.ID)
	eventually(t, "a ending the transfer, saved", func() bool {
		cur, err := mem.Get(ctx, tr.ID)
		return err == nil && cur.State.Terminal() && cur.Cleanup == nil && cur.Owner == "a"
	})
	fakeLbl := map[string]string{"provider": "fake"}
	// b, which took the transfer over from a, cannot tell the target's
	// hang-up from one a may have sent unrecorded (a's own recovery, cut
	// off): the end it saved, which a goes on from, says the cause is
	// unknown (whoEnded).
	ends := map[string]string{"provider": "fake", "outcome": "failed", "reason": string(orchestrator.ReasonConsultFailed)}
	if n := metric(t, aReg, "transferd_transfers_total", ends); n != 1 {
		t.Errorf("a counted transferd_transfers_total%v = %v, want 1: one end saved", ends, n)
	}
	if n := histogramCount(t, aReg, "transferd_caller_hold_duration_seconds", fakeLbl); n != 1 {
		t.Errorf("a observed the time on hold %d times, want 1", n)
	}
}
