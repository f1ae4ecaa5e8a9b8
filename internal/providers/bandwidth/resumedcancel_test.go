package bandwidth_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// Found by the sixty-sixth pass's second engine review (the sixty-fifth
// pass's engine review left it noted): a process stops while its
// announced transfer's B-leg rings, after it hung that leg up blind (a
// give-up whose intent the store refused, so its record says consulting
// and nothing of the hang-up). The platform ends the caller's call with a
// B-leg cancelled before its answer (bwsim's TransferFailure "hangup"),
// and B reads ORIGINATOR_CANCEL, as it does when the caller hangs up
// while B rings. The process resuming the transfer reported the caller
// hung up (caller_hung_up), for a call transferd's own hang-up may have
// ended: whether the caller hung up is unknown (consult_failed), and the
// caller was not given back.
func TestACallerCutOffWithABLegAProcessBeforeMayHaveHungUpIsNotBlamed(t *testing.T) {
	h, hit := setupStoppingAt(t, options{callbacks: true}, "state:consulting")
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
	a := h.placeCall(t)
	req := announcedReq(a, target)
	req.ConsultTimeout = time.Minute
	tr := h.start(t, req)
	<-hit
	saved, err := h.store.Get(context.Background(), tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	if saved.State != orchestrator.StateConsulting || saved.Legs.Consult.CallID == "" {
		t.Fatalf("stopped with %s, consult %q saved; want consulting, the B-leg's id saved", saved.State, saved.Legs.Consult.CallID)
	}
	b := transferLeg(t, h, a)
	// The hang-up the stopped process sent, unrecorded.
	h.api(t, "POST", "/calls/"+b.ID, `{"state":"completed"}`)
	if c := mustCall(t, h, a.ID); c.State != bwsim.StateCompleted {
		t.Fatalf("the caller's call is %s after the B-leg's cancel; want ended with it", c.State)
	}

	h.restart(t, bandwidth.Config{PublicURL: h.public})
	end := h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	if end.Outcome == nil || end.Outcome.Reason == orchestrator.ReasonCallerHungUp {
		t.Fatalf("%s %+v: the caller was blamed for a hang-up the process before may have sent", end.State, end.Outcome)
	}
	if end.Outcome.Reason != orchestrator.ReasonConsultFailed || end.Outcome.CallerRestored {
		t.Errorf("%s %+v; want consult_failed, the caller not restored", end.State, end.Outcome)
	}
}
