package bandwidth_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// The hold mutes the caller's bridge b1 and reads b1 until it shows the
// hold applied. Locate read b1's id on the caller's call, and Catapult
// keeps a bridge readable once it has completed (state completed): a 404
// for b1 says nothing. Taken for an answer, one 404 there failed the
// transfer, provider_error, the caller given back to the agent: the
// target was never called.
func TestACallerBridgeReadNotFoundOnceAtTheHoldDoesNotFailTheTransfer(t *testing.T) {
	h := setup(t, options{})
	a, g, b1 := h.placeBridged(t)
	// The first read of b1 after the hold is the hold's own.
	h.faultAt(func(method, path, body string) bool {
		return method == http.MethodPost && path == "/users/"+userID+"/bridges/"+b1.ID && body == `{"bridgeAudio":false}`
	}, bwsim.Fault{Operation: bwsim.OpGetBridge, Status: http.StatusNotFound, Count: 1})
	tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
	h.idle(t)
	if !slices.ContainsFunc(h.sim.Requests(), func(r bwsim.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.Path, "/bridges/"+b1.ID) && r.Status == http.StatusNotFound
	}) {
		t.Fatal("setup: the caller's bridge was never read not found")
	}
	if tr.State != orchestrator.StateCompleted || !h.sim.Connected(a.ID, tr.Legs.Consult.CallID) {
		t.Errorf("steps %v: state %s outcome %+v, want completed with the caller and the target", stepNames(tr), tr.State, tr.Outcome)
	}
}
