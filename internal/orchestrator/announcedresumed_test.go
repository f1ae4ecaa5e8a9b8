package orchestrator_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// announcedResumedByB has replica a stop (for good) once its transfer, of
// mode (announced unless attended), is consulting, its consult ringing,
// and replica b, whose window
// is an hour, take it from a as from a crash. before runs once a has
// stopped, before b looks. It returns b, the fake, the clock and the
// transfer, once b has resumed it.
func announcedResumedByB(t *testing.T, attended bool, before func(f *orchestratortest.Fake, id string)) (*orchestrator.Engine, *orchestratortest.Fake, *manualClock, *orchestrator.Transfer) {
	t.Helper()
	st := memory.New()
	f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings)
	clock := newManualClock()
	clock.Run()
	hit, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	a := clockedReplica(t, "a", clock, 50*time.Millisecond, st, f, func(_ *orchestrator.Transfer, p string) {
		if p == "state:"+string(orchestrator.StateConsulting) {
			once.Do(func() { close(hit) })
			<-release // a is dead from here on
		}
	})
	t.Cleanup(func() { close(release) }) // before a shuts down
	if _, err := st.Heartbeat(context.Background(), "a", "", clock.Now(), 30*time.Second, true); err != nil {
		t.Fatal(err)
	}
	r := request("fake", "1000")
	if !attended {
		r.Mode = orchestrator.ModeAnnounced
	}
	tr, err := a.Start(context.Background(), r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-hit
	if before != nil {
		before(f, tr.ID)
	}
	clock.Advance(time.Minute) // a's heartbeat
	b := clockedReplica(t, "b", clock, time.Hour, st, f, nil)
	openAll(t, b)
	waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "b" && saysStep(x, "resumed by b") })
	return b, f, clock, tr
}

// Found by the sixty-sixth pass's second engine review: where the provider
// connects the caller and the consult itself (announced), the consult's
// end may end the caller's call (Bandwidth ends it with a B-leg cancelled
// before the answer, which then reads as when the caller hangs up). A
// transfer resumed from a process that may have hung the consult up
// unrecorded, finding the caller's call ended before any reading a window
// after its adoption showed the consult live, reported the caller hung up
// (caller_hung_up); who ended it is unknown (consult_failed).
func TestACallerGoneWithAnAnnouncedConsultAProcessBeforeMayHaveHungUpIsNotBlamed(t *testing.T) {
	// The fake's caller hangs up, which ends the announced consult with it:
	// read as Bandwidth shows a B-leg cancelled by the process before.
	b, _, _, tr := announcedResumedByB(t, false, func(f *orchestratortest.Fake, id string) { f.HangupCaller(id) })
	end := wokenUntilEnded(t, b, tr.ID, "the transfer ended")
	if end.Outcome == nil || end.Outcome.Reason == orchestrator.ReasonCallerHungUp {
		t.Fatalf("%s %+v: the caller was blamed for an end a hang-up of the process before may have caused", end.State, end.Outcome)
	}
	if end.Outcome.Reason != orchestrator.ReasonConsultFailed || end.Outcome.CallerRestored {
		t.Fatalf("%s %+v; want consult_failed, the caller not restored", end.State, end.Outcome)
	}
}

// The other side: once a reading a window after the adoption showed the
// announced consult live, a hang-up of the process before has landed
// without ending it, and a caller's call ended after that is the caller
// hanging up.
func TestACallerGoneAfterTheAnnouncedConsultOutlivedTheAdoptionHungUp(t *testing.T) {
	b, f, clock, tr := announcedResumedByB(t, false, nil)
	clock.Advance(2 * time.Hour) // b's window
	eventually(t, "a reading by b of the consult live once its window passed", func() bool {
		orchestrator.Wake(b, tr.ID)
		return orchestrator.Outlived(b, tr.ID)
	})
	f.HangupCaller(tr.ID)
	end := wokenUntilEnded(t, b, tr.ID, "the transfer ended")
	if end.Outcome == nil || end.Outcome.Reason != orchestrator.ReasonCallerHungUp {
		t.Fatalf("%s %+v; want caller_hung_up", end.State, end.Outcome)
	}
}

