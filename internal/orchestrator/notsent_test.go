package orchestrator_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

func notSentErr() error {
	return orchestrator.NotSent(orchestrator.E("fake.Complete", orchestrator.KindProviderUnavailable,
		errors.New("HTTP 503 on the read the join needs first")))
}

// A join whose attempts fail NotSent (transient: a request the join needs
// first could not be made) is owed again, and sent once the failure
// passes; the transfer completes.
func TestJoinNotSentIsSentAgain(t *testing.T) {
	f := orchestratortest.NewFake("fake").FailOn(orchestratortest.MethodComplete, notSentErr(), 2)
	e, st := unknowableEngine(t, f)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := st.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	if end.State != orchestrator.StateCompleted || !end.Outcome.Verified {
		t.Fatalf("state %s outcome %+v: want completed, verified", end.State, end.Outcome)
	}
	n := 0
	for _, m := range f.ActionsFor(tr.ID) {
		if m == orchestratortest.MethodComplete {
			n++
		}
	}
	if n != 3 {
		t.Errorf("%d Complete calls, want 3 (two not sent, then the join)", n)
	}
}

// Found by a sixth review: the process died between the join step's
// failure save (which still carried Sent.Join, the intent's) and
// completing's save that cleared it for a NotSent error (crash point
// "transfer:result"). No request that could join them was sent. The
// resumed process took the saved Sent.Join for "a join may have happened"
// and never sent the join; the caller, who hung up meanwhile, got "the
// outcome cannot be verified", the very outcome NotSent exists to avoid.
// Now the failure's own save clears Sent.Join.
func TestJoinNotSentThenCrashKeepsTheOutcomeKnowable(t *testing.T) {
	f := orchestratortest.NewFake("fake").FailOn(orchestratortest.MethodComplete, notSentErr(), 1)
	stop := func(tr *orchestrator.Transfer, p string) bool {
		if p != "transfer:result" {
			return false
		}
		s := tr.Steps[len(tr.Steps)-1]
		return s.Name == orchestrator.StepTransfer && s.Status == orchestrator.StepFailed
	}
	end, _ := stopAndResume(t, f, fastConfig(200*time.Millisecond, stormWindowShort), stop,
		func(tr *orchestrator.Transfer) { f.HangupCaller(tr.ID) })
	if c, _ := f.State(end.ID); c.Caller == orchestrator.CallerTransferred {
		t.Fatal("setup: the join applied")
	}
	o := end.Outcome
	if !o.Verified || strings.Contains(o.Detail, "cannot be verified") {
		t.Errorf("no join request ever reached the provider, yet after a crash between the two saves the outcome is "+
			"unverifiable: state %s sent.join %v outcome %+v", end.State, end.Sent.Join, o)
	}
}
