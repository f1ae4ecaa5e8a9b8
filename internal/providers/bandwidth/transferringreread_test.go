package bandwidth_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// A reading reads the caller's call, then the B-leg. Between the two the
// target answered, the platform connected the caller to it, and the
// target hung up a later second, taking the caller's call with it (a
// connected transfer ends as a whole): the caller's call read
// "transferring", the B-leg ended after its answer. The reading took the
// caller for still held and the B-leg's end for the target hanging up on
// a caller never connected (the engine reported failed, target_hung_up,
// unverified), while the platform had connected them. The caller's call read "active" before such
// a B-leg was read again; one read "transferring" is now read again too,
// and shows the caller's call ended after the answer: connected, the call
// ended since. In the same second nothing tells the order, and with a
// whisper the answer does not show the bridge: the caller's call is then
// reported ended with the B-leg answered, which the engine reports as
// unverifiable, not as the target hanging up on a caller held.
func TestACallerReadTransferringBeforeTheLegEndedAfterItsAnswerIsReadAgain(t *testing.T) {
	cases := []struct {
		name    string
		later   time.Duration // how long after the answer the target hangs up, by the platform's clock
		whisper bool
		want    orchestrator.CallerState
	}{
		{name: "a later second", later: 2 * time.Second, want: orchestrator.CallerTransferred},
		{name: "the same second", want: orchestrator.CallerGone},
		{name: "a later second, whisper", later: 2 * time.Second, whisper: true, want: orchestrator.CallerGone},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := &stepClock{at: time.Now().Truncate(time.Second)}
			h := setup(t, options{sim: bwsim.Config{Now: clock.now}})
			h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
			ctx := context.Background()
			a := h.placeCall(t)
			req := announcedReq(a, target)
			if tc.whisper {
				req.Whisper = &orchestrator.Whisper{Sentence: "Hello! You have an incoming call"}
			}
			tr := transferFor(req)
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
			tr.Legs.Consult = b
			tr.Seen.Consult = true
			h.before(func(method, path, _ string) bool {
				return method == http.MethodGet && path == "/users/"+userID+"/calls/"+b.CallID
			}, func() {
				if err := h.sim.Answer(target); err != nil {
					t.Error(err)
				}
				if !h.sim.Connected(a.ID, b.CallID) {
					t.Error("setup: the platform did not connect the caller to the target")
				}
				clock.step(tc.later)
				if err := h.sim.Hangup(b.CallID); err != nil {
					t.Error(err)
				}
			})
			obs, err := observe(t, h, tr)
			if err != nil {
				t.Fatal(err)
			}
			if !mustCall(t, h, a.ID).Ended() {
				t.Fatal("setup: the caller's call should have ended with the connected B-leg")
			}
			if obs.Caller != tc.want || obs.Consult != orchestrator.ConsultEnded || !obs.ConsultWasAnswered {
				t.Fatalf("reading = %+v; want the caller %s, the B-leg ended after its answer", obs, tc.want)
			}
			if tc.want == orchestrator.CallerTransferred && !obs.CallerEnded {
				t.Errorf("reading = %+v; want the call ended since", obs)
			}
		})
	}
}

// End to end: the target answers and hangs up between the reading's read
// of the caller's call and its read of the B-leg. A later second: the
// platform connected them, and the outcome is completed, the call ended
// since (it was failed, target_hung_up, and unverified: the engine could
// not rule out a connection the reading had not seen). The same second:
// it cannot be verified, final (so before too).
func TestATargetThatAnswersAndHangsUpBetweenTwoReadsOfOneReading(t *testing.T) {
	for _, tc := range []struct {
		name  string
		later time.Duration
		known bool
	}{
		{name: "a later second", later: 2 * time.Second, known: true},
		{name: "the same second"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := &stepClock{at: time.Now().Truncate(time.Second)}
			h := setup(t, options{sim: bwsim.Config{Now: clock.now}})
			h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
			a := h.placeCall(t)
			var sent atomic.Bool
			h.before(func(method, path, body string) bool {
				ok := method == http.MethodPost && path == "/users/"+userID+"/calls/"+a.ID && strings.Contains(body, bwsim.StateTransferring)
				if ok {
					sent.Store(true)
				}
				return ok
			}, func() {})
			var b atomic.Value
			h.before(func(method, path, _ string) bool {
				return method == http.MethodGet && sent.Load() && strings.HasPrefix(path, "/users/"+userID+"/calls/c-") &&
					path != "/users/"+userID+"/calls/"+a.ID && !strings.HasSuffix(path, "/events")
			}, func() {
				if err := h.sim.Answer(target); err != nil {
					t.Error(err)
					return
				}
				for _, c := range h.sim.Calls() {
					if c.ID != a.ID && h.sim.Connected(a.ID, c.ID) {
						b.Store(c.ID)
					}
				}
				if b.Load() == nil {
					t.Error("setup: the platform did not connect the caller to the target")
					return
				}
				clock.step(tc.later)
				if err := h.sim.Hangup(b.Load().(string)); err != nil {
					t.Error(err)
				}
			})
			tr := h.end(t, h.start(t, announcedReq(a, target)).ID)
			if b.Load() == nil {
				t.Fatal("the caller was never with the target")
			}
			tr = h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
			o := tr.Outcome
			if tc.known {
				if tr.State != orchestrator.StateCompleted || o.Reason != orchestrator.ReasonTransferred || !o.Verified ||
					!strings.Contains(o.Detail, "the call has ended since") {
					t.Fatalf("state %s outcome %+v: want completed, transferred, verified, the call ended since", tr.State, o)
				}
				return
			}
			if tr.State != orchestrator.StateFailed || o.CallerRestored || o.Verified || !strings.Contains(o.Detail, "cannot be verified") {
				t.Fatalf("state %s outcome %+v: want failed, not restored, unverified", tr.State, o)
			}
		})
	}
}