// A caller's call read ended next to an announced consult still ringing
// ended first: a hang-up of the consult would have ended the consult
// first. The caller hung up, whatever the process before sent.
func TestACallerGoneBesideARingingAnnouncedConsultHungUp(t *testing.T) {
	b, _, _, tr := announcedResumedByB(t, false, func(f *orchestratortest.Fake, id string) { f.SetCaller(id, orchestrator.CallerGone) })
	end := wokenUntilEnded(t, b, tr.ID, "the transfer ended")
	if end.Outcome == nil || end.Outcome.Reason != orchestrator.ReasonCallerHungUp {
		t.Fatalf("%s %+v; want caller_hung_up", end.State, end.Outcome)
	}
}

// Where the caller is held apart from the consult (attended), no hang-up
// of the consult ends the caller's call: a resumed transfer that finds it
// ended, its consult not shown, reports the caller hung up.
func TestAResumedAttendedTransfersCallerGoneHungUp(t *testing.T) {
	b, _, _, tr := announcedResumedByB(t, true, func(f *orchestratortest.Fake, id string) {
		f.SetCaller(id, orchestrator.CallerGone)
		f.HideConsult(id, 1) // b's first reading shows no consult
	})
	// The recovery then waits b's window of an hour for its hang-up: the
	// failure it recovers from says what the outcome will.
	got := waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.Failure != nil || x.State.Terminal() })
	if got.Failure == nil || got.Failure.Reason != orchestrator.ReasonCallerHungUp {
		t.Fatalf("%s %+v; want failed for caller_hung_up", got.State, got.Failure)
	}
}

// Left by the sixty-sixth pass's second engine review, found by the
// sixty-seventh pass's engine review: the same doubt once the target has
// answered. A cancel the process before sent while the consult rang, and
// the provider applied once it had answered, ends the caller connected to
// it (Bandwidth ends a connected A with its B-leg), and a reading that
// cannot show the caller connected first (a whisper) reads the caller's
// call ended. The transfer, moved to completing on the answer, reported
// the caller hung up (caller_hung_up); who ended the call is unknown
// (consult_failed).
func TestAnAnnouncedCallerGoneWhileCompletingAProcessBeforeMayHaveCancelledIsNotBlamed(t *testing.T) {
	b, f, clock, tr := announcedResumedByB(t, false, nil)
	f.Answer(tr.ID)
	waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.State == orchestrator.StateCompleting })
	// The late cancel, within b's window: the caller's call ends with
	// the consult, as the fake's caller hanging up ends it.
	f.HangupCaller(tr.ID)
	clock.Advance(2 * time.Hour) // b's window, which completing waits out before it reports
	end := wokenUntilEnded(t, b, tr.ID, "the transfer ended")
	if end.Outcome == nil || end.Outcome.Reason == orchestrator.ReasonCallerHungUp {
		t.Fatalf("%s %+v: the caller was blamed for an end a cancel of the process before may have caused", end.State, end.Outcome)
	}
	if end.Outcome.Reason != orchestrator.ReasonConsultFailed || end.Outcome.CallerRestored {
		t.Fatalf("%s %+v; want consult_failed, the caller not restored", end.State, end.Outcome)
	}
}

// The other side: a transfer no process before this one drove has no
// unrecorded cancel to doubt, and its caller whose call ends while it
// completes hung up (caller_hung_up). The reading that shows the answer
// shows the caller not connected yet (a whisper playing), so completing
// is where the caller's end is read.
func TestAnAnnouncedCallerGoneWhileCompletingATransferNotResumedHungUp(t *testing.T) {
	st := memory.New()
	f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings)
	clock := newManualClock()
	clock.Run()
	e := clockedReplica(t, "a", clock, time.Hour, st, f, nil)
	openAll(t, e)
	var answer atomic.Bool
	f.Before(orchestratortest.MethodObserve, func(r orchestratortest.Record) {
		if answer.CompareAndSwap(true, false) {
			f.Answer(r.TransferID)
			f.SetCaller(r.TransferID, orchestrator.CallerHeld)
		}
	})
	r := request("fake", "1000")
	r.Mode = orchestrator.ModeAnnounced
	tr, err := e.Start(context.Background(), r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, tr.ID, func(x *orchestrator.Transfer) bool { return x.State == orchestrator.StateConsulting })
	answer.Store(true)
	orchestrator.Wake(e, tr.ID)
	waitFor(t, e, tr.ID, func(x *orchestrator.Transfer) bool { return x.State == orchestrator.StateCompleting })
	f.HangupCaller(tr.ID)
	end := wokenUntilEnded(t, e, tr.ID, "the transfer ended")
	if end.Outcome == nil || end.Outcome.Reason != orchestrator.ReasonCallerHungUp {
		t.Fatalf("%s %+v; want caller_hung_up", end.State, end.Outcome)
	}
}

