package bandwidth_test

import (
	"context"
	"sync"
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

// Left by the sixty-sixth pass's second engine review, found by the
// sixty-seventh pass's engine review: the same cancel, sent blind while B
// rang, is applied late, once B has answered (bwsim's delayed actions):
// the platform ends B, and the caller's call with it. With a whisper, a
// reading cannot say the caller was connected to the target before the
// end (bridgedBeforeEnd), and reads the caller's call ended. The process
// resuming the transfer saw B answered and moved to completing, and the
// cancel landed there, within a window of its adoption: completing
// reported the caller hung up (caller_hung_up), for a call transferd's
// own cancel may have ended.
func TestACallerCutOffByALateCancelOnceBAnsweredIsNotBlamed(t *testing.T) {
	h, hit := setupStoppingAt(t, options{callbacks: true}, "state:consulting")
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
	a := h.placeCall(t)
	req := announcedReq(a, target)
	req.ConsultTimeout = time.Minute
	req.Whisper = &orchestrator.Whisper{Sentence: "Transfer from support"}
	tr := h.start(t, req)
	<-hit
	b := transferLeg(t, h, a)
	// The cancel the stopped process sent, unrecorded, held by the
	// platform until the test settles it.
	if err := h.sim.SetAdversity(bwsim.Config{ActionDelay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	h.api(t, "POST", "/calls/"+b.ID, `{"state":"completed"}`)
	if err := h.sim.SetAdversity(bwsim.Config{}); err != nil {
		t.Fatal(err)
	}
	if err := h.sim.Answer(target); err != nil {
		t.Fatal(err)
	}
	if c := mustCall(t, h, b.ID); c.State != bwsim.StateActive {
		t.Fatalf("B is %s after its answer; want active, its cancel not applied yet", c.State)
	}

	// Applied as the resuming process moves to completing, on its reading
	// of B answered.
	var once sync.Once
	h.restart(t, bandwidth.Config{PublicURL: h.public}, func(c *orchestrator.Config) {
		c.CrashPoint = func(_ *orchestrator.Transfer, p string) {
			if p == "state:"+string(orchestrator.StateCompleting) {
				once.Do(h.sim.Settle)
			}
		}
	})
	end := h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	if c := mustCall(t, h, a.ID); c.State != bwsim.StateCompleted {
		t.Fatalf("the caller's call is %s; want ended with B by the late cancel", c.State)
	}
	if end.Outcome == nil || end.Outcome.Reason == orchestrator.ReasonCallerHungUp {
		t.Fatalf("%s %+v: the caller was blamed for an end a cancel of the process before may have caused", end.State, end.Outcome)
	}
	if end.Outcome.Reason != orchestrator.ReasonConsultFailed || end.Outcome.CallerRestored {
		t.Errorf("%s %+v; want consult_failed, the caller not restored", end.State, end.Outcome)
	}
}
