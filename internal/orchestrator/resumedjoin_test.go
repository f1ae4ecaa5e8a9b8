package orchestrator_test

import (
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// TestAConsultAProcessBeforeMayHaveHungUpIsNotBlamedOnTheTarget's case
// past the join: the process before sent the join (its intent saved) and
// stopped, and the process that resumes the transfer finds the consult
// ended, the join not taken, while it completes. That process may have
// hung the consult up without a record as well as the target may have,
// and no reading tells the two apart: the end is reported for an unknown
// cause (consult_failed), as before the join, never target_hung_up
// (completing's whoEnded, found untested by the sixty-sixth pass's
// mutations).
func TestAConsultEndedUnderAResumedJoinIsNotBlamedOnTheTarget(t *testing.T) {
	st := memory.New()
	f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings)
	prov := &accountView{Fake: f}
	own := request("fake", "2000")
	own.Completion = orchestrator.CompletionManual
	second, clock := resumerAnHourAhead(t, st, prov, own)

	f.Defer(orchestratortest.MethodComplete, 1) // accepted, never applied
	sent, release := make(chan struct{}), make(chan struct{})
	first := replicaWith(t, orchestrator.Config{Owner: "x", LeaseTTL: 2 * time.Second, VerifyTimeout: time.Hour,
		CrashPoint: func(_ *orchestrator.Transfer, p string) {
			if p == orchestrator.StepTransfer+":effect" {
				close(sent)
				<-release // the process is dead from here on
			}
		}}, st, f)
	t.Cleanup(func() { close(release) }) // before first shuts down
	tr := startCompleted(t, first, f)
	<-sent
	f.HangupTarget(tr.ID)
	clock.Run()
	end := waitFor(t, second, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if end.Outcome == nil || end.Outcome.Reason != orchestrator.ReasonConsultFailed || !end.Outcome.CallerRestored {
		t.Errorf("%s %+v; want consult_failed, the caller restored", end.State, end.Outcome)
	}
	if end.Sent.Join.IsZero() {
		t.Error("the record resumed carried no join: not the case under test")
	}
}

// A transfer this replica resumed, whose consult a reading showed live a
// visibility window after the adoption (its end from then on the
// target's: TestAConsultThatOutlivedTheAdoptionsWindowIsEndedByTheTarget),
// is taken over by another replica while this one cannot reach the store,
// and claimed back from it. The replica that had it may have hung the
// consult up without a record: the claim back is an adoption like the
// first, and the consult found ended within a window of it is reported
// for an unknown cause (consult_failed), not on the first adoption's
// reading as the target's (process resets outlived; the sixty-sixth
// pass's mutation O7 found this untested).
func TestAConsultThatOutlivedOneAdoptionIsInDoubtAgainAfterAClaimBack(t *testing.T) {
	st := memory.New()
	f := orchestratortest.NewFake("fake")
	prov := &accountView{Fake: f}
	clock := newManualClock()
	clock.Run()
	c := clockedReplica(t, "c", clock, time.Hour, st, prov, nil)
	tr := crashedConsultOn(t, clock, st, f)
	openAll(t, c)
	consultingOn(t, c, "2000") // c's own, so that its watcher reads the account all along
	waitFor(t, c, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "c" && saysStep(x, "resumed by c") })
	clock.Advance(2 * time.Hour) // c's window
	eventually(t, "a reading of the consult live once the window passed", func() bool {
		orchestrator.Wake(c, tr.ID)
		return orchestrator.Outlived(c, tr.ID)
	})

	// Another replica's claim and c's claim back, as the store makes them
	// (oldest first: tr alone); what that replica sent is not on record.
	back, err := st.Claim(t.Context(), "c", "", clock.Now(), true, 1)
	if err != nil || len(back) != 1 || back[0].ID != tr.ID {
		t.Fatalf("Claim = %v, %v; want %s", back, err, tr.ID)
	}
	if !orchestrator.Reclaim(c, back[0]) {
		t.Fatal("c no longer held the transfer")
	}
	waitFor(t, c, tr.ID, func(x *orchestrator.Transfer) bool { return x.Version >= back[0].Version })
	f.HangupTarget(tr.ID) // or that replica's hang-up: no reading tells them apart
	end := wokenUntilEnded(t, c, tr.ID, "the transfer ended")
	if end.Outcome == nil || end.Outcome.Reason != orchestrator.ReasonConsultFailed || !end.Outcome.CallerRestored {
		t.Errorf("%s %+v; want consult_failed, the caller restored", end.State, end.Outcome)
	}
}
