package netsapiens_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// lagWritesUntil makes every write of the simulator served by an API node
// that does not know calls younger than 30 s by the simulator's clock
// (nssim.Chaos.LaggingNodeWriteRate; reads are served by a node that has
// caught up), until the first request for which first reports true has
// been answered: then the node has caught up for every request. The
// simulator's clock is clock, stopped a minute after the caller's call was
// placed, so that the caller's call is known to the lagging node and
// every call made after it is not (until it catches up).
func lagWritesUntil(first writeOf) func(*nssim.Sim, http.Handler) http.Handler {
	return func(sim *nssim.Sim, h http.Handler) http.Handler {
		var once sync.Once
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r)
			if first(r.Method, r.URL.Path) {
				once.Do(func() {
					if err := sim.SetChaos(nssim.Chaos{}, 0); err != nil {
						panic(err)
					}
				})
			}
		})
	}
}

// writeOf says whether a request (its method, and its path relative to
// the API) is the write looked for.
type writeOf func(method, path string) bool

// isOp is the write by method whose path ends in /op (the empty op: a
// DELETE of a call, the disconnect).
func isOp(method, op string) writeOf {
	return func(m, path string) bool {
		if m != method {
			return false
		}
		if op == "" {
			return !strings.HasSuffix(path, "/reject")
		}
		return strings.HasSuffix(path, "/"+op)
	}
}

// setupLaggingWrites is setup behind lagWritesUntil(first), with the
// write lag on, the caller's call placed a minute before the simulator's
// clock stopped, and a visibility window of window.
func setupLaggingWrites(t *testing.T, simCfg nssim.Config, first writeOf, window time.Duration,
	placeFirst bool) (*harness, nssim.ActiveCall) {
	t.Helper()
	clock := &fakeClock{now: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	simCfg.Now = clock.Now
	h := setupWrapped(t, simCfg, lagWritesUntil(first), func(c *orchestrator.Config) { c.VisibilityWindow = window })
	var orig nssim.ActiveCall
	if placeFirst {
		orig = h.placeCall(t)
		clock.advance(time.Minute) // the caller's call is old to the lagging node
	}
	if err := h.sim.SetChaos(nssim.Chaos{LaggingNodeWriteRate: 1, LaggingNodeAge: 30 * time.Second}, 0); err != nil {
		t.Fatal(err)
	}
	if !placeFirst {
		orig = h.placeCall(t) // young to the lagging node
	}
	return h, orig
}

// answeredNotFound counts the requests of the simulator for which is
// reports true that were answered 404.
func answeredNotFound(h *harness, is writeOf) int {
	n := 0
	for _, r := range h.sim.Requests() {
		if r.Status == http.StatusNotFound && is(r.Method, r.Path) {
			n++
		}
	}
	return n
}

// The join is sent as soon as the target answers, a moment after the
// consult was dialled. An API node lagging behind the switch, serving
// writes too (one side of a guess on top of a guess), does not know the
// consult's session yet and answers the join 404, applying nothing. That
// 404 was the join refused: the transfer failed call_not_found and the
// recovery hung up the consult the target was on. Within the visibility
// window of the dial it is not applied, and unknown: the join is sent
// again, and the node that has caught up applies it.
func TestAJoinAnsweredNotFoundByALaggingNodeIsSentAgain(t *testing.T) {
	join := isOp(http.MethodPatch, "transfer")
	h, orig := setupLaggingWrites(t, nssim.Config{UnknownDestination: nssim.DestinationNotFound}, join, 10*time.Second, true)
	tr := h.start(t, orchestrator.CompletionAuto, 0)
	tr = h.end(t, tr.ID)
	if n := answeredNotFound(h, join); n != 1 {
		t.Fatalf("%d joins answered 404, want the first one (the lagging node's)", n)
	}
	if tr.State != orchestrator.StateCompleted || tr.Outcome.Reason != orchestrator.ReasonTransferred {
		t.Fatalf("state %s outcome %+v; want completed, transferred (the join sent again once the node caught up)", tr.State, tr.Outcome)
	}
	sessions := h.sim.Sessions(domain)
	if len(sessions) != 1 || sessions[0].OrigCallID != orig.OrigCallID || sessions[0].TermUser != "1010" {
		t.Fatalf("sessions %+v; want the caller with the target", sessions)
	}
}

// A hold sent a moment after the agent answered the caller: an API node
// lagging behind, serving writes too, does not know the call yet and
// answers 404, holding nothing. That 404 failed the transfer
// call_not_found; within the visibility window of the transfer's start
// (the call is older than the transfer) it is unknown, and the hold is
// sent again.
func TestAHoldAnsweredNotFoundByALaggingNodeIsSentAgain(t *testing.T) {
	hold := isOp(http.MethodPatch, "hold")
	h, orig := setupLaggingWrites(t, nssim.Config{}, hold, 2*time.Second, false)
	tr := h.start(t, orchestrator.CompletionAuto, 0)
	tr = h.end(t, tr.ID)
	if n := answeredNotFound(h, hold); n != 1 {
		t.Fatalf("%d holds answered 404, want the first one (the lagging node's)", n)
	}
	if tr.State != orchestrator.StateCompleted || tr.Outcome.Reason != orchestrator.ReasonTransferred {
		t.Fatalf("state %s outcome %+v; want completed, transferred (the hold sent again once the node caught up)", tr.State, tr.Outcome)
	}
	sessions := h.sim.Sessions(domain)
	if len(sessions) != 1 || sessions[0].OrigCallID != orig.OrigCallID || sessions[0].TermUser != "1010" {
		t.Fatalf("sessions %+v; want the caller with the target", sessions)
	}
}

// A cancel a moment after the dial: the consult's hang-up (a reject of a
// consult still ringing, then a DELETE by our call-id) reaches an API
// node that does not know the consult yet, and is answered 404, ending
// nothing. The adapter has always taken a 404 there for "ended, or not
// listed yet", which the engine keeps watching: the reading that shows
// the consult up once the hang-up could have applied makes it send the
// hang-up again, and the target is hung up, the caller given back. No fix
// was needed; both sides hold: so it is with the writes lagging (until
// the first DELETE of the call), and with them not.
func TestACancelsHangupAnsweredNotFoundByALaggingNodeIsSentAgain(t *testing.T) {
	for _, answered := range []bool{true, false} {
		for _, lag := range []bool{true, false} {
			name := map[bool]string{true: "answered", false: "ringing"}[answered] + "/" +
				map[bool]string{true: "writes lag", false: "writes do not lag"}[lag]
			t.Run(name, func(t *testing.T) {
				h, orig := setupLaggingWrites(t, nssim.Config{}, isOp(http.MethodDelete, ""), 2*time.Second, true)
				if !lag {
					if err := h.sim.SetChaos(nssim.Chaos{}, 0); err != nil {
						t.Fatal(err)
					}
				}
				if !answered {
					h.sim.SetBehaviour(domain, "1010", nssim.Behaviour{Mode: nssim.ModeManual})
				}
				tr := h.start(t, orchestrator.CompletionManual, 0)
				tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered || (!answered && x.Seen.Consult) })
				if _, err := h.eng.Cancel(t.Context(), tr.ID); err != nil {
					t.Fatal(err)
				}
				tr = h.end(t, tr.ID)
				first := 0
				for _, r := range h.sim.Requests() {
					if r.Method == http.MethodDelete {
						first = r.Status
						break
					}
				}
				if (first == http.StatusNotFound) != lag {
					t.Fatalf("the first hang-up was answered %d; want 404 only with the writes lagging", first)
				}
				if tr.State != orchestrator.StateCancelled || tr.Outcome.Reason != orchestrator.ReasonCancelled ||
					!tr.Outcome.CallerRestored || !tr.Outcome.Verified {
					t.Fatalf("state %s outcome %+v; want cancelled, the caller restored, verified", tr.State, tr.Outcome)
				}
				assertRestored(t, h, orig)
			})
		}
	}
}

