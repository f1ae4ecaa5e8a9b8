package bandwidth_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// These tests call the Provider methods the way the engine does after a
// dial whose answer was lost (or whose process died before saving it):
// the engine never dials again; its readings and the compensations must
// find what the dial created by themselves.

func transferFor(r orchestrator.Request) *orchestrator.Transfer {
	now := time.Now().UTC()
	return &orchestrator.Transfer{ID: orchestrator.NewID(now), Request: r, CreatedAt: now}
}

// observe reads one transfer the way the engine's watcher does.
func observe(t *testing.T, h *harness, tr *orchestrator.Transfer) (orchestrator.Observation, error) {
	t.Helper()
	v, err := h.client.Read(context.Background(), h.client.WatchKey(tr), []*orchestrator.Transfer{tr})
	if err != nil {
		return orchestrator.Observation{}, err
	}
	return v.Observe(tr)
}

func TestLostAnnouncedDialIsFoundByReading(t *testing.T) {
	for _, v := range []struct {
		public  bool
		aStateB string // A's state once B answered
	}{{false, bwsim.StateTransferring}, {true, bwsim.StateTransferring}, {false, bwsim.StateActive}, {true, bwsim.StateActive}} {
		h := setup(t, options{callbacks: v.public, sim: bwsim.Config{TransferredALegState: v.aStateB}})
		ctx := context.Background()
		a := h.placeCall(t)
		req := announcedReq(a, target)
		req.ConsultTimeout = 30 * time.Second
		tr := transferFor(req)
		legs, err := h.client.Locate(ctx, tr)
		if err != nil {
			t.Fatal(err)
		}
		tr.Legs = legs
		tr.Sent.Dial = time.Now().UTC()
		first, err := h.client.Dial(ctx, tr)
		if err != nil || first.CallID == "" {
			t.Fatalf("first dial: %+v %v", first, err)
		}
		h.idle(t) // B answered: A may read active or transferring again
		// The dial's result was never saved: a reading finds B.
		obs, err := observe(t, h, tr)
		if err != nil || obs.ConsultLeg.CallID != first.CallID || obs.Caller != orchestrator.CallerTransferred {
			t.Fatalf("%+v: reading = %+v, %v; want B %s and the caller transferred", v, obs, err, first.CallID)
		}
		if n := len(h.requestsOf(bwsim.OpTransfer)); n != 1 {
			t.Errorf("%+v: transfers sent = %d, want 1", v, n)
		}
	}
}

// dialUnsaved locates, holds and dials an attended transfer of a placed
// call as the engine does, and returns what the dial created: the engine
// then dies before saving it (tr.Legs.Consult stays empty).
func dialUnsaved(t *testing.T, h *harness) (tr *orchestrator.Transfer, a, g bwsim.Call, first orchestrator.LegRef) {
	t.Helper()
	ctx := context.Background()
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
	a, g, b1 := h.placeBridged(t)
	tr = transferFor(attendedReq(a, g, orchestrator.CompletionAuto))
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
	tr.Sent.Dial = time.Now().UTC()
	first, err = h.client.Dial(ctx, tr)
	if err != nil || first.CallID == "" || first.BridgeID == "" {
		t.Fatalf("first dial: %+v %v", first, err)
	}
	return tr, a, g, first
}

func TestLostAttendedDialIsFoundAndUndone(t *testing.T) {
	h := setup(t, options{})
	ctx := context.Background()
	tr, a, g, first := dialUnsaved(t, h)
	// The dial's result was never saved: a reading finds T by its tag.
	obs, err := observe(t, h, tr)
	if err != nil || obs.ConsultLeg.CallID != first.CallID || obs.Consult != orchestrator.ConsultRinging {
		t.Fatalf("reading = %+v, %v; want the ringing consult %s", obs, err, first.CallID)
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
	obs, err = observe(t, h, tr)
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
	tr := transferFor(attendedReq(a, g, orchestrator.CompletionAuto))
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
	obs, err := observe(t, h, tr)
	if err != nil || obs.Caller != orchestrator.CallerTransferred {
		t.Fatalf("observation = %+v, %v", obs, err)
	}
	if !h.sim.Connected(a.ID, tr.Legs.Consult.CallID) {
		t.Error("the caller must talk to the target")
	}
}

// The dial's result was never saved (the process died), and the target
// answers: a reading finds T by its tag and the consult bridge b2 through
// T, and the join made with what the readings learnt connects caller and
// target. Before, readings learnt T alone, and the join failed as an
// internal error ("the consult leg is not known"); the storm saw it once
// on PostgreSQL.
func TestLostAttendedDialIsFoundAndJoined(t *testing.T) {
	h := setup(t, options{})
	ctx := context.Background()
	tr, a, _, first := dialUnsaved(t, h)
	if err := h.sim.Answer(target); err != nil {
		t.Fatal(err)
	}
	h.idle(t)
	obs, err := observe(t, h, tr)
	if err != nil || obs.Consult != orchestrator.ConsultAnswered || obs.ConsultLeg.CallID != first.CallID || obs.ConsultLeg.BridgeID != first.BridgeID {
		t.Fatalf("reading = %+v, %v; want the answered consult %s in bridge %s", obs, err, first.CallID, first.BridgeID)
	}
	tr.Legs.Consult = obs.ConsultLeg // what the engine learns
	tr.State, tr.Sent.Join = orchestrator.StateCompleting, time.Now().UTC()
	if err := h.client.Complete(ctx, tr); err != nil {
		t.Fatalf("join with the legs a reading learnt: %v", err)
	}
	h.idle(t)
	if !h.sim.Connected(a.ID, first.CallID) || h.sim.Held(a.ID) {
		t.Errorf("the caller must talk to the target: %+v", h.sim.Calls())
	}
}