// The other side of whoHungUp's doubt, checked by the sixty-seventh
// pass's second engine review: a transfer handed over by the replica that
// created it carries every request sent for it on record, and a replica
// that claims it has no hang-up of a process before to doubt. Its caller
// whose call ends, with the announced consult, while it consults or
// completes hung up (caller_hung_up), as on a transfer not resumed;
// consult_failed would say that an end nobody could have caused is
// unknown. In completing, the reading that shows the answer shows the
// caller not connected yet (a whisper playing).
func TestAnAnnouncedCallerGoneAfterAHandOverOnRecordHungUp(t *testing.T) {
	for _, state := range []orchestrator.State{orchestrator.StateConsulting, orchestrator.StateCompleting} {
		t.Run(string(state), func(t *testing.T) {
			st := memory.New()
			f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings)
			clock := newManualClock()
			clock.Run()
			a := clockedReplica(t, "a", clock, time.Hour, st, f, nil)
			b := clockedReplica(t, "b", clock, time.Hour, st, f, nil)
			openAll(t, a, b)
			var answer atomic.Bool
			f.Before(orchestratortest.MethodObserve, func(r orchestratortest.Record) {
				if answer.CompareAndSwap(true, false) {
					f.Answer(r.TransferID)
					f.SetCaller(r.TransferID, orchestrator.CallerHeld)
				}
			})
			r := request("fake", "1000")
			r.Mode = orchestrator.ModeAnnounced
			tr, err := a.Start(context.Background(), r, orchestrator.StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, a, tr.ID, func(x *orchestrator.Transfer) bool { return x.State == orchestrator.StateConsulting })
			if err := shutdownWithin(a); err != nil {
				t.Fatalf("Shutdown a: %v", err)
			}
			got := waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "b" && saysStep(x, "resumed by b") })
			if !saysStep(got, "is on record") {
				t.Fatalf("steps %+v: b took the transfer without a's hand-over on record", got.Steps)
			}
			if state == orchestrator.StateCompleting {
				answer.Store(true)
				orchestrator.Wake(b, tr.ID)
				waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.State == orchestrator.StateCompleting })
			}
			f.HangupCaller(tr.ID)
			end := wokenUntilEnded(t, b, tr.ID, "the transfer ended")
			if end.Outcome == nil || end.Outcome.Reason != orchestrator.ReasonCallerHungUp {
				t.Fatalf("%s %+v; want caller_hung_up", end.State, end.Outcome)
			}
		})
	}
}

// Mutant of whoHungUp's live-consult condition, answered side, killed by
// the sixty-seventh pass's second engine review (its ringing side is
// TestACallerGoneBesideARingingAnnouncedConsultHungUp): a caller's call
// read ended next to an announced consult still answered was not ended
// by a hang-up of the consult, which would have ended the consult first.
// The caller hung up, whatever the process before sent.
func TestACallerGoneBesideAnAnsweredAnnouncedConsultHungUp(t *testing.T) {
	b, _, _, tr := announcedResumedByB(t, false, func(f *orchestratortest.Fake, id string) {
		f.Answer(id)
		f.SetCaller(id, orchestrator.CallerGone)
	})
	end := wokenUntilEnded(t, b, tr.ID, "the transfer ended")
	if end.Outcome == nil || end.Outcome.Reason != orchestrator.ReasonCallerHungUp {
		t.Fatalf("%s %+v; want caller_hung_up", end.State, end.Outcome)
	}
}
