package bandwidth_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// The hang-up of a consult leg just created meets the answers the notes
// list for an update whose effect is unknown or whose call is in flux:
// 503 call-unavailable (a call still initializing), 409
// call-update-conflict (another update in progress), 403 call-id-not-found
// and a 404 on the update and the reads after it (which of the two
// not-found codes comes when is a guess). In every case and both modes the
// leg ends; in attended mode the caller is back with the agent.
func TestAConsultHangupMeetingAmbiguousAnswersEndsTheLeg(t *testing.T) {
	cases := []struct {
		name   string
		faults []bwsim.Fault
	}{
		{"503 call-unavailable 4 times", []bwsim.Fault{{Operation: bwsim.OpUpdateCall, Status: 503, Code: "call-unavailable", Count: 4}}},
		{"409 call-update-conflict 4 times", []bwsim.Fault{{Operation: bwsim.OpUpdateCall, Status: 409, Code: "call-update-conflict", Count: 4}}},
		{"403 call-id-not-found", []bwsim.Fault{{Operation: bwsim.OpUpdateCall, Status: 403, Code: "call-id-not-found", Category: "forbidden", Count: 1}}},
		{"404 on the update and the reads", []bwsim.Fault{{Operation: bwsim.OpUpdateCall, Status: 404, Code: "call-not-found", Count: 1},
			{Operation: bwsim.OpGetCall, Status: 404, Code: "call-not-found", Count: 10}}},
	}
	for _, tc := range cases {
		for _, mode := range []orchestrator.Mode{orchestrator.ModeAttended, orchestrator.ModeAnnounced} {
			t.Run(tc.name+"/"+string(mode), func(t *testing.T) {
				t.Parallel()
				h := setup(t, options{engine: func(c *orchestrator.Config) {
					c.VerifyTimeout = 500 * time.Millisecond
					c.VisibilityWindow = 200 * time.Millisecond
					c.TombstoneTTL = 2 * time.Second
				}})
				h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
				var req orchestrator.Request
				var a, g bwsim.Call
				if mode == orchestrator.ModeAttended {
					a, g, _ = h.placeBridged(t)
					req = attendedReq(a, g, orchestrator.CompletionManual)
				} else {
					a = h.placeCall(t)
					req = announcedReq(a, target)
				}
				req.ConsultTimeout = time.Minute
				tr := h.start(t, req)
				tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Legs.Consult.CallID != "" })
				leg := tr.Legs.Consult.CallID
				h.before(func(method, path, body string) bool {
					return method == http.MethodPost && path == "/users/"+userID+"/calls/"+leg && jsonEqual(body, map[string]any{"state": "completed"})
				}, func() {
					for _, f := range tc.faults {
						h.sim.InjectFault(f)
					}
				})
				if _, err := h.eng.Cancel(t.Context(), tr.ID); err != nil {
					t.Fatal(err)
				}
				tr = h.end(t, tr.ID)
				tr = h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Cleanup == nil })
				h.idle(t)
				if c := mustCall(t, h, leg); !c.Ended() {
					t.Errorf("the consult leg is left %s (transfer %s, outcome %+v)", c.State, tr.State, tr.Outcome)
				}
				if mode == orchestrator.ModeAttended && (!h.sim.Connected(a.ID, g.ID) || h.sim.Held(a.ID)) {
					t.Errorf("the caller is not back with the agent (held %v); outcome %+v", h.sim.Held(a.ID), tr.Outcome)
				}
			})
		}
	}
}
