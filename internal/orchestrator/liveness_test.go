package orchestrator_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// livenessVerify is the verification patience of the liveness tests: far
// longer than any of them runs, on a clock that moves only when they move
// it.
const livenessVerify = time.Minute

// recoveryResumedLate drives a transfer whose dial the provider refuses
// into its recovery, stops its process at point, moves the clock past the
// recovery's verification patience (counted from the recovery's start),
// as processes stopped one after another, each sooner, would have, and
// resumes the transfer in a new process. It returns the store, the
// transfer's id, and the record the stop left.
func recoveryResumedLate(t *testing.T, f *orchestratortest.Fake, clock *manualClock, point string) (
	st *recStore, id string, left *orchestrator.Transfer) {
	t.Helper()
	cfg := orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		StepTimeout: time.Second, VerifyTimeout: livenessVerify, VisibilityWindow: stormWindowShort,
		TombstoneTTL: stormWindowShort, Clock: clock.Now}
	f.FailOn(orchestratortest.MethodDial, orchestrator.E("fake.Dial", orchestrator.KindProviderRejected,
		errors.New("HTTP 400: refused")), 1)
	st = &recStore{Store: memory.New(), saved: make(chan struct{})}
	release, hit := make(chan struct{}), make(chan struct{})
	var once sync.Once
	crash := func(_ *orchestrator.Transfer, pt string) {
		if pt != point {
			return
		}
		once.Do(func() {
			clock.Advance(livenessVerify + time.Second)
			close(hit)
		})
		<-release // stopped from here on
	}
	cfg.Owner, cfg.CrashPoint = "x", crash
	first := testEngine(t, cfg, st, f, nil)
	// After the engine's own cleanup is registered, so run before it: its
	// Close waits for the blocked worker.
	t.Cleanup(func() { close(release) })
	tr, err := first.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-hit
	if left, err = st.Get(context.Background(), tr.ID); err != nil {
		t.Fatal(err)
	}
	if left.State != orchestrator.StateRecovering || left.Sent.Unhold.IsZero() {
		t.Fatalf("stopped in %s, unhold decided at %v: want recovering, the unhold decided", left.State, left.Sent.Unhold)
	}
	cfg.CrashPoint = nil
	second := testEngine(t, cfg, st, f, nil)
	if err := second.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st, tr.ID, left
}

