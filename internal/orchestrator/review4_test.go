package orchestrator_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// slowJoin is the Fake whose join request goes out late in its step (as
// Bandwidth's completeAttended does: release_consult with retries, then
// the join re-sent for up to leaveWait while the platform answers
// bridge-bridged-callId), while the shared watcher keeps reading. Reads
// and the join's effect are serialised so that a reading is wholly before
// or wholly after the join. The first reading after the join waits for
// `proceed`, then the caller hangs up before it is taken.
type slowJoin struct {
	*orchestratortest.Fake
	window time.Duration

	mu        sync.Mutex
	enteredAt time.Time // the Complete step started (Sent.Join is a little earlier)
	lateReads int
	joined    bool
	scripted  bool

	late    chan struct{} // closed after two readings a window past the step's start
	release chan struct{} // the join goes out
	proceed chan struct{} // the first reading after the join goes on
}

func (p *slowJoin) Complete(ctx context.Context, t *orchestrator.Transfer) error {
	p.mu.Lock()
	p.enteredAt = time.Now()
	p.mu.Unlock()
	<-p.release
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.Fake.Complete(ctx, t)
	p.joined = err == nil
	return err
}

func (p *slowJoin) Read(ctx context.Context, key string, ts []*orchestrator.Transfer) (orchestrator.View, error) {
	p.mu.Lock()
	if p.joined && !p.scripted {
		p.scripted = true
		p.mu.Unlock()
		<-p.proceed
		for _, t := range ts {
			p.Fake.HangupCaller(t.ID)
		}
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	if !p.enteredAt.IsZero() && !p.joined && time.Since(p.enteredAt) > 2*p.window {
		// A reading taken at or after Sent.Join + VisibilityWindow, before
		// the join request was even applied.
		if p.lateReads++; p.lateReads == 2 {
			close(p.late)
		}
	}
	return p.Fake.Read(ctx, key, ts)
}

// Found by a fourth review. Seen.NotJoined was anchored on Sent.Join,
// which completing sets before the step: before the intent's save and
// before the adapter sends anything. Bandwidth's join step can take seconds (release_consult
// retried, the join re-sent for up to leaveWait = VisibilityWindow's
// default) and the shared watcher reads meanwhile. A reading taken during
// the step, a window after Sent.Join but before the join was applied,
// shows the caller held and the target on the consult leg and sets
// NotJoined. The join then applies, the caller's call ends before any
// reading shows it: the outcome was reported failed/caller_hung_up and
// verified (final), though the caller was connected to the target. Truth:
// unknowable (verified false). Now only a reading taken a window after
// the join step ended counts (joinSettledAt).
func TestNotJoinedOnlyFromAReadingAfterTheJoinStepEnded(t *testing.T) {
	const window = 50 * time.Millisecond
	p := &slowJoin{Fake: orchestratortest.NewFake("fake"), window: window,
		late: make(chan struct{}), release: make(chan struct{}), proceed: make(chan struct{})}
	st := &recStore{Store: memory.New(), saved: make(chan struct{})}
	cfg := fastConfig(10*time.Second, window)
	cfg.StepTimeout = 5 * time.Second
	e := testEngine(t, cfg, st, p, nil)
	var relOnce, proOnce sync.Once
	release := func() { relOnce.Do(func() { close(p.release) }) }
	proceed := func() { proOnce.Do(func() { close(p.proceed) }) }
	t.Cleanup(func() { release(); proceed() }) // before the engine's shutdown
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.late:
	case <-time.After(10 * time.Second):
		t.Fatal("no reading was taken while the join step ran")
	}
	release() // the join goes out and is applied; the worker reads next
	// The worker looks at the latest reading (taken before the join).
	wctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	x, _ := e.Wait(wctx, tr.ID, func(x *orchestrator.Transfer) bool { return x.Seen.NotJoined })
	cancel()
	notJoined := x != nil && x.Seen.NotJoined
	proceed() // the caller's call ends before any reading shows the join
	end := st.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	o := end.Outcome
	if end.State == orchestrator.StateCompleted {
		t.Fatalf("set-up: a reading showed the join: %+v", o)
	}
	if o.Verified {
		t.Errorf("%s %+v: verified and final, although the join was applied and the caller's call ended before any reading "+
			"showed it (Seen.NotJoined was set from a reading taken during the join's step, before the join was sent: %t)",
			end.State, o, notJoined)
	}
}

