package bandwidth_test

import (
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// The category of the 403 FORBIDDEN group is a guess (ForbiddenCategory):
// "forbidden", or "authorization", which errors.md also lists. On the
// second side every refusal of the group read as an access denial, and an
// unhold refused once (a bridge overflow while the consult still leaves
// b1) was given up: the caller stayed held for good. The consult's create
// is refused, so the caller is owed the unhold; whichever the category, it
// is tried again and the caller is back with the agent.
func TestAnUnholdRefusedInTheForbiddenGroupIsTriedAgainWhateverItsCategory(t *testing.T) {
	for _, cat := range []string{"", bwsim.DefaultForbiddenCategory, "authorization"} {
		t.Run("category "+cat, func(t *testing.T) {
			h := setup(t, options{sim: bwsim.Config{ForbiddenCategory: cat}, engine: func(c *orchestrator.Config) {
				c.VerifyTimeout = 500 * time.Millisecond
				c.VisibilityWindow = 200 * time.Millisecond
				c.StepTimeout = time.Second
				c.TombstoneTTL = time.Second
			}})
			a, g, b1 := h.placeBridged(t)
			h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpCreateCall, Status: 403, Code: "invalid-call-to-number", Count: 1})
			h.faultAt(bridgeUpdate(b1.ID, map[string]any{"callIds": []any{a.ID, g.ID}, "bridgeAudio": true}),
				bwsim.Fault{Operation: bwsim.OpUpdateBridge, Status: 403, Code: "bridge-callIds-overflow", Count: 1})
			tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
			tr = h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
			h.idle(t)
			if !h.sim.Connected(a.ID, g.ID) || h.sim.Held(a.ID) {
				t.Errorf("the caller is held %v, with the agent %v; outcome %+v", h.sim.Held(a.ID), h.sim.Connected(a.ID, g.ID), tr.Outcome)
			}
			if tr.State != orchestrator.StateFailed || !tr.Outcome.CallerRestored {
				t.Errorf("state %s outcome %+v, want failed with the caller restored", tr.State, tr.Outcome)
			}
		})
	}
}
