package netsapiens_test

import (
	"slices"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// What DELETE .../calls/{call_id} does to a call still ringing is
// undocumented: the docs give it for "an active call" and DELETE
// .../reject for "a 'ringing' call prior to any answer event"
// (nssim.RingingDisconnect). A consult the target never answers is ended
// whichever it is, once the transfer gives up: the target's phone does
// not ring on for a transfer that has ended, nor get answered into it.
func TestARingingConsultIsEndedWhateverDeleteDoesToARingingCall(t *testing.T) {
	for _, side := range []string{nssim.RingingEnds, nssim.RingingIgnored, nssim.RingingRefused} {
		t.Run(side, func(t *testing.T) {
			h := setup(t, nssim.Config{RingingDisconnect: side})
			orig := h.placeCall(t)
			h.sim.SetBehaviour(domain, "1010", nssim.Behaviour{Mode: "never"})
			tr := h.start(t, orchestrator.CompletionAuto, time.Second)
			tr = h.end(t, tr.ID)
			if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonNoAnswer || !tr.Outcome.CallerRestored {
				t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
			}
			tr = h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Cleanup == nil })
			assertRestored(t, h, orig)
			if n := len(h.sim.Sessions(domain)); n != 1 {
				t.Errorf("%d sessions live, want only the caller's: the consult rings on; requests %q", n, commands(h.sim.Requests()))
			}
			consult := netsapiens.ConsultCallID(tr.ID)
			ended := h.sim.Ended()
			i := slices.IndexFunc(ended, func(e nssim.EndedSession) bool { return e.Call.OrigCallID == consult })
			if i < 0 || (ended[i].Reason != nssim.EndDisconnected && ended[i].Reason != nssim.EndRejected) {
				t.Errorf("the consult %s did not end by transferd's hand: %+v", consult, ended)
			}
		})
	}
}