// Found by the liveness review (sixty-eighth pass): the recovery's
// verification patience (TRANSFERD_VERIFY_TIMEOUT, how long it waits to
// see the caller back before it ends the transfer unverified and leaves the
// rest to the sweeper) ran from when this process took the transfer up,
// in memory only. Processes stopped one after another, each sooner than
// the patience, each began it again: a recovery the provider could not be
// read about never ended, the transfer recovering for as long as the
// stops went on, its cleanup never handed to the sweeper. Here the
// processes before stopped with the recovery's unhold sent and saved,
// past the patience counted from the recovery's start (the record's
// StateAt); the provider cannot be read. The process that resumes it has
// nothing of its own to wait for: it ends it unverified, with a cleanup
// obligation, on its first reading, where it began the patience over.
func TestARecoveryResumedPastItsPatienceEndsUnverified(t *testing.T) {
	clock := newManualClock()
	f := orchestratortest.NewFake("fake")
	f.FailOn(orchestratortest.MethodObserve, orchestrator.E("fake.Observe", orchestrator.KindProviderUnavailable,
		errors.New("HTTP 503")), -1)
	st, id, _ := recoveryResumedLate(t, f, clock, orchestrator.StepUnhold+":result")
	end := st.waitSaved(t, id, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if end.State != orchestrator.StateFailed || end.Outcome == nil || end.Outcome.Verified || end.Cleanup == nil {
		t.Fatalf("%s, outcome %+v, cleanup %+v: want failed unverified, the rest left to the sweeper",
			end.State, end.Outcome, end.Cleanup)
	}
}

// The other side of the same change: a process resuming a recovery past
// its patience that owes the caller an unhold of its own (the process
// before stopped as it was about to send it) still waits for a reading
// that can show it, a visibility window after it was answered, and
// reports the caller given back, verified. Here the PBX applies the
// unhold late: readings taken first show the caller still held. Ended on
// them, the transfer was reported unverified, the caller not restored.
func TestARecoveryResumedPastItsPatienceWaitsForItsOwnUnhold(t *testing.T) {
	clock := newManualClock()
	f := orchestratortest.NewFake("fake")
	f.Defer(orchestratortest.MethodUnhold, 1)
	// The readings that show the caller held: three begun after the
	// resumed process's unhold was sent, within its visibility window; the
	// unhold is applied at the fourth, with the clock moved past it.
	var unholds, after atomic.Int32
	f.Before(orchestratortest.MethodUnhold, func(orchestratortest.Record) {
		// Readings begun from here on are taken after the unhold was
		// decided, and so count, before it can show.
		clock.Advance(stormWindowShort / 4)
		unholds.Add(1)
	})
	f.Before(orchestratortest.MethodObserve, func(r orchestratortest.Record) {
		if unholds.Load() == 0 || f.Deferred(r.TransferID) == 0 {
			return
		}
		if after.Add(1) == 4 {
			clock.Advance(2 * stormWindowShort)
			f.ApplyDeferred(r.TransferID)
		}
	})
	st, id, left := recoveryResumedLate(t, f, clock, orchestrator.StepUnhold+":intent")
	if unholds.Load() != 0 || !left.Sent.Hold.After(time.Time{}) {
		t.Fatalf("%d unholds before the stop: want none", unholds.Load())
	}
	end := st.waitSaved(t, id, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if end.Outcome == nil || !end.Outcome.Verified || !end.Outcome.CallerRestored {
		t.Fatalf("%s, outcome %+v: want the caller given back, verified", end.State, end.Outcome)
	}
}

// And a process resuming a recovery past its patience, with nothing left
// to send, still reports what its first reading shows: here the caller
// back, verified, rather than unverified before it read anything.
func TestARecoveryResumedPastItsPatienceJudgesOnAReadingOfItsOwn(t *testing.T) {
	clock := newManualClock()
	f := orchestratortest.NewFake("fake")
	st, id, _ := recoveryResumedLate(t, f, clock, orchestrator.StepUnhold+":result")
	end := st.waitSaved(t, id, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if end.Outcome == nil || !end.Outcome.Verified || !end.Outcome.CallerRestored {
		t.Fatalf("%s, outcome %+v: want the caller given back, verified", end.State, end.Outcome)
	}
	if n := len(f.ActionsFor(id)); n == 0 || f.ActionsFor(id)[n-1] != orchestratortest.MethodUnhold {
		t.Errorf("actions %q: want the unhold last", f.ActionsFor(id))
	}
}

// Found by the same review: the patience of a step that changes nothing
// yet (a hold the provider answers 503, TRANSFERD_STEP_TIMEOUT) ran from
// its first failure in this process (entry.firstTry), in memory only.
// Processes stopped one after another, each sooner than the patience,
// each began it again: a hold failing for good was tried for as long as
// the stops went on, the transfer holding, its caller held if a hold had
// taken, never given back. Here the process before tried the hold, failed,
// and stopped; the next tries it past the patience counted from that first
// try, fails, and gives up: the transfer fails and the caller is given
// back, where it began the patience over.
func TestAHoldResumedPastItsPatienceIsGivenUp(t *testing.T) {
	clock := newManualClock()
	cfg := orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		StepTimeout: time.Second, VerifyTimeout: livenessVerify, VisibilityWindow: stormWindowShort,
		TombstoneTTL: stormWindowShort, Clock: clock.Now}
	f := orchestratortest.NewFake("fake")
	f.FailOn(orchestratortest.MethodHold, orchestrator.E("fake.Hold", orchestrator.KindProviderUnavailable,
		errors.New("HTTP 503")), -1)
	// The recovery's readings count once begun after its unhold, and its
	// hold's window, on a clock that moves only here.
	f.Before(orchestratortest.MethodUnhold, func(orchestratortest.Record) { clock.Advance(2 * stormWindowShort) })
	var holds atomic.Int32
	f.Before(orchestratortest.MethodHold, func(orchestratortest.Record) { holds.Add(1) })
	stop := func(_ *orchestrator.Transfer, pt string) bool { return pt == orchestrator.StepHold+":result" }
	end, left := stopAndResume(t, f, cfg, stop, func(*orchestrator.Transfer) { clock.Advance(cfg.StepTimeout + time.Second) })
	if left.State != orchestrator.StateHolding {
		t.Fatalf("stopped in %s: want holding", left.State)
	}
	if end.State != orchestrator.StateFailed || end.Outcome == nil || !end.Outcome.CallerRestored {
		t.Fatalf("%s, outcome %+v: want failed, the caller given back", end.State, end.Outcome)
	}
	if n := holds.Load(); n != 2 {
		t.Errorf("%d holds: want two, one a process", n)
	}
}

// livenessConfig is the configuration of the liveness tests that stop a
// process and resume its transfer past a patience: a step timeout of a
// second and a verification patience of a minute on clock.
func livenessConfig(clock *manualClock) orchestrator.Config {
	return orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		StepTimeout: time.Second, VerifyTimeout: livenessVerify, VisibilityWindow: stormWindowShort,
		TombstoneTTL: stormWindowShort, Clock: clock.Now}
}

// stoppedAfterFailed stops a process right after the save of a failed
// step called name.
func stoppedAfterFailed(name string) func(*orchestrator.Transfer, string) bool {
	return func(tr *orchestrator.Transfer, pt string) bool {
		if pt != name+":result" {
			return false
		}
		s := tr.Steps[len(tr.Steps)-1]
		return s.Name == name && s.Status == orchestrator.StepFailed
	}
}

// A join the provider fails for good, in processes stopped one after
// another each sooner than the step timeout: its patience counted from
// this process's first failure, each process sent it again, and the
// transfer stayed completing, the caller held beside the consult, for as
// long as the stops went on. It counts from the first failure on record,
// whichever process saw it; the transfer is given up and the caller given
// back. Held back (ErrNotSent), the join is still sent once by the
// resumed process; failed on the way, it may have gone out, and it is
// judged by readings, as it would have been by the process that sent it.
func TestAJoinResumedPastItsPatienceIsGivenUp(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		joins int32
	}{
		{"failed on the way", orchestrator.E("fake.Complete", orchestrator.KindProviderUnavailable, errors.New("HTTP 503")), 1},
		{"held back", notSentErr(), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Real time, moved on at the stop as processes stopped one
			// after another, each sooner, would have moved it.
			clock := newManualClock()
			clock.Run()
			cfg := livenessConfig(clock)
			f := orchestratortest.NewFake("fake")
			f.FailOn(orchestratortest.MethodComplete, tc.err, -1)
			var joins atomic.Int32
			f.Before(orchestratortest.MethodComplete, func(orchestratortest.Record) {
				if joins.Add(1) == tc.joins+1 {
					t.Errorf("join %d: the resumed process went on sending a join past its patience", tc.joins+1)
				}
			})
			// Past the step timeout since the first failure, and past the
			// verification of the join that failed on the way.
			end, left := stopAndResume(t, f, cfg, stoppedAfterFailed(orchestrator.StepTransfer),
				func(*orchestrator.Transfer) { clock.Advance(cfg.StepTimeout + livenessVerify + time.Second) })
			if left.State != orchestrator.StateCompleting {
				t.Fatalf("stopped in %s: want completing", left.State)
			}
			if end.State != orchestrator.StateFailed || end.Outcome == nil || !end.Outcome.CallerRestored {
				t.Fatalf("%s, outcome %+v: want failed, the caller given back", end.State, end.Outcome)
			}
			if n := joins.Load(); n != tc.joins {
				t.Errorf("%d joins: want %d", n, tc.joins)
			}
			if c, _ := f.State(end.ID); c.Caller != orchestrator.CallerConnected {
				t.Errorf("the provider shows the caller %s: want back with the agent", c.Caller)
			}
		})
	}
}

