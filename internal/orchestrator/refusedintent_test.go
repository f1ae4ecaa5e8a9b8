package orchestrator_test

import (
	"cmp"
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// Left open by the sixty-third pass, taken up by the engine review of the
// sixty-fourth: a transfer whose saves kept failing while its replica's
// heartbeat was renewed (a store refusing one table's or one row's
// writes) and whose next step gives nothing back (the dial after the
// hold, the join) tried the step again without a patience: its intent
// could not be saved, so it was not sent, and the caller stayed held for
// as long as the saves failed. Refused so past the step's patience, the
// step is given up as one refused for its slow save is: the transfer
// fails (internal) and its recovery, whose hang-up and unhold are sent
// with no saved intent while the heartbeat has not lapsed since the last
// save, gives the caller back. Nothing of it is reported until saved:
// readers see the last saved record, and the failure once the store
// takes it.
func TestAStepWhoseIntentCannotBeSavedIsGivenUpWhileTheHeartbeatHolds(t *testing.T) {
	// The step's patience, and a heartbeat long enough that moving the
	// clock past the patience lapses no lease: the heartbeat holds, and
	// the step is given up, not held back.
	const patience, lease = time.Minute, time.Hour
	for _, tc := range []struct {
		step   string // the step whose intent cannot be saved
		point  string // where the store starts refusing saves
		manual bool
		sent   string // the action of that step, never sent
	}{
		{orchestrator.StepHold, orchestrator.StepLocate + ":effect", false, hold},
		{orchestrator.StepDial, "hold:effect", false, dial},
		{orchestrator.StepTransfer, "state:completing", true, complete},
	} {
		t.Run(tc.step, func(t *testing.T) {
			ctx := context.Background()
			// The step's patience runs out when the clock is moved past it,
			// at the second refused save of its intent (the first starts
			// the patience): counted in real time, 100 ms, a save of an
			// earlier step's intent held back that long by a loaded
			// machine gave that step up instead.
			clock := newManualClock()
			clock.Run()
			st := &lapsingUpdates{failingUpdates: &failingUpdates{Store: memory.New()}, step: tc.step, at: 2,
				lapse: func() { clock.Advance(patience) }}
			f := orchestratortest.NewFake("fake")
			if tc.manual {
				f.SetTarget(orchestratortest.TargetRings)
			}
			e := replicaWith(t, orchestrator.Config{Owner: "a", LeaseTTL: lease, StepTimeout: patience,
				VerifyTimeout: time.Hour, Clock: clock.Now, CrashPoint: func(_ *orchestrator.Transfer, p string) {
					if p == tc.point {
						st.failing.Store(true)
					}
				}}, st, f)
			if err := e.Open(ctx); err != nil {
				t.Fatal(err)
			}
			r := request("fake", "1000")
			if tc.manual {
				r.Completion = orchestrator.CompletionManual
			}
			tr, err := e.Start(ctx, r, orchestrator.StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if tc.manual {
				completeOnceAnswered(t, e, f, tr.ID)
			}
			eventually(t, "the store refusing saves", st.failing.Load)
			eventually(t, "the caller given back while the saves fail", func() bool {
				c, _ := f.State(tr.ID)
				return c.Caller == orchestrator.CallerConnected && slices.Contains(f.ActionsFor(tr.ID), unhold)
			})
			if got, err := e.Get(ctx, tr.ID); err != nil || got.State.Terminal() || got.Failure != nil {
				t.Errorf("while the saves fail, readers see %+v (%v); want the last saved record, no outcome", got, err)
			}
			st.failing.Store(false)
			end := waitFor(t, e, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
			if end.State != orchestrator.StateFailed || end.Outcome == nil || end.Outcome.Reason != orchestrator.ReasonInternal || !end.Outcome.CallerRestored {
				t.Errorf("%s %+v; want failed, internal, the caller restored", end.State, end.Outcome)
			}
			acts := f.ActionsFor(tr.ID)
			if slices.Contains(acts, tc.sent) {
				t.Errorf("actions %q; the %s whose intent was not saved went out", acts, tc.step)
			}
			if tc.step == orchestrator.StepTransfer && !slices.Contains(acts, hangup) {
				t.Errorf("actions %q; want the consult hung up", acts)
			}
		})
	}
}

// accountView is a Fake whose readings show, besides the transfers read
// for, transfer extra's calls too, as a watcher's view of a whole account
// does (Bandwidth's calls of an account, a NetSapiens domain's listing):
// a reading taken before extra was subscribed shows it. It counts the
// observations of extra made on its readings.
type accountView struct {
	*orchestratortest.Fake
	extra    atomic.Pointer[orchestrator.Transfer]
	reads    atomic.Int32
	observed atomic.Int32
}

func (p *accountView) Read(ctx context.Context, key string, ts []*orchestrator.Transfer) (orchestrator.View, error) {
	x := p.extra.Load()
	if x != nil && !slices.ContainsFunc(ts, func(t *orchestrator.Transfer) bool { return t.ID == x.ID }) {
		ts = append(slices.Clip(ts), x)
	}
	v, err := p.Fake.Read(ctx, key, ts)
	p.reads.Add(1)
	if err != nil {
		return nil, err
	}
	return extraCountedView{View: v, p: p}, nil
}

type extraCountedView struct {
	orchestrator.View
	p *accountView
}

func (v extraCountedView) Observe(t *orchestrator.Transfer) (orchestrator.Observation, error) {
	if x := v.p.extra.Load(); x != nil && x.ID == t.ID {
		v.p.observed.Add(1)
	}
	return v.View.Observe(t)
}

// Left open by the sixty-third pass, taken up by the engine review of the
// sixty-fourth: every request of a process that drove a transfer before
// was written before the process resuming it claimed it (its send gate
// shuts with its lease, before any claim), but not within its step's
// bound, nor with a saved intent, when it was a hang-up of the consult
// whose intent took long to save (it has the step timeout from that
// save) or could not be saved (sent blind, known to nobody after).
// Applied late, a hang-up of a leg that carries the caller (an announced
// transfer, Bandwidth's B-leg) ends the caller's call with the target.
// The resuming process, whose watcher's view of the account had a
// reading taken before the claim showing the caller with the target,
// reported the transfer completed, verified, at its first look, sending
// no hang-up of its own, and the first process's hang-up landed after.
// A resumed transfer now takes a reading of the caller with the target as
// final (recovering, sweep) only once taken a visibility window after
// its adoption.
func TestAHangupSentBeforeAResumptionCanLandAfterItsFirstReadings(t *testing.T) {
	ctx := context.Background()
	st := &failingUpdates{Store: memory.New()}
	f := orchestratortest.NewFake("fake").AnnouncedOnly().SetTarget(orchestratortest.TargetRings)
	prov := &accountView{Fake: f}

	// The replica that resumes the transfer (resumerAnHourAhead).
	own := request("fake", "2000")
	own.Mode = orchestrator.ModeAnnounced
	second, clock := resumerAnHourAhead(t, st, prov, own)

	first, hit := blindHangupReplica(t, orchestrator.Config{}, st, f, "state:recovering", func() {
		// The store refuses saves from here: the hang-up is sent blind,
		// accepted, and applied later.
		st.failing.Store(true)
		f.Defer(orchestratortest.MethodHangupConsult, 1)
	})
	r := request("fake", "1000")
	r.Mode = orchestrator.ModeAnnounced
	tr, err := first.Start(ctx, r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, first, tr.ID, inState(orchestrator.StateConsulting))
	if _, err := first.Cancel(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	<-hit
	// The target answers before the hang-up lands: the provider connects
	// the caller to the target (an announced transfer).
	f.Answer(tr.ID)
	st.failing.Store(false)
	saved, err := st.Get(ctx, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	prov.extra.Store(saved)
	n := prov.reads.Load()
	eventually(t, "a reading of the account showing the caller with the target", func() bool { return prov.reads.Load() > n+1 })

	// The second replica claims the transfer (its look for stopped
	// replicas' transfers runs every quarter of its lease) and looks at
	// it; its clock stands still, so that no time passes for it.
	eventually(t, "the transfer resumed and looked at", func() bool {
		got, err := second.Get(ctx, tr.ID)
		return (err == nil && got.State.Terminal()) || prov.observed.Load() >= 20
	})
	if got, err := second.Get(ctx, tr.ID); err == nil && got.State == orchestrator.StateCompleted {
		t.Errorf("reported %s %+v on a reading taken as it resumed the transfer, while the first process's hang-up could still land", got.State, got.Outcome)
	}
	f.ApplyDeferred(tr.ID) // the hang-up lands: the caller's call ends with the B-leg
	if c, _ := f.State(tr.ID); c.Caller != orchestrator.CallerGone {
		t.Fatalf("the provider shows the caller %v; want gone, with the B-leg hung up", c.Caller)
	}
	clock.Run()
	end := waitFor(t, second, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if end.State == orchestrator.StateCompleted {
		t.Errorf("%s %+v; the caller's call was ended by the first process's hang-up", end.State, end.Outcome)
	}
}

// blindHangupReplica opens the replica, "x", whose hang-up of the consult
// the replica that resumes the transfer (resumerAnHourAhead) must wait
// out in these tests: at its crash point armAt, arm runs (the store
// starts refusing saves, so that what follows goes out blind); once the
// hang-up is sent, hit is closed and the process is dead, its worker held
// until the test ends. cfg's Owner, LeaseTTL and CrashPoint are set here.
func blindHangupReplica(t *testing.T, cfg orchestrator.Config, st orchestrator.Store, f *orchestratortest.Fake,
	armAt string, arm func()) (first *orchestrator.Engine, hit <-chan struct{}) {
	t.Helper()
	sent, release := make(chan struct{}), make(chan struct{})
	cfg.Owner, cfg.LeaseTTL = "x", cmp.Or(cfg.LeaseTTL, 2*time.Second)
	cfg.CrashPoint = func(_ *orchestrator.Transfer, p string) {
		switch p {
		case armAt:
			arm()
		case orchestrator.StepHangup + ":effect":
			close(sent)
			<-release // the process is dead from here on
		}
	}
	first = replicaWith(t, cfg, st, f)
	t.Cleanup(func() { close(release) }) // before first shuts down
	return first, sent
}

// joinGivenUpReplica is blindHangupReplica whose join's intent st refuses
// from state:completing on. The join's patience is a minute on the
// replica's manual clock, moved past it at the second refused save of the
// intent (the first starts the patience): counted in real time, 100 ms, a
// save of an earlier step's intent held back that long by a loaded machine
// gave that step up instead. The heartbeat, ten minutes, outlasts the
// jump (the join is given up, not held back); a replica an hour ahead
// still finds it run out.
func joinGivenUpReplica(t *testing.T, st *failingUpdates, f *orchestratortest.Fake) (first *orchestrator.Engine, hit <-chan struct{}) {
	t.Helper()
	clock := newManualClock()
	clock.Run()
	lapsing := &lapsingUpdates{failingUpdates: st, step: orchestrator.StepTransfer, at: 2,
		lapse: func() { clock.Advance(time.Minute) }}
	cfg := orchestrator.Config{LeaseTTL: 10 * time.Minute, StepTimeout: time.Minute, VerifyTimeout: time.Hour, Clock: clock.Now}
	return blindHangupReplica(t, cfg, lapsing, f, "state:completing", func() {
		// The store refuses saves from here: the join's intent cannot be
		// saved, and past its patience it is given up.
		st.failing.Store(true)
	})
}

// completeOnceAnswered completes e's manual transfer id once its target,
// rung by f, has answered.
func completeOnceAnswered(t *testing.T, e *orchestrator.Engine, f *orchestratortest.Fake, id string) {
	t.Helper()
	waitFor(t, e, id, inState(orchestrator.StateConsulting))
	f.Answer(id)
	waitFor(t, e, id, func(x *orchestrator.Transfer) bool { return x.Answered })
	if _, err := e.Complete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
}

// startCompleted starts a manual transfer of user 1000's call on e and
// completes it once its target, rung by f, has answered.
func startCompleted(t *testing.T, e *orchestrator.Engine, f *orchestratortest.Fake) *orchestrator.Transfer {
	t.Helper()
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	tr, err := e.Start(context.Background(), r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	completeOnceAnswered(t, e, f, tr.ID)
	return tr
}

// resumerAnHourAhead opens the replica, "y", that resumes a transfer in
// these tests: its clock stands still an hour ahead, so the other
// replica's heartbeat has run out on it, and it drives a consult of its
// own, own, so that its watcher reads the account all along. The test
// lets its clock run (clock.Run) once the transfer is to be resumed.
func resumerAnHourAhead(t *testing.T, st orchestrator.Store, prov orchestrator.Provider, own orchestrator.Request) (*orchestrator.Engine, *manualClock) {
	t.Helper()
	return resumerAnHourAheadWith(t, st, prov, own, nil)
}

// resumerAnHourAheadWith is resumerAnHourAhead with crash as the
// replica's CrashPoint.
func resumerAnHourAheadWith(t *testing.T, st orchestrator.Store, prov orchestrator.Provider, own orchestrator.Request,
	crash func(*orchestrator.Transfer, string)) (*orchestrator.Engine, *manualClock) {
	t.Helper()
	ctx := context.Background()
	clock := newManualClock()
	clock.Advance(time.Hour)
	second, err := orchestrator.New(orchestrator.Config{Owner: "y", LeaseTTL: 2 * time.Second, Clock: clock.Now,
		PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond, VerifyTimeout: time.Hour,
		VisibilityWindow: 50 * time.Millisecond, StepTimeout: time.Second, CrashPoint: crash},
		st, []orchestrator.Provider{prov}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		clock.Run()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = second.Shutdown(ctx)
	})
	if err := second.Open(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := second.Start(ctx, own, orchestrator.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	return second, clock
}

// lapsingUpdates is failingUpdates calling lapse at the at-th refused
// save of an intent of step.
type lapsingUpdates struct {
	*failingUpdates
	step    string
	at      int32
	lapse   func()
	refused atomic.Int32
}

func (s *lapsingUpdates) Update(ctx context.Context, t *orchestrator.Transfer) error {
	if n := len(t.Steps); s.failing.Load() && n > 0 && t.Steps[n-1].Name == s.step && t.Steps[n-1].Status == orchestrator.StepStarted &&
		s.refused.Add(1) == s.at {
		s.lapse()
	}
	return s.failingUpdates.Update(ctx, t)
}
