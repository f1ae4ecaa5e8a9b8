package bandwidth_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// These tests call the Provider methods the way a resumed transfer does:
// a dial step whose result was never saved (the process died, or the
// answer was lost) is followed by another dial step, or by the
// compensations, which must find what the first one created.

func transferFor(r orchestrator.Request, legs orchestrator.Legs, dials int) *orchestrator.Transfer {
	now := time.Now().UTC()
	t := &orchestrator.Transfer{ID: orchestrator.NewID(now), Request: r, Legs: legs, CreatedAt: now}
	for range dials {
		t.Steps = append(t.Steps, orchestrator.Step{Name: orchestrator.StepDial, Status: orchestrator.StepStarted, StartedAt: now})
	}
	return t
}

func TestRepeatedAnnouncedDialTransfersOnce(t *testing.T) {
	for _, v := range []struct {
		public  bool
		aStateB string // A's state once B answered
	}{{false, bwsim.StateTransferring}, {true, bwsim.StateTransferring}, {false, bwsim.StateActive}, {true, bwsim.StateActive}} {
		h := setup(t, options{callbacks: v.public, sim: bwsim.Config{TransferredALegState: v.aStateB}})
		ctx := context.Background()
		a := h.placeCall(t)
		req := announcedReq(a, target)
		req.ConsultTimeout = 30 * time.Second
		tr := transferFor(req, orchestrator.Legs{}, 1)
		legs, err := h.client.Locate(ctx, tr)
		if err != nil {
			t.Fatal(err)
		}
		tr.Legs = legs
		first, err := h.client.Dial(ctx, tr)
		if err != nil || first.CallID == "" {
			t.Fatalf("first dial: %+v %v", first, err)
		}
		h.idle(t) // B answered: A may read active or transferring again
		// The first result was never saved.
		tr.Steps = append(tr.Steps, tr.Steps[0])
		again, err := h.client.Dial(ctx, tr)
		if err != nil || again != first {
			t.Fatalf("second dial = %+v, %v; want %+v", again, err, first)
		}
		if n := len(h.requestsOf(bwsim.OpTransfer)); n != 1 {
			t.Errorf("%+v: transfers sent = %d, want 1", v, n)
		}
	}
}

func TestRepeatedAttendedDialCreatesOnce(t *testing.T) {
	h := setup(t, options{})
	ctx := context.Background()
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
	a, g, b1 := h.placeBridged(t)
	tr := transferFor(attendedReq(a, g, orchestrator.CompletionAuto), orchestrator.Legs{}, 1)
	tr.Request.ConsultTimeout = 30 * time.Second
	legs, err := h.client.Locate(ctx, tr)
	if err != nil {
		t.Fatal(err)
	}
	if legs.Caller.BridgeID != b1.ID || legs.Agent.CallID != g.ID {
		t.Fatalf("legs = %+v", legs)
	}
	tr.Legs = legs
	if err := h.client.Hold(ctx, tr); err != nil {
		t.Fatal(err)
	}
	first, err := h.client.Dial(ctx, tr)
	if err != nil || first.CallID == "" || first.BridgeID == "" {
		t.Fatalf("first dial: %+v %v", first, err)
	}
	tr.Steps = append(tr.Steps, tr.Steps[0])
	for _, saved := range []orchestrator.LegRef{{}, {BridgeID: first.BridgeID}} {
		tr.Legs.Consult = saved
		again, err := h.client.Dial(ctx, tr)
		if err != nil || again != first {
			t.Fatalf("dial again (saved %+v) = %+v, %v; want %+v", saved, again, err, first)
		}
	}
	if n, m := len(h.requestsOf(bwsim.OpCreateBridge)), len(h.requestsOf(bwsim.OpCreateCall)); n != 1 || m != 1 {
		t.Errorf("bridges created %d, calls created %d; want 1 each", n, m)
	}

	// The compensations find the unsaved consult too.
	tr.Legs.Consult = orchestrator.LegRef{}
	if err := h.client.HangupConsult(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if err := h.client.Unhold(ctx, tr); err != nil {
		t.Fatal(err)
	}
	// Both are idempotent.
	if err := h.client.HangupConsult(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if err := h.client.Unhold(ctx, tr); err != nil {
		t.Fatal(err)
	}
	tr.Legs.Consult = first
	assertAgentRestored(t, h, tr, a, g)
	obs, err := h.client.Observe(ctx, tr)
	if err != nil || obs.Caller != orchestrator.CallerConnected || obs.Consult != orchestrator.ConsultEnded {
		t.Errorf("observation = %+v, %v", obs, err)
	}
}

// A join repeated after its result was lost changes nothing and fails
// nothing: the agent's leg is already gone and the caller stays with the
// target.
func TestRepeatedCompleteIsHarmless(t *testing.T) {
	h := setup(t, options{})
	ctx := context.Background()
	a, g, _ := h.placeBridged(t)
	tr := transferFor(attendedReq(a, g, orchestrator.CompletionAuto), orchestrator.Legs{}, 1)
	tr.Request.ConsultTimeout = 30 * time.Second
	var err error
	if tr.Legs, err = h.client.Locate(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if err := h.client.Hold(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if tr.Legs.Consult, err = h.client.Dial(ctx, tr); err != nil {
		t.Fatal(err)
	}
	h.idle(t)
	for range 2 {
		if err := h.client.Complete(ctx, tr); err != nil {
			t.Fatal(err)
		}
	}
	obs, err := h.client.Observe(ctx, tr)
	if err != nil || obs.Caller != orchestrator.CallerTransferred {
		t.Fatalf("observation = %+v, %v", obs, err)
	}
	if !h.sim.Connected(a.ID, tr.Legs.Consult.CallID) {
		t.Error("the caller must talk to the target")
	}
}
