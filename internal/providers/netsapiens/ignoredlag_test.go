package netsapiens_test

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
	"github.com/transferd/transferd/internal/store/memory"
)

// shiftedClock is the wall clock moved on by a shift the test sets: the
// engine's and the adapter's, so that a step decided after the shift is
// stamped that much later than one before it, without waiting for it.
// While held it moves on by a microsecond a reading only (from the moment
// hold was called, plus the shift): times the test compares are then as
// far apart as the test makes them, however slowly the machine runs, and
// still in the order they were read (the engine judges a reading by
// whether it was taken after an action's answer). release lets it go on
// with real time, for the waits the engine times by real timers (a
// verification's patience) to end.
type shiftedClock struct {
	shift atomic.Int64
	mu    sync.Mutex
	held  time.Time // zero while running
}

func (c *shiftedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	base := time.Now()
	if !c.held.IsZero() {
		c.held = c.held.Add(time.Microsecond)
		base = c.held
	}
	return base.Add(time.Duration(c.shift.Load()))
}

func (c *shiftedClock) hold() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = time.Now()
}

// release lets the clock run again with real time, from no earlier than
// it read while held.
func (c *shiftedClock) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ahead := c.held.Sub(time.Now()); ahead > 0 {
		c.shift.Add(int64(ahead)) // never back
	}
	c.held = time.Time{}
}

// releaseAfter is a handler wrapper that releases clk once the first
// request that first says has been answered.
func releaseAfter(first writeOf, clk *shiftedClock) func(*nssim.Sim, http.Handler) http.Handler {
	return func(_ *nssim.Sim, h http.Handler) http.Handler {
		var once sync.Once
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r)
			if first(r.Method, r.URL.Path) {
				once.Do(clk.release)
			}
		})
	}
}

// joinsOf lists the statuses of the joins nssim answered.
func joinsOf(sim *nssim.Sim) []int {
	var out []int
	join := isOp(http.MethodPatch, "transfer")
	for _, r := range sim.Requests() {
		if join(r.Method, r.Path) {
			out = append(out, r.Status)
		}
	}
	return out
}

// setupIgnoredJoin is a harness whose PBX serves every write by an API
// node lagging behind the switch (nssim.Chaos.LaggingNodeWriteRate), with
// the caller's call old enough for it and the consult not, until the
// first join has been answered; nssim's default for an attended transfer
// to a session such a node does not know is the other side of the 404
// guess (nssim.DestinationIgnore): accepted, 202, and nothing done. The
// calls are on one core server, so that the join has no second form
// naming another (JoinAgain's other reason). The visibility window is
// window, the verification patience twice that. clk, the engine's and
// the adapter's clock, is held until the first join has been answered:
// the join follows the dial's answer by no time at all (by as much as the
// test shifts clk), not by however long the machine took, which on a
// loaded one could pass the window and turn the case into the other side
// of it.
func setupIgnoredJoin(t *testing.T, window time.Duration, clk *shiftedClock) (*harness, nssim.ActiveCall) {
	t.Helper()
	simClock := &fakeClock{now: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	join := isOp(http.MethodPatch, "transfer")
	lag, release := lagWritesUntil(join), releaseAfter(join, clk)
	sim, srv := newSimServer(t, nssim.Config{Now: simClock.Now, CoreServers: []string{"core1-sim.netsapiens.test"}},
		func(sim *nssim.Sim, h http.Handler) http.Handler { return release(sim, lag(sim, h)) })
	clk.hold()
	store := orchestratortest.NewSaved(memory.New())
	h := newHarnessWith(t, sim, srv, store, store, "", netsapiens.Config{Now: clk.Now}, func(c *orchestrator.Config) {
		c.VisibilityWindow, c.VerifyTimeout, c.Clock = window, 2*window, clk.Now
	})
	// Registered after the harness, so run before its shutdown: time
	// passes, so that what a failed test left can end.
	t.Cleanup(clk.release)
	orig := h.placeCall(t)
	simClock.advance(time.Minute) // the caller's call is old to the lagging node
	if err := sim.SetChaos(nssim.Chaos{LaggingNodeWriteRate: 1, LaggingNodeAge: 30 * time.Second}, 0); err != nil {
		t.Fatal(err)
	}
	return h, orig
}

// The join goes out a moment after the target answered, a moment after
// the dial. An API node lagging behind the switch, serving writes too,
// does not know the consult's session yet; on the side of the guess where
// such a node accepts an attended transfer to a session it does not know
// and does nothing, the join was answered 202 and never took. Nothing was
// reported wrongly (no reading showed the caller with the target; the
// transfer failed provider_error once the verification patience ran out,
// the consult hung up and the caller given back, verified), but a
// transfer that would have completed had the join reached a node that
// knew the consult was given up. A reading a window after the join shows
// it did not take, so sending it again is not blind: a join sent within
// the visibility window of the dial, which a lagging node may have
// accepted without knowing the consult, is now sent once more, and the
// node that has caught up applies it. (The other side of the 404 guess:
// TestAJoinAnsweredNotFoundByALaggingNodeIsSentAgain.)
func TestAJoinAcceptedAndIgnoredByALaggingNodeIsSentAgain(t *testing.T) {
	h, orig := setupIgnoredJoin(t, 2*time.Second, &shiftedClock{})
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
	if joins := joinsOf(h.sim); len(joins) != 2 || joins[0] != http.StatusAccepted {
		t.Errorf("joins answered %v; want the lagging node's 202, then one more", joins)
	}
	assertCompleted(t, tr)
	assertJoined(t, h, orig, "1010")
}

// The other side of the window: a join sent once the consult is older
// than the visibility window of its dial, which no lagging node within
// the design's bound can still not know, and which was accepted and did
// not take (here a node lagging longer than that bound), is not sent
// again: it failed for a reason a second one would not change as far as
// anything shows. The transfer fails provider_error once the patience
// runs out, with the consult hung up and the caller given back, verified,
// nothing reported joined and nothing undone.
func TestAJoinAcceptedAndIgnoredPastTheWindowOfTheDialIsNotSentAgain(t *testing.T) {
	const window = 2 * time.Second
	clk := &shiftedClock{}
	h, orig := setupIgnoredJoin(t, window, clk)
	tr := h.start(t, orchestrator.CompletionManual, 0)
	h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	clk.shift.Store(int64(window + time.Second)) // the complete comes past the window of the dial
	if _, err := h.eng.Complete(t.Context(), tr.ID); err != nil {
		t.Fatal(err)
	}
	tr = h.end(t, tr.ID)
	if joins := joinsOf(h.sim); len(joins) != 1 || joins[0] != http.StatusAccepted {
		t.Errorf("joins answered %v; want the one accepted, not sent again", joins)
	}
	if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonProviderError ||
		!tr.Outcome.CallerRestored || !tr.Outcome.Verified {
		t.Fatalf("state %s outcome %+v; want failed provider_error, the caller restored, verified", tr.State, tr.Outcome)
	}
	assertRestored(t, h, orig)
}
