package orchestrator_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// The agent's hang-up after the join (Bandwidth: the agent alone in the
// consult bridge once the target is with the caller) held back before it
// went out — the claim the adapter decided under ran out (ErrNotSent), or
// this replica's heartbeat lapsed — was never sent again: the transfer
// completed, verified, with the agent's call left up alone in a bridge of
// ours for good (the storm's invariant (f)). It is now sent again before
// the transfer completes.
func TestAnAgentHangupHeldBackIsSentAgainBeforeTheTransferCompletes(t *testing.T) {
	fake := orchestratortest.NewFake("fake").SetFlow(orchestrator.Flow{Hold: true, Join: true, HangupAgent: true})
	fake.FailOn(orchestratortest.MethodHangupAgent, orchestrator.NotSent(orchestrator.E("fake.HangupAgent",
		orchestrator.KindUnavailable, errors.New("the claim it was decided under ran out before it was written"))), 1)
	_, _, tr := completeOneWith(t, fake)
	if got, want := fake.ActionsFor(tr.ID), []string{locate, hold, dial, complete, orchestratortest.MethodHangupAgent, orchestratortest.MethodHangupAgent}; !slices.Equal(got, want) {
		t.Errorf("actions %q, want %q: the held-back hang-up sent again", got, want)
	}
	if d := tr.Outcome.Detail; strings.Contains(d, "could not be hung up") {
		t.Errorf("outcome detail %q: the agent's call was left up", d)
	}
	if last := tr.Steps[len(tr.Steps)-1]; last.Name != orchestrator.StepHangupAgent || last.Status != orchestrator.StepSucceeded {
		t.Errorf("last step %s %s, want hangup_agent succeeded", last.Name, last.Status)
	}
}

// The same hang-up answered with a provider error that may go away (a
// 500 or a dropped connection on each of the adapter's attempts) went
// into the outcome's detail, and the transfer completed with the agent's
// call up alone in a bridge of ours (the storm's invariant (f), CI seed 3).
// It is sent again, within the step's patience, before the transfer
// completes; a refusal still goes into the detail.
func TestAnAgentHangupThatFailedForNowIsSentAgainBeforeTheTransferCompletes(t *testing.T) {
	fake := orchestratortest.NewFake("fake").SetFlow(orchestrator.Flow{Hold: true, Join: true, HangupAgent: true})
	fake.FailOn(orchestratortest.MethodHangupAgent, orchestrator.E("fake.HangupAgent",
		orchestrator.KindProviderUnavailable, errors.New("HTTP 500 internal-server-error")), 1)
	_, _, tr := completeOneWith(t, fake)
	if got, want := fake.ActionsFor(tr.ID), []string{locate, hold, dial, complete, orchestratortest.MethodHangupAgent, orchestratortest.MethodHangupAgent}; !slices.Equal(got, want) {
		t.Errorf("actions %q, want %q: the failed hang-up sent again", got, want)
	}
	if d := tr.Outcome.Detail; strings.Contains(d, "could not be hung up") {
		t.Errorf("outcome detail %q: the agent's call was left up", d)
	}
}
