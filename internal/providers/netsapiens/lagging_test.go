package netsapiens_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// fakeClock is a clock the simulator and the adapter share.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// observer returns a function that reads tr's calls through c and
// observes tr in that reading, failing the test if the reading fails.
func observer(t *testing.T, c *netsapiens.Client, tr *orchestrator.Transfer) func() (orchestrator.Observation, error) {
	return func() (orchestrator.Observation, error) {
		t.Helper()
		v, err := c.Read(context.Background(), "k", []*orchestrator.Transfer{tr})
		if err != nil {
			t.Fatal(err)
		}
		return v.Observe(tr)
	}
}

// youngConsult is where the lagging node's tests start: a simulator and
// an adapter on one stopped clock, the caller's call orig placed a minute
// before it stopped (old to a lagging node), and tr's consult dialled
// now (young to it), with a visibility window of window.
func youngConsult(t *testing.T, trID string, simCfg nssim.Config, window time.Duration) (*fakeClock, *nssim.Sim, *netsapiens.Client, *orchestrator.Transfer, nssim.ActiveCall) {
	t.Helper()
	return youngConsultAfter(t, trID, simCfg, window, nil)
}

// youngConsultAfter is youngConsult with before (when not nil) run on the
// simulator before the agent's call is placed: calls of other users that
// come before it in a listing.
func youngConsultAfter(t *testing.T, trID string, simCfg nssim.Config, window time.Duration,
	before func(*nssim.Sim)) (*fakeClock, *nssim.Sim, *netsapiens.Client, *orchestrator.Transfer, nssim.ActiveCall) {
	t.Helper()
	clock := &fakeClock{now: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	simCfg.Now = clock.Now
	sim, srv := newSimServer(t, simCfg, nil)
	if before != nil {
		before(sim)
	}
	orig, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"})
	if err != nil {
		t.Fatal(err)
	}
	clock.advance(time.Minute)
	c, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + basePath, APIKey: apiKey, Attempts: 1,
		VisibilityWindow: window, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tr := transferOf(trID, orig)
	tr.Sent.Dial = clock.Now()
	dialConsult(t, sim, c, tr)
	return clock, sim, c, tr, orig
}

// Behind a load balancer, an API node lagging behind the one that listed
// a call leaves it out of its listing and answers 404 to a read of it by
// id (nssim's lagging node). Such a 404 for a consult seen a moment ago
// was taken for the consult ended, and remembered: the transfer ended
// target_hung_up while the target talked to the agent. Within the
// visibility window of the dial it is an unknown reading, not
// remembered; the consult seen again once the node catches up. Past the
// window a 404 is the consult ended, as one that really ended is. The
// caller's call alike, within the window of the transfer's start.
func TestANotFoundFromALaggingNodeIsUnknownWithinTheWindow(t *testing.T) {
	const trID = "tr_01JLAGGINGNODEXXXXXXXXXXXX0"
	const window = 5 * time.Second
	clock, sim, c, tr, _ := youngConsult(t, trID, nssim.Config{}, window)
	tr.Seen.Consult = true
	observe := observer(t, c, tr)
	if obs, err := observe(); err != nil || obs.Consult == orchestrator.ConsultAbsent {
		t.Fatalf("observation %+v, %v: want the consult shown", obs, err)
	}
	laggedThenEnded(t, clock, sim, observe, trID, window)

	// The caller's call: a call just placed, a transfer just asked for.
	young, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1030", From: "15555555556", To: "11111111111"})
	if err != nil {
		t.Fatal(err)
	}
	tr2 := transferOf("tr_01JLAGGINGNODEXXXXXXXXXXXX1", young)
	tr2.Request.Call.User = "1030"
	tr2.CreatedAt = clock.Now()
	lagging(t, sim, true)
	v, err := c.Read(context.Background(), "k", []*orchestrator.Transfer{tr2})
	if err != nil {
		t.Fatal(err)
	}
	if obs, err := v.Observe(tr2); orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
		t.Fatalf("a lagging node's 404 for a caller's call of a transfer just asked for: observation %+v, %v; want an unknown reading, not the caller gone",
			obs, err)
	}
}

// lagging makes every read of sim an API node's that does not know calls
// younger than 30 s (by sim's clock), or none.
func lagging(t *testing.T, sim *nssim.Sim, on bool) {
	t.Helper()
	var ch nssim.Chaos
	if on {
		ch = nssim.Chaos{LaggingNodeRate: 1, LaggingNodeAge: 30 * time.Second}
	}
	if err := sim.SetChaos(ch, 0); err != nil {
		t.Fatal(err)
	}
}

