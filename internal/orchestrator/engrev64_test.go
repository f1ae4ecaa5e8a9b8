package orchestrator_test

import (
	"context"
	"slices"
	"testing"
	"time"

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
	for _, tc := range []struct {
		step   string // the step whose intent cannot be saved
		point  string // where the store starts refusing saves
		manual bool
		sent   string // the action of that step, never sent
	}{
		{orchestrator.StepDial, "hold:effect", false, dial},
		{orchestrator.StepTransfer, "state:completing", true, complete},
	} {
		t.Run(tc.step, func(t *testing.T) {
			ctx := context.Background()
			st := &failingUpdates{Store: memory.New()}
			f := orchestratortest.NewFake("fake")
			if tc.manual {
				f.SetTarget(orchestratortest.TargetRings)
			}
			e := replicaWith(t, orchestrator.Config{Owner: "a", LeaseTTL: 2 * time.Second, StepTimeout: 100 * time.Millisecond,
				VerifyTimeout: time.Hour, CrashPoint: func(_ *orchestrator.Transfer, p string) {
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
				waitFor(t, e, tr.ID, inState(orchestrator.StateConsulting))
				f.Answer(tr.ID)
				waitFor(t, e, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
				if _, err := e.Complete(ctx, tr.ID); err != nil {
					t.Fatal(err)
				}
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
