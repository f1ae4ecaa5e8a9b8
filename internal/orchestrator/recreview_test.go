package orchestrator_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// Found by the review of the recovery and join paths (sixty-second pass):
// the step's patience (TRANSFERD_STEP_TIMEOUT, counted from a failed
// step's first try) was counted, in completing, from the first failure of
// the join, and never begun again once the join was accepted. The agent's
// hang-up after the join (Bandwidth: the agent alone in the consult
// bridge) that then failed for a moment was judged against the join's
// first failure: a join that had been held back (a 5xx on the consult's
// release, ErrNotSent) for most of the step timeout, then accepted, left
// its hang-up no patience at all, and the transfer completed with the
// agent's call up alone in a bridge of ours (invariant (f)). The patience
// of what follows an accepted join runs from its own first failure.
func TestTheAgentsHangupHasAPatienceOfItsOwnAfterAJoinThatFailedFirst(t *testing.T) {
	agentsHangupAfterAFailedJoin(t, false)
}

// The same patience, where the join that followed the failures was
// applied and its answer lost (a 502 after the PBX acted): a join failed
// on the way is not an accepted one, and its agent's hang-up was judged
// against the first failure of the join all the same.
func TestTheAgentsHangupHasAPatienceOfItsOwnAfterAJoinWhoseAnswerWasLost(t *testing.T) {
	agentsHangupAfterAFailedJoin(t, true)
}