// Found by a fourth review (older than this pass). adopt counted a resumed
// transfer's cleanup obligation in transferd_cleanups_pending without
// setting entry.counted, so drop, which takes off only counted entries,
// never did: every obligation discharged after a restart or a claim left
// the gauge one too high for good (an alert on pending cleanups would
// fire forever). Now adopt marks what it counts. (The obligation was a
// tombstone's; the gauge now counts unverified outcomes only, so it is
// one of those: a join the provider could not be read about.)
func TestResumedObligationIsTakenOffTheCleanupsGauge(t *testing.T) {
	ctx := context.Background()
	st := &recStore{Store: memory.New(), saved: make(chan struct{})}
	f := orchestratortest.NewFake("fake").Defer(orchestratortest.MethodComplete, 1)
	f.Before(orchestratortest.MethodComplete, func(orchestratortest.Record) {
		f.FailOn(orchestratortest.MethodObserve, fakeErr(orchestratortest.MethodObserve, orchestrator.KindProviderUnavailable), -1)
	})
	cfg := orchestrator.Config{Owner: "x", LeaseTTL: 2 * time.Second,
		PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond,
		VerifyTimeout: 200 * time.Millisecond, VisibilityWindow: 50 * time.Millisecond, TombstoneTTL: time.Second,
		StepTimeout: time.Second}
	p1 := &deadable{Fake: f, release: make(chan struct{})}
	first := testEngine(t, cfg, st, p1, nil)
	t.Cleanup(func() { close(p1.release) }) // runs before first's shutdown
	if err := first.Open(ctx); err != nil {
		t.Fatal(err)
	}
	tr, err := first.Start(ctx, request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool {
		return x.State.Terminal() && x.Cleanup != nil && !x.Outcome.Verified
	})
	p1.kill() // the process dies with the obligation open

	reg := prometheus.NewRegistry()
	second := testEngine(t, cfg, st, f, reg)
	if err := second.Open(ctx); err != nil {
		t.Fatal(err)
	}
	lbl := map[string]string{"provider": "fake"}
	if got := metric(t, reg, "transferd_cleanups_pending", lbl); got != 1 {
		t.Fatalf("set-up: cleanups_pending %v after resuming one obligation, want 1", got)
	}
	f.ApplyDeferred(tr.ID) // the join shows, and the provider can be read again
	f.ClearFaults()
	st.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Cleanup == nil })
	// Both gauges together, read until they settle: the replica's claim
	// loop may have read the record before the discharge was saved, and
	// adopt that copy again for a moment after the drop (counting it in
	// both, until its first save is refused as stale and it is dropped
	// again). CI once read in-flight 0 and then cleanups 1 in that window.
	// The bug this guards against leaves the gauge one too high for good,
	// which this still fails on.
	eventually(t, "the discharged transfer dropped and taken off cleanups_pending "+
		"(adopt counts it without entry.counted, so drop never decrements it)", func() bool {
		return metric(t, reg, "transferd_transfers_in_flight", lbl) == 0 &&
			metric(t, reg, "transferd_cleanups_pending", lbl) == 0
	})
}

// Found by a fourth review. The sweeper's early unknowable branch turns a verified
// outcome (a tombstone's, then a late leg answered and the caller gone)
// into an unverified one for good, but transferd_outcomes_unverified_total
// was counted only in enter: this unverified outcome was never counted,
// while the same outcome reached by recovering (unknowable at the end) is.
// Now the sweeper counts it too.
func TestOutcomeUnverifiedBySweepIsCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	st, tr, _, arm := lateAnswer(t, reg)
	arm()
	end := st.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Cleanup == nil })
	if end.Outcome.Verified {
		t.Fatalf("set-up: the outcome stayed verified: %+v", end.Outcome)
	}
	// Counted by the save that wrote it, once the store has it: read
	// until it is, since the store shows the save first.
	eventually(t, "outcomes_unverified_total 1 for a transfer whose final outcome is unverified", func() bool {
		return metric(t, reg, "transferd_outcomes_unverified_total", map[string]string{"provider": "bw"}) == 1
	})
}