// The agent's hang-up after the join (Bandwidth's flow), failed for good
// in processes stopped one after another each sooner than the step
// timeout: each process began its patience again, and the transfer stayed
// completing, the caller with the target, for as long as the stops went
// on. The resumed process counts from the first try on record and tries
// once; the transfer completes, and its outcome says the agent's call
// could not be hung up.
func TestAnAgentHangupResumedPastItsPatienceCompletes(t *testing.T) {
	clock := newManualClock()
	clock.Run()
	cfg := livenessConfig(clock)
	f := orchestratortest.NewFake("fake").SetFlow(orchestrator.Flow{Hold: true, Join: true, HangupAgent: true})
	f.FailOn(orchestratortest.MethodHangupAgent, orchestrator.E("fake.HangupAgent",
		orchestrator.KindProviderUnavailable, errors.New("HTTP 500 internal-server-error")), -1)
	var hangups atomic.Int32
	f.Before(orchestratortest.MethodHangupAgent, func(orchestratortest.Record) {
		if hangups.Add(1) == 3 {
			t.Error("hang-up 3: the resumed process went on sending it past its patience")
		}
	})
	end, left := stopAndResume(t, f, cfg, stoppedAfterFailed(orchestrator.StepHangupAgent),
		func(*orchestrator.Transfer) { clock.Advance(cfg.StepTimeout + time.Second) })
	if left.State != orchestrator.StateCompleting {
		t.Fatalf("stopped in %s: want completing", left.State)
	}
	if end.State != orchestrator.StateCompleted || end.Outcome == nil || !end.Outcome.Verified {
		t.Fatalf("%s, outcome %+v: want completed, verified", end.State, end.Outcome)
	}
	if d := end.Outcome.Detail; !strings.Contains(d, "could not be hung up") {
		t.Errorf("outcome detail %q: want the agent's call said not hung up", d)
	}
	if n := hangups.Load(); n != 2 {
		t.Errorf("%d hang-ups: want two, one a process", n)
	}
}

