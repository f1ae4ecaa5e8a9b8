package bandwidth_test

import (
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// Catapult reads an ended call "completed" (or "rejected"), so a "not
// found" for a call transferd has read before says nothing of it: a read
// served before the call's record, or a not-found code used loosely
// (which of the two codes comes when is a guess). Taken for gone, the
// caller's 404 closed a cancelled transfer, verified, "the caller's call
// has ended", with the caller up and the B-leg left ringing (the flake of
// TestAConsultHangupMeetingAmbiguousAnswersEndsTheLeg, fiftieth pass).
// While every read answers 404 the outcome cannot be verified; once reads
// answer again the leg is ended and the outcome says what the platform
// shows.
func TestACallReadNotFoundAfterItWasSeenIsNotTakenForGone(t *testing.T) {
	h := setup(t, options{engine: func(c *orchestrator.Config) {
		c.VerifyTimeout = 300 * time.Millisecond
		c.VisibilityWindow = 100 * time.Millisecond
		c.TombstoneTTL = time.Second
	}})
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
	a := h.placeCall(t)
	req := announcedReq(a, target)
	req.ConsultTimeout = time.Minute
	tr := h.start(t, req)
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Seen.Consult })
	leg := tr.Legs.Consult.CallID
	h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpGetCall, Status: 404, Code: "call-not-found"})
	if _, err := h.eng.Cancel(t.Context(), tr.ID); err != nil {
		t.Fatal(err)
	}
	tr = h.end(t, tr.ID)
	if tr.Outcome.Verified || tr.Cleanup == nil {
		t.Errorf("while every read answers 404: outcome %+v, cleanup %+v; want it unverified, with an obligation", tr.Outcome, tr.Cleanup)
	}
	h.sim.ClearFaults()
	tr = h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Cleanup == nil })
	h.idle(t)
	if c := mustCall(t, h, leg); !c.Ended() {
		t.Errorf("the B-leg is left %s; outcome %+v", c.State, tr.Outcome)
	}
	if c := mustCall(t, h, a.ID); !c.Ended() && strings.Contains(tr.Outcome.Detail, "caller's call has ended") {
		t.Errorf("the caller's call is %s, and the outcome says it ended: %+v", c.State, tr.Outcome)
	}
}
