package netsapiens_test

import (
	"net/http"
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
type shiftedClock struct{ shift atomic.Int64 }

func (c *shiftedClock) Now() time.Time { return time.Now().Add(time.Duration(c.shift.Load())) }

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
// window, the verification patience twice that.
func setupIgnoredJoin(t *testing.T, window time.Duration, clk *shiftedClock) (*harness, nssim.ActiveCall) {
	t.Helper()
	simClock := &fakeClock{now: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	sim, srv := newSimServer(t, nssim.Config{Now: simClock.Now, CoreServers: []string{"core1-sim.netsapiens.test"}},
		lagWritesUntil(isOp(http.MethodPatch, "transfer")))
	store := orchestratortest.NewSaved(memory.New())
	h := newHarnessWith(t, sim, srv, store, store, "", netsapiens.Config{Now: clk.Now}, func(c *orchestrator.Config) {
		c.VisibilityWindow, c.VerifyTimeout, c.Clock = window, 2*window, clk.Now
	})
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