// The patience of a join that failed on the way starts over at a join the
// provider accepted, in a process that took the transfer up as in the one
// that saw it: the first form failed on the way, was sent again and
// accepted but did not take, and the second form failed on the way; the
// process stopped. The resumed process counts from the second form's
// failure, not the first form's a step timeout before it, and sends the
// second form again, which the PBX takes.
func TestAResumedJoinsPatienceStartsOverAtAnAcceptedJoin(t *testing.T) {
	clock := newManualClock()
	clock.Run()
	cfg := livenessConfig(clock)
	// Far longer than the test takes, so that real time cannot use it up.
	cfg.StepTimeout = time.Minute
	p := &formPBX{Fake: orchestratortest.NewFake("fake"), wantSecond: true, failNth: 1, failAgainNth: 3}
	var accepted atomic.Int32
	p.Before(orchestratortest.MethodComplete, func(orchestratortest.Record) {
		if accepted.Add(1) == 1 {
			// The first form's second try is accepted a step timeout
			// after the first failed.
			clock.Advance(cfg.StepTimeout)
		}
	})
	stop := func(tr *orchestrator.Transfer, pt string) bool {
		return stoppedAfterFailed(orchestrator.StepTransfer)(tr, pt) && !tr.Sent.JoinFirst.IsZero()
	}
	end, left := stopAndResume(t, p, cfg, stop, nil)
	if left.State != orchestrator.StateCompleting {
		t.Fatalf("stopped in %s: want completing", left.State)
	}
	assertJoinedAfter(t, p, end, []bool{false, false, true, true})
}

