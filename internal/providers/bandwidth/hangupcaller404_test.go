package bandwidth_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// The hang-up of an announced transfer whose answer was lost looks for
// its B-leg through the caller's call. That call was read before (Locate),
// and Catapult reads an ended call "completed": a 404 for it says nothing
// (getKnownCall). Taken for "the caller is gone, and the B-leg with it",
// the hang-up reported done with the B-leg ringing the target, the caller
// still transferring to it. The caller's call is read again for a while
// (readKnown), and the B-leg is hung up.
func TestAHangupAfterALostAnswerReadsTheCallerAgainAfterANotFound(t *testing.T) {
	h := setup(t, options{})
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
	ctx := context.Background()
	a := h.placeCall(t)
	tr := transferFor(announcedReq(a, target))
	legs, err := h.client.Locate(ctx, tr)
	if err != nil {
		t.Fatal(err)
	}
	tr.Legs = legs
	tr.Sent.Dial = time.Now()
	b, err := h.client.Dial(ctx, tr)
	if err != nil || b.CallID == "" {
		t.Fatalf("dial: %+v %v", b, err)
	}
	// The transfer's answer was lost: the record names no B-leg.
	h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpGetCall, Status: http.StatusNotFound, Count: 1})
	err = h.client.HangupConsult(ctx, tr)
	if c := mustCall(t, h, b.CallID); !c.Ended() && err == nil {
		t.Fatalf("the hang-up reported done with the B-leg %s", c.State)
	}
	if err != nil {
		t.Fatalf("hang-up: %v", err)
	}
	if c := mustCall(t, h, b.CallID); !c.Ended() {
		t.Errorf("the B-leg is %s after the hang-up", c.State)
	}
	if f := h.sim.Faults(); len(f) != 0 {
		t.Errorf("setup: the fault was not used: %+v", f)
	}
}
