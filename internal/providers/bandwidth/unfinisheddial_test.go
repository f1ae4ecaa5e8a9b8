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

// A dial step a stopped process left unfinished (StartedAt, no EndedAt)
// may have had its request answered as late as the step timeout after it
// began (the adapter's retries): the engine bounds it so
// (Transfer.StepEnd), and the windows of the dial run from there. Counted
// from the step's start, a leg the platform could not read yet next to
// an ended caller's call was judged past its window before the engine's
// own: the caller gone, undecidable, while the leg could still tell (a
// busy target). Within start+step timeout+window the reading is unknown;
// past it, the leg never read, it is undecidable as before.
func TestAnUnfinishedDialStepCountsItsWindowFromTheStepTimeout(t *testing.T) {
	for _, readable := range []bool{true, false} {
		name := "readable before the step's bound and its window"
		if !readable {
			name = "never readable"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			clock, set := settableClock()
			start := time.Now().UTC()
			set(start)
			// A step timeout other than the default: the adapter is given
			// the engine's (Config.StepTimeout).
			const stepTimeout = 40 * time.Second
			h := setup(t, options{now: clock, engine: func(c *orchestrator.Config) { c.StepTimeout = stepTimeout },
				sim: bwsim.Config{ListingDelay: time.Hour, UnlistedNotFound: true}})
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
			tr.Sent.Dial = start
			// The process died in the dial step: begun, never ended.
			tr.Steps = []orchestrator.Step{{Name: orchestrator.StepDial, Status: orchestrator.StepStarted, StartedAt: start}}
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
			// Past the window from the step's start, and from the default
			// step timeout's bound, within it from the step's bound: the
			// leg may still become readable.
			set(start.Add(orchestrator.DefaultStepTimeout + window + time.Second))
			obs, err := observe(t, h, tr)
			if err == nil || orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
				t.Fatalf("within the window of the dial step's bound, the leg not readable yet: reading = %+v, %v; want unknown", obs, err)
			}
			if readable {
				// The leg is read before start+step timeout+window, and
				// tells: the target was busy, the platform ended the
				// caller's call for it.
				h.sim.Settle()
				set(start.Add(stepTimeout + window - time.Second))
				obs, err = observe(t, h, tr)
				if err != nil || obs.Caller != orchestrator.CallerGone || obs.Undecidable || obs.EndReason != orchestrator.ReasonBusy {
					t.Fatalf("the leg, read within the window of the dial step's bound: reading = %+v, %v; want busy, decided", obs, err)
				}
				return
			}
			// Past start+step timeout+window, the leg never read: no
			// reading can tell why the caller's call ended.
			set(start.Add(stepTimeout + window + time.Second))
			obs, err = observe(t, h, tr)
			if err != nil || obs.Caller != orchestrator.CallerGone || !obs.Undecidable {
				t.Fatalf("past the window of the dial step's bound: reading = %+v, %v; want the caller gone, undecidable", obs, err)
			}
		})
	}
}

// settableClock is a clock that stands where the test sets it, read from
// the engine's and the adapter's goroutines.
func settableClock() (now func() time.Time, set func(time.Time)) {
	var (
		mu sync.Mutex
		at time.Time
	)
	now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return at
	}
	set = func(t time.Time) {
		mu.Lock()
		defer mu.Unlock()
		at = t
	}
	return now, set
}
