package orchestrator_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// stoppedBeats fails every heartbeat once stopped is set: the replica on
// it is cut off from the store, its lease lapses, and the others take its
// transfers as a dead replica's.
type stoppedBeats struct {
	orchestrator.Store
	stopped atomic.Bool
}

func (s *stoppedBeats) Heartbeat(ctx context.Context, owner, token string, now time.Time, ttl time.Duration, take bool) (bool, error) {
	if s.stopped.Load() {
		return false, orchestrator.E("test.Heartbeat", orchestrator.KindUnavailable, errors.New("cut off"))
	}
	return s.Store.Heartbeat(ctx, owner, token, now, ttl, take)
}

// Checked by the second review of the sixty-fifth pass's engine fixes: a
// hand-over that says every request sent for the transfer is on record
// vouches for its own replica only. The replica that claimed it (no wait)
// dies, the one that takes the transfer from that crash hands it over
// within its window, and the next replica still waits a window from that
// one's resumption before the join: the dead replica may have hung the
// consult up unrecorded, and the second hand-over, made with an
// adoption's wait of its own, does not say otherwise.
func TestACrashAfterAHandOverOnRecordStillWaitsTheWindow(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	f := orchestratortest.NewFake("fake")
	prov := &accountView{Fake: f}
	clock := newManualClock()
	clock.Run()
	cut := &stoppedBeats{Store: st}
	// c's window is an hour: only a jump of the clock ends a wait for it.
	c := clockedReplica(t, "c", clock, time.Hour, st, prov, nil)
	b := clockedReplica(t, "b", clock, 50*time.Millisecond, st, f, nil)
	a := clockedReplica(t, "a", clock, 50*time.Millisecond, cut, f, nil)
	z := clockedReplica(t, "z", clock, 50*time.Millisecond, st, f, nil)
	openAll(t, z, a)

	tr := consultingOn(t, z, "1000")
	if err := shutdownWithin(z); err != nil {
		t.Fatalf("Shutdown z: %v", err)
	}
	got := waitFor(t, a, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "a" && saysStep(x, "resumed by a") })
	if !saysStep(got, "every request sent for it is on record") {
		t.Fatalf("steps %+v: z's hand-over does not say that every request was on record", got.Steps)
	}
	// a is cut off: its heartbeat runs out on the clock of the others.
	cut.stopped.Store(true)
	clock.Advance(time.Minute)
	openAll(t, b)
	waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "b" && saysStep(x, "resumed by b") })
	openAll(t, c)
	// A consult of c's own, so that its watcher reads the account all
	// along.
	consultingOn(t, c, "2000")
	if err := shutdownWithin(b); err != nil {
		t.Fatalf("Shutdown b: %v", err)
	}
	got = waitFor(t, c, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "c" && saysStep(x, "resumed by c") })
	if i := slices.IndexFunc(got.Steps, func(s orchestrator.Step) bool { return s.Detail == "resumed by b" }); i < 0 ||
		saysStep(&orchestrator.Transfer{Steps: got.Steps[i:]}, "on record") {
		t.Errorf("steps %+v: b's hand-over, made from a crash within its window, says every request was on record", got.Steps)
	}
	if _, err := c.Complete(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	if joinedWithin(t, f, prov, tr.ID) {
		t.Fatalf("actions %q: the join was sent while a hang-up of the replica that died could still land", f.ActionsFor(tr.ID))
	}
	completesOnceTheWindowPassed(t, clock, c, f, tr.ID)
}

// Checked by the second review of the sixty-fifth pass's engine fixes: a
// transfer taken from a crash whose consult ends within the adoption's
// window for a reason no hang-up of ours produces (busy, rejected, no
// answer) keeps it: only a blame on the target (target_hung_up) is made
// consult_failed there (whoEnded).
func TestAResumedTransfersConsultEndedBusyKeepsItsReason(t *testing.T) {
	for _, tc := range []struct {
		target orchestratortest.Target
		want   orchestrator.Reason
	}{
		{orchestratortest.TargetBusy, orchestrator.ReasonBusy},
		{orchestratortest.TargetRejects, orchestrator.ReasonRejected},
		{orchestratortest.TargetNoAnswer, orchestrator.ReasonNoAnswer},
	} {
		t.Run(string(tc.want), func(t *testing.T) {
			ctx := context.Background()
			st := memory.New()
			f := orchestratortest.NewFake("fake").SetTarget(tc.target)
			clock := newManualClock()
			clock.Run()
			release := make(chan struct{})
			// a dies as it enters dialing: the record says holding, the
			// dial unsent.
			a := clockedReplica(t, "a", clock, 50*time.Millisecond, st, f, func(_ *orchestrator.Transfer, p string) {
				if p == "state:"+string(orchestrator.StateDialing) {
					<-release
				}
			})
			t.Cleanup(func() { close(release) }) // before a shuts down
			// c's window is an hour: the consult ends within it.
			c := clockedReplica(t, "c", clock, time.Hour, st, f, nil)
			// a is never Opened: its heartbeat, written here, is never
			// renewed, and runs out when the clock jumps.
			if _, err := st.Heartbeat(ctx, "a", "", clock.Now(), 30*time.Second, true); err != nil {
				t.Fatal(err)
			}
			r := request("fake", "1000")
			r.Completion = orchestrator.CompletionManual
			tr, err := a.Start(ctx, r, orchestrator.StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, "the caller held", func() bool { return slices.Contains(f.ActionsFor(tr.ID), "Hold") })
			clock.Advance(time.Minute)
			openAll(t, c)
			// Failed: the caller is given back (recovering, its unhold
			// judged a window later).
			end := waitFor(t, c, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "c" && x.Failure != nil })
			if end.Failure.Reason != tc.want {
				t.Fatalf("%s %+v; want %s", end.State, end.Failure, tc.want)
			}
			clock.Advance(2 * time.Hour) // the unhold's window
			wokenUntilEnded(t, c, tr.ID, "the transfer ended")
		})
	}
}

// Checked by the second review of the sixty-fifth pass's engine fixes: a
// caller who hangs up during the consult of a transfer taken from a crash,
// within the adoption's window, is reported as the caller's hang-up
// (whoEnded widens only a blame on the target).
func TestAResumedTransfersCallerHangUpIsTheCallers(t *testing.T) {
	st := memory.New()
	f := orchestratortest.NewFake("fake")
	clock := newManualClock()
	clock.Run()
	c := clockedReplica(t, "c", clock, time.Hour, st, f, nil)
	tr := crashedConsultOn(t, clock, st, f)
	openAll(t, c)
	waitFor(t, c, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "c" && saysStep(x, "resumed by c") })
	if f.HangupCaller(tr.ID) != 1 {
		t.Fatal("the caller was not up")
	}
	end := waitFor(t, c, tr.ID, func(x *orchestrator.Transfer) bool { return x.Failure != nil })
	if end.Failure.Reason != orchestrator.ReasonCallerHungUp {
		t.Fatalf("%s %+v; want caller_hung_up", end.State, end.Failure)
	}
	clock.Advance(2 * time.Hour) // the window of what the end sends
	wokenUntilEnded(t, c, tr.ID, "the transfer ended")
}
