package bandwidth_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// TestAJoinRefusedBecauseTheCallerHungUpSaysSo: the caller hangs up just
// before the client's complete reaches the platform. b1 then holds no call
// (the agent is in b2 with the target) and completes, and Catapult refuses
// the join into it with 400 bridge-invalid-state, which read as a provider
// refusal: the transfer ended failed, reason provider_error, its detail
// saying the caller hung up, and, being a failure that did not give the
// caller back for a reason other than the caller's, raised
// transfer.needs_attention for an operator (found by review through the
// API against the demo simulator; NetSapiens says caller_hung_up). It is
// caller_hung_up.
func TestAJoinRefusedBecauseTheCallerHungUpSaysSo(t *testing.T) {
	h := setup(t, options{engine: briefWindow})
	a, g, b1 := h.placeBridged(t)
	tr := h.start(t, attendedReq(a, g, orchestrator.CompletionManual))
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	h.before(func(method, path, body string) bool {
		return method == http.MethodPost && path == "/users/"+userID+"/bridges/"+b1.ID && strings.Contains(body, tr.Legs.Consult.CallID)
	}, func() {
		if err := h.sim.Hangup(a.ID); err != nil {
			t.Error(err)
		}
	})
	if _, err := h.eng.Complete(context.Background(), tr.ID); err != nil {
		t.Fatal(err)
	}
	tr = h.end(t, tr.ID)
	if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonCallerHungUp || tr.Outcome.CallerRestored {
		t.Fatalf("state %s outcome %+v; want failed, caller_hung_up, the caller not restored", tr.State, tr.Outcome)
	}
	// The test's premise: the join reached b1 after the hang-up, and was refused.
	refused := false
	for _, r := range h.requestsOf(bwsim.OpUpdateBridge) {
		refused = refused || (strings.HasSuffix(r.Path, "/bridges/"+b1.ID) && strings.Contains(r.Body, tr.Legs.Consult.CallID) &&
			r.Status == http.StatusBadRequest)
	}
	if !refused {
		t.Error("no join into b1 was refused: the caller's hang-up did not meet it")
	}
}