// laggedThenEnded reads trID's consult, dialled a moment ago and up, with
// observe: window/2 later, from a lagging node, its 404 is an unknown
// reading, not the consult ended, and not remembered once the node caught
// up. The other side: the consult really ends; within the window a 404 is
// still unknown, past it the consult has ended.
func laggedThenEnded(t *testing.T, clock *fakeClock, sim *nssim.Sim, observe func() (orchestrator.Observation, error), trID string, window time.Duration) {
	t.Helper()
	lagging(t, sim, true)
	clock.advance(window / 2)
	if obs, err := observe(); orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
		t.Fatalf("a lagging node's 404 for a consult dialled %s ago: observation %+v, %v; want an unknown reading, not the consult ended",
			window/2, obs, err)
	}
	lagging(t, sim, false)
	if obs, err := observe(); err != nil || obs.Consult == orchestrator.ConsultAbsent {
		t.Fatalf("observation %+v, %v: want the consult shown again once the node caught up (the 404 not remembered)", obs, err)
	}

	hangUpConsult(t, sim, trID)
	if obs, err := observe(); orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
		t.Fatalf("observation %+v, %v: want unknown within the window", obs, err)
	}
	clock.advance(window)
	if obs, err := observe(); err != nil || obs.Consult != orchestrator.ConsultAbsent {
		t.Fatalf("observation %+v, %v: want the consult ended past the window", obs, err)
	}
}

// After a hang-up of a consult dialled a moment ago, a listing from a
// lagging node leaves the consult out whether the hang-up took or not:
// the recovery took that for the consult ended, and verified its outcome
// with the consult up. Within the window the consult not listed is read
// by its id, and a 404 is unknown; past it, a consult that ended is seen
// ended.
func TestAConsultLeftOutByALaggingNodeAfterTheHangupIsUnknown(t *testing.T) {
	const trID = "tr_01JLAGGINGHANGUPXXXXXXXXXX0"
	const window = 5 * time.Second
	clock, sim, c, tr, _ := youngConsult(t, trID, nssim.Config{}, window)
	tr.Seen.Consult = true
	tr.Sent.Hangup = clock.Now() // sent, and (the lagging node's 404) not applied
	observe := observer(t, c, tr)
	lagging(t, sim, true)
	if obs, err := observe(); orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
		t.Fatalf("observation %+v, %v: want an unknown reading, not the consult ended", obs, err)
	}
	lagging(t, sim, false)
	if obs, err := observe(); err != nil || obs.Consult == orchestrator.ConsultAbsent {
		t.Fatalf("observation %+v, %v: want the consult shown up", obs, err)
	}
	for _, s := range sim.Sessions(domain) {
		if s.ByCallID == netsapiens.ConsultCallID(trID) {
			if err := sim.Hangup(s.SessionID, "term"); err != nil {
				t.Fatal(err)
			}
		}
	}
	clock.advance(window)
	if obs, err := observe(); err != nil || obs.Consult != orchestrator.ConsultAbsent {
		t.Fatalf("observation %+v, %v: want the consult ended past the window", obs, err)
	}
}

// After a join, the consult is hung up by its call-id only when a listing
// shows no session with that call-id carrying the caller. Where the PBX
// keeps the consult's session (nssim.JoinKeepsConsult), that session is
// the caller's call with the target, and a lagging node's listing leaves
// it out a moment after the dial: the disconnect ended the caller's call.
// Within the window a listing without it is unknown, and nothing is sent.
func TestAJoinedCallLeftOutByALaggingNodeIsNotHungUp(t *testing.T) {
	const trID = "tr_01JLAGGINGJOINXXXXXXXXXXXX0"
	clock, sim, c, tr, orig := youngConsult(t, trID, nssim.Config{JoinKeeps: nssim.JoinKeepsConsult}, 5*time.Second)
	if err := c.Complete(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sim.WaitApplied(ctx); err != nil {
		t.Fatal(err)
	}
	tr.Sent.Join = clock.Now()

	lagging(t, sim, true)
	if err := c.HangupConsult(context.Background(), tr); orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
		t.Fatalf("hang-up after the join on a lagging node's listing: %v, want an unknown reading", err)
	}
	for _, r := range sim.Requests() {
		if r.Operation == nssim.OpDisconnect || r.Operation == nssim.OpReject {
			t.Errorf("%s %s sent on a listing that cannot show the joined call", r.Method, r.Path)
		}
	}
	up := false
	for _, s := range sim.Truth().Sessions {
		up = up || s.Orig.CallID == orig.OrigCallID || s.Term.CallID == orig.OrigCallID
	}
	if !up {
		t.Fatalf("the caller's call ended: %+v", sim.Truth().Ended)
	}
	// On a listing that shows the joined call, nothing of ours is left.
	lagging(t, sim, false)
	if err := c.HangupConsult(context.Background(), tr); err != nil {
		t.Fatalf("hang-up after the join: %v", err)
	}
}

