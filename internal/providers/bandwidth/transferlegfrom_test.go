package bandwidth_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// Polling, a transfer's answer is lost, on a platform that reads a
// connected caller's call "active" and keeps showing transferTo: the
// listing of calls to the target tells a caller connected (our live leg is
// there) from one given back. Which number the B-leg shows is inferred
// (bwsim TransferLegFrom): a leg shown with the number the caller called,
// or a "private" caller id shown as "anonymous", was not taken for ours,
// and the transfer reported the caller restored, verified, while the
// caller talked to the target. On every side, with and without a caller
// id, the leg is found and the transfer completes; a target that is busy
// gives the caller back.
func TestAnnouncedPollingFindsItsLegWhateverNumberItShows(t *testing.T) {
	for _, side := range []string{bwsim.TransferLegFromAsGiven, bwsim.TransferLegFromCalledNumber, bwsim.TransferLegFromAnonymous} {
		for _, callerID := range []string{"", "private"} {
			for _, answers := range []bool{true, false} {
				name := side + "/caller id " + callerID + "/answers"
				if !answers {
					name = side + "/caller id " + callerID + "/busy"
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					h, a, tr := lostAnswerTransfer(t, bwsim.Config{TransferredALegState: bwsim.StateActive,
						ALegTransferFields: bwsim.ALegTransferFieldsAlways, TransferFailure: bwsim.TransferFailureRestore,
						TransferLegFrom: side}, callerID, answers)
					if answers {
						b := transferLeg(t, h, a)
						if !h.sim.Connected(a.ID, b.ID) {
							t.Fatalf("setup: the caller is not with the target")
						}
						if tr.State != orchestrator.StateCompleted || tr.Legs.Consult.CallID != b.ID {
							t.Fatalf("the caller is with the target on leg %s (from %q): state %s, leg %q, outcome %+v",
								b.ID, b.From, tr.State, tr.Legs.Consult.CallID, tr.Outcome)
						}
					} else if tr.State != orchestrator.StateFailed || !tr.Outcome.Verified || !tr.Outcome.CallerRestored {
						t.Fatalf("the target was busy and the caller is back: state %s outcome %+v, want failed, restored, verified", tr.State, tr.Outcome)
					}
				})
			}
		}
	}
}

// On the side where a B-leg shows the number the caller called, another
// caller of the same number (a queue's) transferred to the same target
// shows the same number as ours: polling cannot tell the two legs apart.
// Neither is taken for ours nor hung up, and once the caller's call reads
// active (connected, on this platform, or given back), the outcome says it
// cannot be known: never "restored" while the caller may talk to the
// target.
func TestAnnouncedPollingTakesNeitherOfTwoLegsThatShowOneNumber(t *testing.T) {
	h := setup(t, options{engine: func(c *orchestrator.Config) { shortWindows(c); c.TombstoneTTL = time.Second },
		sim: bwsim.Config{TransferredALegState: bwsim.StateActive, ALegTransferFields: bwsim.ALegTransferFieldsAlways,
			TransferLegFrom: bwsim.TransferLegFromCalledNumber}})
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
	a := h.placeCall(t)
	other, err := h.sim.PlaceCall(bwsim.InboundCall{From: "+15555550199", To: owned})
	if err != nil {
		t.Fatal(err)
	}
	loseTransferAnswer(t, h, a, func() {
		// Someone else's transfer of a caller of the same number, then
		// the target answers ours.
		h.api(t, http.MethodPost, "/calls/"+other.ID, `{"state":"transferring","transferTo":"`+target+`"}`)
		if err := h.sim.Answer(target); err != nil {
			t.Error(err)
		}
	})
	req := announcedReq(a, target)
	req.ConsultTimeout = time.Minute
	tr := h.end(t, h.start(t, req).ID)
	tr = h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	h.idle(t)
	ours, theirs := transferLeg(t, h, a), transferLeg(t, h, other)
	if ours.From != theirs.From {
		t.Fatalf("setup: the legs show %q and %q, want one number", ours.From, theirs.From)
	}
	if tr.Legs.Consult.CallID == theirs.ID {
		t.Errorf("the transfer took the other transfer's leg %s for its own (ours is %s)", theirs.ID, ours.ID)
	}
	for _, c := range h.commands(t) {
		if c.Path == "/calls/"+theirs.ID && c.Body["state"] == "completed" {
			t.Errorf("transferd hung up the other transfer's leg: %s", c)
		}
	}
	o := tr.Outcome
	if h.sim.Connected(a.ID, ours.ID) && (o.CallerRestored || (o.Verified && tr.State != orchestrator.StateCompleted)) {
		t.Errorf("the caller is with the target: state %s outcome %+v", tr.State, o)
	}
}
