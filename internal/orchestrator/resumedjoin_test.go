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