// The other side, end to end: behind a load balancer one of whose nodes
// lags 200 ms (less than the visibility window, 500 ms here), a target
// who hangs up during the consult is still reported target_hung_up, once
// the window of the dial has passed, with the caller given back; the
// caller's own call, left out and read 404 by the lagging node a moment
// after it was placed, is not taken for the caller gone.
func TestATargetHangingUpBehindALaggingNodeIsTargetHungUp(t *testing.T) {
	h := setup(t, nssim.Config{})
	if err := h.sim.SetChaos(nssim.Chaos{LaggingNodeRate: 0.5, LaggingNodeAge: 200 * time.Millisecond}, 7); err != nil {
		t.Fatal(err)
	}
	orig := h.placeCall(t)
	tr := h.start(t, orchestrator.CompletionManual, 0)
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered && x.Legs.Consult.SessionID != "" })
	if err := h.sim.Hangup(tr.Legs.Consult.SessionID, "term"); err != nil {
		t.Fatal(err)
	}
	tr = h.end(t, tr.ID)
	if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonTargetHungUp || !tr.Outcome.CallerRestored {
		t.Fatalf("state %s outcome %+v; want failed, target_hung_up, the caller restored", tr.State, tr.Outcome)
	}
	if err := h.sim.SetChaos(nssim.Chaos{}, 0); err != nil {
		t.Fatal(err)
	}
	assertRestored(t, h, orig)
}

// The join looks up the consult's session in the listing when the record
// lacks it. A lagging node's listing leaves out a consult dialled a
// moment ago: that was a refusal (provider rejected) and the transfer
// failed; within the window it is unknown (provider unavailable, the join
// not sent), and the engine tries again. Past it, not listed is refused.
func TestAJoinsLookupLeftOutByALaggingNodeIsTriedAgain(t *testing.T) {
	const trID = "tr_01JLAGGINGLOOKUPXXXXXXXXXX0"
	const window = 5 * time.Second
	clock, sim, c, tr, _ := youngConsult(t, trID, nssim.Config{}, window)
	lagging(t, sim, true)
	err := c.Complete(context.Background(), tr)
	if orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable || !errors.Is(err, orchestrator.ErrNotSent) {
		t.Fatalf("join on a lagging node's listing: %v (kind %v), want unknown and not sent", err, orchestrator.KindOf(err))
	}
	clock.advance(window)
	err = c.Complete(context.Background(), tr)
	if orchestrator.KindOf(err) != orchestrator.KindProviderRejected || !errors.Is(err, orchestrator.ErrNotSent) {
		t.Fatalf("join past the window, the consult not listed: %v (kind %v), want refused and not sent", err, orchestrator.KindOf(err))
	}
	for _, r := range sim.Requests() {
		if r.Operation == nssim.OpTransfer {
			t.Errorf("%s %s sent without the consult's session", r.Method, r.Path)
		}
	}
}

// After a join, a PBX that keeps the consult's session (nssim.
// JoinKeepsConsult) lists the caller with the target in the session the
// consult's dial made a moment ago, which a lagging node leaves out: that
// reading showed the caller gone, after a join that took. Within the
// window it is unknown; the caller is seen with the target once the node
// has caught up.
func TestACallerJoinedIntoAYoungSessionLeftOutByALaggingNodeIsUnknown(t *testing.T) {
	const trID = "tr_01JLAGGINGJOINEDXXXXXXXXXX0"
	clock, sim, c, tr, _ := youngConsult(t, trID, nssim.Config{JoinKeeps: nssim.JoinKeepsConsult}, 5*time.Second)
	tr.Seen.Consult = true
	if err := c.Complete(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sim.WaitApplied(ctx); err != nil {
		t.Fatal(err)
	}
	tr.Sent.Join = clock.Now()
	observe := observer(t, c, tr)
	lagging(t, sim, true)
	if obs, err := observe(); orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
		t.Fatalf("observation %+v, %v: want an unknown reading, not the caller gone", obs, err)
	}
	lagging(t, sim, false)
	if obs, err := observe(); err != nil || obs.Caller != orchestrator.CallerTransferred {
		t.Fatalf("observation %+v, %v: want the caller with the target", obs, err)
	}
}