// Found by the second review of the resumed join's patience (sixty-ninth
// pass): a join that failed on the way starts its patience, in the
// process that saw the failure, at the first reading that shows it did
// not take (where that process sends it again), not at the failure: the
// join may yet apply until then. The resumed process counted from the
// failure all the same, as much as a visibility window and however long
// the provider took to be read earlier, and gave up a join the process
// before would still have sent again. Here the first failure is read
// late (0.9 of the step timeout after it), sent again and failed on the
// way once more; the process stops and is down a fifth of the step
// timeout. Counted from the failure, the patience is over and the
// caller is given back; counted from the reading the process before
// counted from, it is not, and the join is sent again, and taken.
func TestAResumedJoinsPatienceStartsAtTheReadingThatShowedItNotTaken(t *testing.T) {
	clock := newManualClock()
	clock.Run()
	cfg := livenessConfig(clock)
	// Far longer than the test takes, so that real time cannot use it up.
	cfg.StepTimeout = time.Minute
	// Over by the time the resumed process reads the second failure: the
	// transfer is failed at once where the join is not sent again.
	cfg.VerifyTimeout = cfg.StepTimeout / 10
	f := orchestratortest.NewFake("fake")
	f.FailOn(orchestratortest.MethodComplete, orchestrator.E("fake.Complete", orchestrator.KindProviderUnavailable,
		errors.New("HTTP 503")), 2)
	var joins atomic.Int32
	f.Before(orchestratortest.MethodComplete, func(orchestratortest.Record) { joins.Add(1) })
	failed := 0 // the first engine's worker alone reaches crash points
	stop := func(tr *orchestrator.Transfer, pt string) bool {
		if !stoppedAfterFailed(orchestrator.StepTransfer)(tr, pt) {
			return false
		}
		if failed++; failed == 1 {
			// No reading shows the first failure until long after it.
			clock.Advance(cfg.StepTimeout * 9 / 10)
			return false
		}
		return true
	}
	end, left := stopAndResume(t, f, cfg, stop, func(*orchestrator.Transfer) { clock.Advance(cfg.StepTimeout / 5) })
	if left.State != orchestrator.StateCompleting {
		t.Fatalf("stopped in %s: want completing", left.State)
	}
	if end.State != orchestrator.StateCompleted {
		t.Fatalf("%s, outcome %+v: want completed, the join sent again", end.State, end.Outcome)
	}
	if n := joins.Load(); n != 3 {
		t.Errorf("%d joins: want three", n)
	}
}

// A process that drove the transfer from its start counts the patience of
// a join that failed on the way from the first reading that showed it not
// taken, whenever that reading comes: nothing of the record is taken into
// it (resumedJoinFirstTry is a resumed process's only). Here no reading
// shows the failure until past a step timeout after it; the join is sent
// again, and taken.
func TestALiveJoinsPatienceStartsAtItsOwnReading(t *testing.T) {
	clock := newManualClock()
	clock.Run()
	cfg := livenessConfig(clock)
	// Far longer than the test takes, so that real time cannot use it up.
	cfg.StepTimeout = time.Minute
	cfg.VerifyTimeout = 2 * cfg.StepTimeout
	f := orchestratortest.NewFake("fake")
	f.FailOn(orchestratortest.MethodComplete, orchestrator.E("fake.Complete", orchestrator.KindProviderUnavailable,
		errors.New("HTTP 503")), 1)
	var joins atomic.Int32
	f.Before(orchestratortest.MethodComplete, func(orchestratortest.Record) { joins.Add(1) })
	var once sync.Once
	cfg.Owner, cfg.CrashPoint = "x", func(tr *orchestrator.Transfer, pt string) {
		if stoppedAfterFailed(orchestrator.StepTransfer)(tr, pt) {
			once.Do(func() { clock.Advance(cfg.StepTimeout + time.Second) })
		}
	}
	st := &recStore{Store: memory.New(), saved: make(chan struct{})}
	e := testEngine(t, cfg, st, f, nil)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := st.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	if end.State != orchestrator.StateCompleted {
		t.Fatalf("%s, outcome %+v: want completed, the join sent again", end.State, end.Outcome)
	}
	if n := joins.Load(); n != 2 {
		t.Errorf("%d joins: want two", n)
	}
}
