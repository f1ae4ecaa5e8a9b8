package bandwidth_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// A dial decided again (Sent.Dial) after an earlier dial step that ended
// without sending (its intent not saved), its own step not recorded yet,
// came to be no earlier than Sent.Dial: the windows of the dial run from
// the later of the two, as the NetSapiens adapter counts them
// (dialAnswered there). Counted from the earlier step's end, a leg not
// readable yet next to an ended caller's call was judged past its window
// while the leg the new dial created could still tell (a busy target): the
// caller gone, undecidable.
func TestADialDecidedAfterAnEarlierDialStepCountsItsWindowFromTheDecision(t *testing.T) {
	clock, set := settableClock()
	start := time.Now().UTC()
	set(start)
	h := setup(t, options{now: clock, sim: bwsim.Config{ListingDelay: time.Hour, UnlistedNotFound: true}})
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeBusy})
	ctx := context.Background()
	a := h.placeCall(t)
	req := announcedReq(a, target)
	req.ConsultTimeout = time.Minute
	tr := transferFor(req)
	legs, err := h.client.Locate(ctx, tr)
	if err != nil {
		t.Fatal(err)
	}
	tr.Legs = legs
	// The first dial step ended without sending (its intent could not be
	// saved); the dial was decided again 30 s later, its step not begun.
	const later = 30 * time.Second
	tr.Steps = []orchestrator.Step{{Name: orchestrator.StepDial, Status: orchestrator.StepFailed,
		StartedAt: start, EndedAt: start, Detail: "not sent: the store could not save its intent"}}
	tr.Sent.Dial = start.Add(later)
	b, err := h.client.Dial(ctx, tr)
	if err != nil || b.CallID == "" {
		t.Fatalf("dial: %+v %v", b, err)
	}
	tr.Legs.Consult = b
	h.idle(t) // the target was busy: the platform ended the caller's call
	if !mustCall(t, h, a.ID).Ended() {
		t.Fatalf("setup: the caller's call should have ended: %+v", h.sim.Calls())
	}

	window := bandwidth.DefaultVisibilityWindow
	// Past the window of the earlier step's end, within the window of the
	// dial's decision: the leg may still become readable.
	set(start.Add(window + time.Second))
	obs, err := observe(t, h, tr)
	if err == nil || orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
		t.Fatalf("within the window of the dial's decision, the leg not readable yet: reading = %+v, %v; want unknown", obs, err)
	}
	// Read within that window, the leg tells: the target was busy.
	h.sim.Settle()
	set(start.Add(later + window - time.Second))
	obs, err = observe(t, h, tr)
	if err != nil || obs.Caller != orchestrator.CallerGone || obs.Undecidable || obs.EndReason != orchestrator.ReasonBusy {
		t.Fatalf("the leg, read within the window of the dial's decision: reading = %+v, %v; want busy, decided", obs, err)
	}
}