// agentsHangupAfterAFailedJoin runs a transfer whose join is held back
// once (most of a step timeout), then accepted (its answer lost when
// loseAnswer), and whose agent's hang-up fails once: the hang-up must be
// sent again, and the transfer complete with the agent's call hung up.
func agentsHangupAfterAFailedJoin(t *testing.T, loseAnswer bool) {
	t.Helper()
	const (
		window = 50 * time.Millisecond
		step   = time.Second
	)
	clock := newManualClock()
	clock.Run() // until the join is sent again
	t.Cleanup(clock.Run)
	f := orchestratortest.NewFake("fake").SetFlow(orchestrator.Flow{Hold: true, Join: true, HangupAgent: true})
	f.FailOn(orchestratortest.MethodComplete, orchestrator.NotSent(orchestrator.E("fake.Complete",
		orchestrator.KindProviderUnavailable, errors.New("HTTP 503 on the consult's release"))), 1)
	if loseAnswer {
		f.LoseResponse(orchestratortest.MethodComplete, orchestrator.E("fake.Complete",
			orchestrator.KindProviderUnavailable, errors.New("HTTP 502 bad gateway")), 1)
	}
	f.FailOn(orchestratortest.MethodHangupAgent, orchestrator.E("fake.HangupAgent",
		orchestrator.KindProviderUnavailable, errors.New("HTTP 500 internal-server-error")), 1)
	var joins, hangups atomic.Int32
	f.Before(orchestratortest.MethodComplete, func(orchestratortest.Record) {
		if joins.Add(1) == 2 {
			// The join is accepted most of a step timeout after its
			// first try failed.
			clock.Freeze()
			clock.Advance(step - window)
		}
	})
	f.Before(orchestratortest.MethodHangupAgent, func(orchestratortest.Record) {
		if hangups.Add(1) == 1 {
			// A reading shows the join a visibility window after it.
			clock.Advance(2 * window)
		}
	})
	e := testEngine(t, orchestrator.Config{
		PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond,
		StepTimeout: step, VerifyTimeout: 2 * time.Second, VisibilityWindow: window, TombstoneTTL: 2 * window,
		Clock: clock.Now,
	}, memory.New(), f, nil)
	if err := e.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := waitFor(t, e, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if end.State != orchestrator.StateCompleted || !end.Outcome.Verified {
		t.Fatalf("%s %+v; want completed, verified", end.State, end.Outcome)
	}
	want := []string{locate, hold, dial, complete, complete, orchestratortest.MethodHangupAgent, orchestratortest.MethodHangupAgent}
	if got := f.ActionsFor(tr.ID); !slices.Equal(got, want) {
		t.Errorf("actions %q, want %q: the agent's hang-up that failed for a moment sent again", got, want)
	}
	if d := end.Outcome.Detail; strings.Contains(d, "could not be hung up") {
		t.Errorf("outcome detail %q: the agent's call was left up alone in a bridge of ours", d)
	}
}

// The join's second form (JoinRetrier) held back before it went out
// (ErrNotSent, a failure that may pass) is sent again for as long as the
// step's patience lasts. That patience was counted from the first form's
// first failure: a first form held back for most of the step timeout,
// then accepted and seen not to take, left the second form none, and the
// transfer was given up (the caller given back) where the PBX would have
// taken the second form a moment later.
func TestTheSecondFormHasAPatienceOfItsOwn(t *testing.T) {
	const (
		window = 50 * time.Millisecond
		step   = 5 * time.Second
	)
	clock := newManualClock()
	clock.Run() // until the first form is sent again
	t.Cleanup(clock.Run)
	f := orchestratortest.NewFake("fake")
	notSent := orchestrator.NotSent(orchestrator.E("fake.Complete",
		orchestrator.KindProviderUnavailable, errors.New("the consult call is not listed yet")))
	f.FailOn(orchestratortest.MethodComplete, notSent, 1)
	p := &formPBX{Fake: f, wantSecond: true}
	var joins atomic.Int32
	var judged atomic.Bool
	f.Before(orchestratortest.MethodComplete, func(orchestratortest.Record) {
		switch joins.Add(1) {
		case 2:
			// The first form is accepted (and ignored) most of a step
			// timeout after its first try was held back.
			clock.Freeze()
			clock.Advance(step - window)
		case 3:
			// The second form is held back once; the clock goes on, for
			// the back-off.
			f.FailOn(orchestratortest.MethodComplete, notSent, 1)
			clock.Run()
		}
	})
	f.Before(orchestratortest.MethodObserve, func(orchestratortest.Record) {
		if joins.Load() == 2 && !judged.Swap(true) {
			// A reading a window after the first form shows it did not take.
			clock.Advance(2 * window)
		}
	})
	e := testEngine(t, orchestrator.Config{
		PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond,
		StepTimeout: step, VerifyTimeout: 10 * time.Second, VisibilityWindow: window, TombstoneTTL: 2 * window,
		Clock: clock.Now,
	}, memory.New(), p, nil)
	if err := e.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := waitFor(t, e, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	assertJoinedAfter(t, p, end, []bool{false, false, true, true})
}

// lateFirstPBX has a second form of the join (JoinRetrier) and applies
// the first form only as the second arrives, refusing the second as a
// PBX does a join of a call that is no longer the agent's: a first join
// applied after the reading that showed it had not taken.
type lateFirstPBX struct {
	*orchestratortest.Fake
	joins atomic.Int32
}

func (p *lateFirstPBX) JoinAgain(*orchestrator.Transfer) bool { return true }

func (p *lateFirstPBX) Complete(ctx context.Context, t *orchestrator.Transfer) error {
	if p.joins.Add(1) == 1 {
		return p.Fake.Complete(ctx, t) // accepted, applied later (Defer)
	}
	p.Fake.ApplyDeferred(t.ID)
	return orchestrator.E("fake.Complete", orchestrator.KindCallNotFound, errors.New("HTTP 404: the agent's call is not found"))
}

// Checked by the review of the recovery and join paths (sixty-second
// pass), and sound: a first join applied after the reading that showed it
// had not taken, and the second form refused for it (the agent is no
// longer on the caller's call), ends completed, verified, from the reading
// the recovery waits for after a refused join; the consult that now
// carries the caller is not hung up, and the caller is not unheld.
func TestAFirstJoinAppliedAsTheSecondIsRefusedCompletes(t *testing.T) {
	f := orchestratortest.NewFake("fake").Defer(orchestratortest.MethodComplete, 1)
	p := &lateFirstPBX{Fake: f}
	e := joinAgainEngine(t, p)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := waitFor(t, e, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	if end.State != orchestrator.StateCompleted || !end.Outcome.Verified || end.Outcome.Reason != orchestrator.ReasonTransferred {
		t.Errorf("%s %+v; want completed, transferred, verified", end.State, end.Outcome)
	}
	if n := p.joins.Load(); n != 2 {
		t.Errorf("%d joins sent, want 2", n)
	}
	if c, _ := f.State(tr.ID); c.Caller != orchestrator.CallerTransferred {
		t.Errorf("the provider shows the caller %v, want with the target", c.Caller)
	}
	for _, a := range f.ActionsFor(tr.ID) {
		if a == orchestratortest.MethodHangupConsult || a == orchestratortest.MethodUnhold {
			t.Errorf("actions %q: a join that landed was undone", f.ActionsFor(tr.ID))
			break
		}
	}
}

// Found by the same review: a transfer claimed back into the entry this
// replica still held (Engine.reclaim) kept the entry's entered, when this
// replica had taken the transfer or last moved it, which bounds the
// recovery's verification patience. The other replica had given the
// caller up (recovering) and stopped before any compensation; this one,
// claiming it back an hour after it had last moved it, found the patience
// over at its first pass, before any reading could show its hang-up and
// unhold: it reported the transfer unverified, "not verified within", with
// the caller not restored, and left it to the sweeper, where a process
// adopting the same record waits a verification timeout for the readings
// and reports the caller given back, verified. The claimed record is
// taken as an adoption takes it: its patience begins at the claim.
func TestARecoveryClaimedBackIntoAnEntryWaitsForItsReadings(t *testing.T) {
	ctx := context.Background()
	clock := newManualClock()
	clock.Run()
	mem, fake := memory.New(), orchestratortest.NewFake("fake")
	aStore, bStore := &partitionedStore{Store: mem}, &partitionedStore{Store: mem}
	aLog := &logLines{}
	parked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	cfg := func(owner string, crash func(*orchestrator.Transfer, string)) orchestrator.Config {
		return orchestrator.Config{Owner: owner, LeaseTTL: 400 * time.Millisecond, CrashPoint: crash,
			PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond, StepTimeout: time.Second,
			VerifyTimeout: 10 * time.Second, VisibilityWindow: 50 * time.Millisecond, Clock: clock.Now,
			MaxConsultTimeout: 48 * time.Hour}
	}
	a := loggingEngine(t, cfg("a", nil), aStore, fake, nil, zerolog.New(aLog))
	b := testEngine(t, cfg("b", func(_ *orchestrator.Transfer, p string) {
		if p == "state:"+string(orchestrator.StateRecovering) {
			once.Do(func() { close(parked) })
			<-release // b stops here, its recovery saved and nothing sent
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
	r.ConsultTimeout = 24 * time.Hour
	tr, err := a.Start(ctx, r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, a, tr.ID, answered)

	// a is cut off for an hour; b claims the transfer, is cancelled and
	// gives the caller up, saved, and stops before sending anything.
	aStore.cut.Store(true)
	clock.Advance(time.Hour)
	eventually(t, "b claimed the transfer", func() bool { return slices.Contains(b.Running(), tr.ID) })
	if _, err := b.Cancel(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	<-parked
	// b is cut off in turn; a, back, claims the transfer into the entry it
	// still holds (consulting, as a last saw it).
	bStore.cut.Store(true)
	aStore.unlisted.Store(true) // or a, back, lets its entry go (lookForTakeovers)
	aStore.cut.Store(false)
	clock.Advance(time.Second)
	eventually(t, "a claimed it back into the entry it still held", func() bool {
		return aLog.has("claimed back a transfer this replica still held", tr.ID)
	})
	a.Notify(tr.ID)
	var end *orchestrator.Transfer
	eventually(t, "a ending the transfer, nothing owed", func() bool {
		cur, err := mem.Get(ctx, tr.ID)
		end = cur
		return err == nil && cur.State.Terminal() && cur.Cleanup == nil && cur.Owner == "a"
	})
	if o := end.Outcome; end.State != orchestrator.StateCancelled || !o.Verified || !o.CallerRestored ||
		strings.Contains(o.Detail, "not verified within") {
		t.Errorf("%s %+v; want cancelled, the caller restored, verified by the recovery", end.State, o)
	}
	if c, _ := fake.State(tr.ID); c.Caller != orchestrator.CallerConnected {
		t.Errorf("the provider shows the caller %v, want back with the agent", c.Caller)
	}
}
