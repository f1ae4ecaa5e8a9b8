package bandwidth_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// The client names the caller's call by the id a callback gave it, and
// the platform's API may not show a new call yet: its first read answers
// 404. Not visible yet is not gone; before, that read failed the
// transfer at once, call_not_found. The locate now looks again for the
// visibility window.
func TestACallNotReadableYetIsFoundByTheLocate(t *testing.T) {
	h := setup(t, options{})
	a, g, _ := h.placeBridged(t)
	h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpGetCall, Status: http.StatusNotFound, Code: "call-not-found", Count: 1})
	tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
	h.idle(t)
	if !slices.ContainsFunc(h.sim.Requests(), func(r bwsim.Request) bool {
		return r.Method == http.MethodGet && strings.Contains(r.Path, "/calls/") && r.Status == http.StatusNotFound
	}) {
		t.Fatal("setup: no call was read not found")
	}
	if tr.State != orchestrator.StateCompleted || !h.sim.Connected(a.ID, tr.Legs.Consult.CallID) {
		t.Errorf("steps %v: state %s outcome %+v, want completed with the caller and the target", stepNames(tr), tr.State, tr.Outcome)
	}
}
