package bandwidth_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// tickingClock is the client's clock (Config.Now) in the tests of its
// waits: each reading of it is a second later than the last, so that a
// wait for an update to show is counted in looks at the platform, not in
// real time. peek reads it without moving it.
type tickingClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTickingClock() *tickingClock { return &tickingClock{t: time.Now()} }

func (c *tickingClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func (c *tickingClock) peek() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// lateUpdate delays the first bridge update that matches, as a platform
// that applies it late does (bwsim ActionDelay, drawn for it alone), and
// lands it (Sim.Settle) at the first read of b1 once the client's clock
// has passed after since its sending; before runs too, just before it
// is sent.
func lateUpdate(t *testing.T, h *harness, clock *tickingClock, b1 string, body map[string]any, after time.Duration, before func()) {
	t.Helper()
	var (
		mu      sync.Mutex
		landAt  time.Time
		pending bool
	)
	h.before(bridgeUpdate(b1, body), func() {
		if err := h.sim.SetAdversity(bwsim.Config{ActionDelay: time.Hour}); err != nil {
			t.Error(err)
		}
		if before != nil {
			before()
		}
		mu.Lock()
		landAt, pending = clock.peek().Add(after), true
		mu.Unlock()
	})
	h.beforeEach(func(method, path, _ string) bool {
		return method == http.MethodGet && path == "/users/"+userID+"/bridges/"+b1
	}, func() {
		mu.Lock()
		defer mu.Unlock()
		if !pending || clock.peek().Before(landAt) {
			return
		}
		pending = false
		if err := h.sim.SetAdversity(bwsim.Config{}); err != nil {
			t.Error(err)
		}
		h.sim.Settle()
	})
}

// countUpdates counts the bridge updates of b1 with body.
func countUpdates(t *testing.T, h *harness, b1 string, body map[string]any) int {
	t.Helper()
	n := 0
	for _, c := range h.commands(t) {
		if c.Path == "/bridges/"+b1 && jsonEqualMaps(c.Body, body) {
			n++
		}
	}
	return n
}

// A platform that applies bridge updates later than 5 s, within the
// deployment's visibility window (TRANSFERD_VISIBILITY_WINDOW, 12 s
// here): the hold lands 8 s after it was sent, or the split, whose answer
// was lost, 8 s after it. The adapter waited a fixed 5 s: the hold was
// taken for unknown (its step failed, and it was sent again), the split
// sent again with its first attempt still to land (a twin that a platform
// this slow may apply after the join, undoing it:
// TestASplitTwinLandingAfterTheJoinDoesNotUndoIt). It now waits the
// window, and sees each applied.
func TestABridgeUpdateAppliedWithinTheVisibilityWindowIsWaitedFor(t *testing.T) {
	for _, which := range []string{"hold", "split"} {
		t.Run(which, func(t *testing.T) {
			t.Parallel()
			clock := newTickingClock()
			h := setup(t, options{now: clock.now, engine: func(c *orchestrator.Config) { c.VisibilityWindow = 12 * time.Second }})
			a, g, b1 := h.placeBridged(t)
			hold := map[string]any{"bridgeAudio": false}
			split := map[string]any{"callIds": []any{a.ID}, "bridgeAudio": false}
			switch which {
			case "hold":
				lateUpdate(t, h, clock, b1.ID, hold, 8*time.Second, nil)
			case "split":
				lateUpdate(t, h, clock, b1.ID, split, 8*time.Second, func() {
					// Accepted, its answer lost.
					h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpUpdateBridge, Status: http.StatusServiceUnavailable, Apply: true, Count: 1})
				})
			}
			tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
			h.sim.Settle()
			h.idle(t)
			if tr.State != orchestrator.StateCompleted || !h.sim.Connected(a.ID, tr.Legs.Consult.CallID) || h.sim.Held(a.ID) {
				t.Fatalf("state %s outcome %+v; the caller with the target: %t", tr.State, tr.Outcome, h.sim.Connected(a.ID, tr.Legs.Consult.CallID))
			}
			if n := countUpdates(t, h, b1.ID, hold); n != 1 {
				t.Errorf("holds sent = %d, want 1: the hold applied within the window was not waited for", n)
			}
			for _, s := range tr.Steps {
				if s.Name == orchestrator.StepHold && s.Status == orchestrator.StepFailed {
					t.Errorf("the hold step failed (%s), though the platform applied it within the window", s.Detail)
				}
			}
			if n := countUpdates(t, h, b1.ID, split); n != 1 {
				t.Errorf("splits sent = %d, want 1: one was sent again while the first, within the window, was still to land", n)
			}
		})
	}
}

// The other side: a deployment whose platform shows its updates within
// a second (TRANSFERD_VISIBILITY_WINDOW 1s). A split answered 503 and not
// applied is sent again once b1 has shown the agent still in it for the
// window, not for the fixed 5 s, which kept the caller held (and the
// target not yet called) 4 s longer than the platform could take.
func TestASplitNotAppliedIsSentAgainAfterAShortWindow(t *testing.T) {
	clock := newTickingClock()
	h := setup(t, options{now: clock.now, engine: func(c *orchestrator.Config) { c.VisibilityWindow = bandwidth.MinLeaveWait }})
	a, g, b1 := h.placeBridged(t)
	split := map[string]any{"callIds": []any{a.ID}, "bridgeAudio": false}
	var (
		mu          sync.Mutex
		sends       []time.Time
		beforeFirst time.Time
	)
	h.beforeEach(bridgeUpdate(b1.ID, split), func() {
		mu.Lock()
		defer mu.Unlock()
		if len(sends) == 0 {
			h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpUpdateBridge, Status: http.StatusServiceUnavailable, Count: 1})
			beforeFirst = clock.peek()
		}
		sends = append(sends, clock.peek())
	})
	tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
	h.idle(t)
	if tr.State != orchestrator.StateCompleted || !h.sim.Connected(a.ID, tr.Legs.Consult.CallID) {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sends) != 2 {
		t.Fatalf("splits sent = %d, want 2 (the one refused on the way and the one after it)", len(sends))
	}
	// The 503's own reading of the clock, the wait's start and its looks
	// each move it a second: a window of 1 s resends it 3 s on.
	if waited := sends[1].Sub(beforeFirst); waited >= bandwidth.DefaultVisibilityWindow {
		t.Errorf("the split was sent again %s after the first (by the client's clock), with a window of %s", waited, bandwidth.MinLeaveWait)
	}
}