// The adapter's side, on both sides of the window: a hold or a join
// answered 404 for a call younger than the visibility window (the
// caller's since the transfer was asked for, the consult since its dial)
// is unknown, the join marked not sent (owed again); past the window a
// 404 is what it always was, the call not found, a refusal. A join sent
// again after one that was applied finds the caller's call no longer the
// agent's, and does nothing: the caller stays with the target. (The
// engine sends a join again only on a reading, taken a window after the
// join, that shows it did not take: past the window of the dial, where a
// 404 is a refusal, never a join not sent.)
func TestAWriteAnsweredNotFoundIsUnknownWithinTheWindowOnly(t *testing.T) {
	const trID = "tr_01JLAGGINGWRITESXXXXXXXXXX0"
	const window = 5 * time.Second
	clock := &fakeClock{now: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	sim, srv := newSimServer(t, nssim.Config{Now: clock.Now, UnknownDestination: nssim.DestinationNotFound}, nil)
	orig, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + basePath, APIKey: apiKey, Attempts: 1,
		VisibilityWindow: window, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	tr := transferOf(trID, orig)
	tr.CreatedAt = clock.Now()
	lagWrites := func(on bool) {
		t.Helper()
		var ch nssim.Chaos
		if on {
			ch = nssim.Chaos{LaggingNodeWriteRate: 1, LaggingNodeAge: 30 * time.Second}
		}
		if err := sim.SetChaos(ch, 0); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()

	lagWrites(true)
	if err := c.Hold(ctx, tr); orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
		t.Fatalf("a hold answered 404 a moment after the transfer was asked for: %v (kind %v), want unknown", err, orchestrator.KindOf(err))
	}
	clock.advance(window)
	if err := c.Hold(ctx, tr); orchestrator.KindOf(err) != orchestrator.KindCallNotFound {
		t.Fatalf("a hold answered 404 past the window: %v (kind %v), want the call not found", err, orchestrator.KindOf(err))
	}
	lagWrites(false)
	if err := c.Hold(ctx, tr); err != nil {
		t.Fatal(err)
	}

	clock.advance(time.Minute) // the caller's call is old; the consult will not be
	tr.Sent.Dial = clock.Now()
	dialConsult(t, sim, c, tr)
	for _, s := range sim.Sessions(domain) {
		if s.ByCallID == netsapiens.ConsultCallID(trID) {
			tr.Legs.Consult = orchestrator.LegRef{CallID: netsapiens.ConsultCallID(trID), SessionID: s.SessionID, Server: s.CoreServer}
		}
	}
	lagWrites(true)
	err = c.Complete(ctx, tr)
	if orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable || !errors.Is(err, orchestrator.ErrNotSent) {
		t.Fatalf("a join answered 404 a moment after the dial: %v (kind %v), want unknown and not sent", err, orchestrator.KindOf(err))
	}
	if ev := orchestrator.EvidenceOf(err); ev == nil || ev.Status != http.StatusNotFound {
		t.Errorf("evidence %+v, want the PBX's 404", ev)
	}
	clock.advance(window)
	err = c.Complete(ctx, tr)
	if orchestrator.KindOf(err) != orchestrator.KindCallNotFound || errors.Is(err, orchestrator.ErrNotSent) {
		t.Fatalf("a join answered 404 past the window: %v (kind %v), want refused (call not found), sent", err, orchestrator.KindOf(err))
	}

	lagWrites(false)
	if err := c.Complete(ctx, tr); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sim.WaitApplied(wctx); err != nil {
		t.Fatal(err)
	}
	joined := func() {
		t.Helper()
		sessions := sim.Sessions(domain)
		if len(sessions) != 1 || sessions[0].OrigCallID != orig.OrigCallID || sessions[0].TermUser != "1010" {
			t.Fatalf("sessions %+v; want the caller with the target", sessions)
		}
	}
	joined()
	if err := c.Complete(ctx, tr); orchestrator.KindOf(err) != orchestrator.KindCallNotFound || errors.Is(err, orchestrator.ErrNotSent) {
		t.Fatalf("a join sent again after one applied: %v (kind %v), want refused", err, orchestrator.KindOf(err))
	}
	if err := sim.WaitApplied(wctx); err != nil {
		t.Fatal(err)
	}
	joined()
}

// lagFirst makes the first request for which is reports true served by a
// lagging API node that serves writes too and does not know calls
// younger than 30 s by the simulator's clock (stopped by the caller),
// and every other request by one that has caught up.
func lagFirst(is writeOf) func(*nssim.Sim, http.Handler) http.Handler {
	return func(sim *nssim.Sim, h http.Handler) http.Handler {
		var once sync.Once
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			first := false
			if is(r.Method, r.URL.Path) {
				once.Do(func() { first = true })
			}
			if !first {
				h.ServeHTTP(w, r)
				return
			}
			if err := sim.SetChaos(nssim.Chaos{LaggingNodeWriteRate: 1, LaggingNodeAge: 30 * time.Second}, 0); err != nil {
				panic(err)
			}
			h.ServeHTTP(w, r)
			if err := sim.SetChaos(nssim.Chaos{}, 0); err != nil {
				panic(err)
			}
		})
	}
}

