package bandwidth_test

import (
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// The 2016 docs print Location headers relative ("/v1/users/…"), the SDKs
// read them absolute ([INF]; bwsim RelativeLocation): transfers complete
// with either, in both modes, following what each create made.
func TestTransfersFollowRelativeLocations(t *testing.T) {
	for _, mode := range []orchestrator.Mode{orchestrator.ModeAttended, orchestrator.ModeAnnounced} {
		t.Run(string(mode), func(t *testing.T) {
			h := setup(t, options{sim: bwsim.Config{RelativeLocation: true}})
			var req orchestrator.Request
			var a bwsim.Call
			if mode == orchestrator.ModeAttended {
				var g bwsim.Call
				a, g, _ = h.placeBridged(t)
				req = attendedReq(a, g, orchestrator.CompletionAuto)
			} else {
				a = h.placeCall(t)
				req = announcedReq(a, target)
			}
			tr := h.end(t, h.start(t, req).ID)
			if tr.State != orchestrator.StateCompleted || tr.Legs.Consult.CallID == "" || !h.sim.Connected(a.ID, tr.Legs.Consult.CallID) {
				t.Fatalf("state %s, consult leg %q, outcome %+v: want completed with the caller on the leg the create named",
					tr.State, tr.Legs.Consult.CallID, tr.Outcome)
			}
		})
	}
}
