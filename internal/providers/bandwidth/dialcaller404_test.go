package bandwidth_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// The dial reads the caller's call A for the consult's from (the number
// the caller dialled) when the request names no caller id. Locate read A,
// and Catapult reads an ended call "completed", so a 404 for it says
// nothing (getKnownCall). Taken for the caller gone, one 404 there failed
// the transfer, verified, call_not_found, with the caller up: the target
// was never called.
func TestACallerReadNotFoundOnceAtTheDialDoesNotFailTheTransfer(t *testing.T) {
	h := setup(t, options{})
	a, g, b1 := h.placeBridged(t)
	// The first read after the hold is the dial's read of A.
	h.faultAt(func(method, path, body string) bool {
		return method == http.MethodPost && path == "/users/"+userID+"/bridges/"+b1.ID && body == `{"bridgeAudio":false}`
	}, bwsim.Fault{Operation: bwsim.OpGetCall, Status: http.StatusNotFound, Code: "call-not-found", Count: 1})
	tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
	h.idle(t)
	if !slices.ContainsFunc(h.sim.Requests(), func(r bwsim.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.Path, "/calls/"+a.ID) && r.Status == http.StatusNotFound
	}) {
		t.Fatal("setup: the caller's call was never read not found")
	}
	if tr.State != orchestrator.StateCompleted || !h.sim.Connected(a.ID, tr.Legs.Consult.CallID) {
		t.Errorf("steps %v: state %s outcome %+v, want completed with the caller and the target", stepNames(tr), tr.State, tr.Outcome)
	}
}
