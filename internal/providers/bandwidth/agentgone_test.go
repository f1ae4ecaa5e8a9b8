package bandwidth_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// Found by a seventh review. The consult bridge b2 is not known to the transfer (the
// dial's result was never saved; a reading learnt T alone) and the agent
// hangs up: on a manual transfer that is exactly when the engine joins
// caller and target (Observation.AgentGone). completeAttended looks b2 up
// only through the agent's call (agentBridge), which is gone, and failed
// the join as an internal error ("the consult leg is not known") although
// T, still in b2, names its bridge. Now T's bridge is used.
func TestAgentGoneConsultBridgeUnknownJoins(t *testing.T) {
	h := setup(t, options{})
	ctx := context.Background()
	tr, a, g, first := dialUnsaved(t, h)
	if err := h.sim.Answer(target); err != nil {
		t.Fatal(err)
	}
	h.idle(t)
	if err := h.sim.Hangup(g.ID); err != nil {
		t.Fatal(err)
	}
	h.idle(t)
	tr.Legs.Consult = orchestrator.LegRef{CallID: first.CallID} // b2 not learnt
	tr.State, tr.Sent.Join = orchestrator.StateCompleting, time.Now().UTC()
	if err := h.client.Complete(ctx, tr); err != nil {
		t.Fatalf("join after the agent hung up, b2 readable from T: %v", err)
	}
	h.idle(t)
	if !h.sim.Connected(a.ID, first.CallID) {
		t.Errorf("the caller must talk to the target: %+v", h.sim.Calls())
	}
}
