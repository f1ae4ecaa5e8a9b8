package netsapiens_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// The value set of call-orig-info and call-term-info is undocumented
// beyond active, alerting and held (nssim.Config.HeldInfo plays a PBX
// whose held leg shows another word). The adapter read any value but
// "held" as the caller connected to the agent: a cancelled transfer whose
// unhold the PBX accepted and never applied was reported restored,
// verified, while the caller stayed held (found by review, fiftieth
// pass). A state transferd does not know is now unknown: the outcome says
// it could not be verified and a cleanup obligation remains. With "held"
// the caller is seen held and the unhold is sent again.
func TestACallerInAStateNotKnownIsNotTakenForConnected(t *testing.T) {
	for _, heldInfo := range []string{nssim.InfoHeld, "onhold"} {
		t.Run(heldInfo, func(t *testing.T) {
			// A caller whose state is not known is never seen back: that
			// outcome is unverified once 300 ms have run out, which load
			// can only delay. A held caller is seen back, after the unhold
			// is sent again, within a patience never waited out: 300 ms of
			// real time for the resent unhold and the reading after it ran
			// out on a loaded machine, and the outcome ended unverified.
			verify := 300 * time.Millisecond
			if heldInfo == nssim.InfoHeld {
				verify = time.Hour
			}
			h := setup(t, nssim.Config{HeldInfo: heldInfo}, func(c *orchestrator.Config) {
				c.VerifyTimeout, c.TombstoneTTL = verify, time.Second
			})
			orig := h.placeCall(t)
			h.sim.SetBehaviour(domain, "1010", nssim.Behaviour{Mode: nssim.ModeManual})
			// Accepted, and never applied.
			h.sim.InjectFault(nssim.Fault{Operation: nssim.OpUnhold, Status: 202, Message: "Accepted", Count: 1})
			tr := h.start(t, orchestrator.CompletionManual, time.Minute)
			tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State == orchestrator.StateConsulting })
			if _, err := h.eng.Cancel(context.Background(), tr.ID); err != nil {
				t.Fatal(err)
			}
			tr = h.end(t, tr.ID)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := h.sim.WaitApplied(ctx); err != nil {
				t.Fatal(err)
			}
			held := false
			for _, s := range h.sim.Truth().Sessions {
				if (s.Orig.CallID == orig.OrigCallID || s.Term.CallID == orig.OrigCallID) &&
					(s.Orig.State == nssim.InfoHeld || s.Term.State == nssim.InfoHeld) {
					held = true
				}
			}
			if held && tr.Outcome.Verified && tr.Outcome.CallerRestored {
				t.Errorf("outcome %+v says the caller was given back, verified; the PBX shows them held", tr.Outcome)
			}
			if heldInfo == nssim.InfoHeld && (held || !tr.Outcome.Verified || !tr.Outcome.CallerRestored) {
				t.Errorf("held %v, outcome %+v: want the unhold sent again, the caller given back, verified", held, tr.Outcome)
			}
		})
	}
}