// The recovery's unhold of a caller whose call began a moment ago,
// answered 404 by a lagging node that did nothing: the engine takes the
// caller for gone only until a reading shows the caller held, then sends
// the unhold again. No fix was needed: the caller is given back, verified.
func TestAnUnholdAnsweredNotFoundByALaggingNodeIsSentAgain(t *testing.T) {
	unhold := isOp(http.MethodPatch, "unhold")
	clock := &fakeClock{now: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	h := setupWrapped(t, nssim.Config{Now: clock.Now}, lagFirst(unhold),
		func(c *orchestrator.Config) { c.VisibilityWindow = 2 * time.Second })
	orig := h.placeCall(t)
	tr := h.start(t, orchestrator.CompletionManual, 0)
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	if _, err := h.eng.Cancel(t.Context(), tr.ID); err != nil {
		t.Fatal(err)
	}
	tr = h.end(t, tr.ID)
	if n := answeredNotFound(h, unhold); n != 1 {
		t.Fatalf("%d unholds answered 404, want the first one (the lagging node's)", n)
	}
	if tr.State != orchestrator.StateCancelled || tr.Outcome.Reason != orchestrator.ReasonCancelled ||
		!tr.Outcome.CallerRestored || !tr.Outcome.Verified {
		t.Fatalf("state %s outcome %+v; want cancelled, the caller restored, verified", tr.State, tr.Outcome)
	}
	assertRestored(t, h, orig)
}
