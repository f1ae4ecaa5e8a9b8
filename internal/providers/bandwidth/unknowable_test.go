package bandwidth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// An attended transfer whose caller hangs up right after the join put
// them with the target, before any reading showed the join: every reading
// from then on shows the caller's call completed, as it would had the
// caller hung up first. The outcome is reported as known (failed, not
// restored), never verified, and final: no reading can tell. Before, it
// was verified, a claim the simulator's truth contradicts.
func TestAttendedCallerGoneRightAfterTheJoinCannotBeVerified(t *testing.T) {
	h := setup(t, options{engine: func(c *orchestrator.Config) { c.VerifyTimeout = 300 * time.Millisecond }})
	a, g, b1 := h.placeBridged(t)
	var tid atomic.Value // the consult call the join puts with the caller
	h.before(func(method, path, body string) bool {
		var j struct {
			CallIDs []string `json:"callIds"`
		}
		if method != http.MethodPost || path != "/users/"+userID+"/bridges/"+b1.ID ||
			json.Unmarshal([]byte(body), &j) != nil || len(j.CallIDs) != 2 || j.CallIDs[0] != a.ID {
			return false
		}
		tid.Store(j.CallIDs[1])
		return true
	}, func() {})
	var withTarget atomic.Bool
	h.before(func(method, _, _ string) bool { return method == http.MethodGet && tid.Load() != nil }, func() {
		// The first reading after the join: the caller hangs up once the
		// join has applied, before this reading is answered.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		id := tid.Load().(string)
		if err := h.sim.WaitFor(ctx, func() bool { return h.sim.Connected(a.ID, id) }); err != nil {
			t.Errorf("the join did not apply: %v", err)
			return
		}
		withTarget.Store(true)
		if err := h.sim.Hangup(a.ID); err != nil {
			t.Error(err)
		}
	})
	tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
	if !withTarget.Load() {
		t.Fatal("the caller was never with the target")
	}
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	o := tr.Outcome
	if tr.State != orchestrator.StateFailed || o.CallerRestored || o.Verified || tr.Cleanup != nil ||
		!strings.Contains(o.Detail, "cannot be verified") {
		t.Fatalf("state %s outcome %+v cleanup %+v; want failed, not restored, unverified for good", tr.State, o, tr.Cleanup)
	}
	h.idle(t)
	if c := mustCall(t, h, tid.Load().(string)); c.State != bwsim.StateCompleted {
		t.Errorf("the consult call is %s", c.State)
	}
}

// An announced transfer whose caller hangs up right after the target
// answered, before any reading showed the caller with the target: the
// platform connected them (the B-leg keeps its answer time), and then the
// caller's call ended, taking the B-leg with it. Every reading from then on
// shows both calls ended. Before, the outcome was failed, target_hung_up,
// verified: a claim that the provider showed the target hung up on a
// caller never transferred. Now the target's answer is recorded, and the
// outcome says it cannot be verified, with nothing left to do.
func TestAnnouncedCallerGoneRightAfterTheAnswerCannotBeVerified(t *testing.T) {
	for _, public := range []bool{false, true} {
		name := "polling"
		if public {
			name = "callbackUrl"
		}
		t.Run(name, func(t *testing.T) {
			h := setup(t, options{callbacks: public})
			a := h.placeCall(t)
			var sent atomic.Bool
			h.before(func(method, path, body string) bool {
				ok := method == http.MethodPost && path == "/users/"+userID+"/calls/"+a.ID && strings.Contains(body, bwsim.StateTransferring)
				if ok {
					sent.Store(true)
				}
				return ok
			}, func() {})
			var b atomic.Value // the B-leg the caller was connected to
			h.before(func(method, _, _ string) bool { return method == http.MethodGet && sent.Load() }, func() {
				// The first reading after the transfer: the caller hangs up
				// once the target has answered, before it is answered.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err := h.sim.WaitFor(ctx, func() bool {
					for _, c := range h.sim.Calls() {
						if c.ID != a.ID && h.sim.Connected(a.ID, c.ID) {
							b.Store(c.ID)
							return true
						}
					}
					return false
				})
				if err != nil {
					t.Errorf("the target never answered: %v", err)
					return
				}
				if err := h.sim.Hangup(a.ID); err != nil {
					t.Error(err)
				}
			})
			tr := h.end(t, h.start(t, announcedReq(a, target)).ID)
			if b.Load() == nil {
				t.Fatal("the caller was never with the target")
			}
			tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
			o := tr.Outcome
			if tr.State != orchestrator.StateFailed || o.CallerRestored || o.Verified || tr.Cleanup != nil ||
				!strings.Contains(o.Detail, "cannot be verified") {
				t.Fatalf("state %s outcome %+v cleanup %+v; want failed, not restored, unverified for good", tr.State, o, tr.Cleanup)
			}
			if !tr.Answered {
				t.Error("target_answered is false: the B-leg was answered")
			}
			h.idle(t)
			for _, id := range []string{a.ID, b.Load().(string)} {
				if c := mustCall(t, h, id); c.State != bwsim.StateCompleted {
					t.Errorf("call %s is %s", id, c.State)
				}
			}
		})
	}
}
