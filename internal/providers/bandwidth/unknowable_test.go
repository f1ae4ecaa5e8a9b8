package bandwidth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
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
	var a, g bwsim.Call
	var b1 bwsim.Bridge
	var tid atomic.Value // the consult call the join puts with the caller
	var withTarget atomic.Bool
	// The caller hangs up once the join has applied, before the join is
	// answered. No other request is served while the join and the hang-up
	// are under way, so no reading can fall between them: the watcher
	// reads every millisecond, and a reading that showed the caller with
	// the target (a GET that arrived before the join and was served after
	// it) would be a true sighting of the join, not the moment the test is
	// about.
	var once sync.Once
	var gate sync.RWMutex
	wrap := func(sim *bwsim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var j struct {
				CallIDs []string `json:"callIds"`
			}
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			join := r.Method == http.MethodPost && r.URL.Path == "/users/"+userID+"/bridges/"+b1.ID &&
				json.Unmarshal(body, &j) == nil && len(j.CallIDs) == 2 && j.CallIDs[0] == a.ID
			if !join {
				gate.RLock()
				defer gate.RUnlock()
				api.ServeHTTP(w, r)
				return
			}
			gate.Lock()
			defer gate.Unlock()
			api.ServeHTTP(w, r)
			// bwsim applies a bridge update before answering it (no
			// ActionDelay here): a join not applied now was refused, and
			// the adapter sends it again.
			if !sim.Connected(a.ID, j.CallIDs[1]) {
				return
			}
			once.Do(func() {
				tid.Store(j.CallIDs[1])
				withTarget.Store(true)
				if err := sim.Hangup(a.ID); err != nil {
					t.Error(err)
				}
			})
		})
	}
	h := setup(t, options{wrap: wrap, engine: func(c *orchestrator.Config) { c.VerifyTimeout = 300 * time.Millisecond }})
	a, g, b1 = h.placeBridged(t)
	tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
	if !withTarget.Load() {
		t.Fatal("the caller was never with the target")
	}
	tr = h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
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

// An announced transfer whose caller hangs up after the target answered,
// before any reading showed the caller with the target: the platform
// connected them (the B-leg keeps its answer time), and then the caller's
// call ended, taking the B-leg with it. Every reading from then on shows
// both calls ended.
//
// When the caller's call ended in the same second as the target answered
// (the call object's times are whole seconds), the objects cannot show
// which came first: the outcome says it cannot be verified, with nothing
// left to do. Before, it was failed, target_hung_up, verified: a claim
// that the provider showed the target hung up on a caller never
// transferred. When it ended a later second, the target answered first,
// and with no whisper the platform connected them then: completed,
// transferred, verified. With a whisper, which the target hears before
// the bridge, an answer does not show the bridge: unverified again.
func TestAnnouncedCallerGoneRightAfterTheAnswer(t *testing.T) {
	cases := []struct {
		name    string
		later   time.Duration // how long after the answer, by the platform's clock, the caller hangs up
		whisper bool
		known   bool // the outcome is completed, verified
	}{
		{name: "same second", later: 0},
		{name: "a later second", later: 2 * time.Second, known: true},
		{name: "a later second, whisper", later: 2 * time.Second, whisper: true},
	}
	for _, tc := range cases {
		for _, public := range []bool{false, true} {
			name := tc.name + ", polling"
			if public {
				name = tc.name + ", callbackUrl"
			}
			t.Run(name, func(t *testing.T) {
				// The platform's clock stands still but for the step the case
				// makes: the times the call objects show are the ones the case
				// names, however slowly the test runs.
				clock := &stepClock{at: time.Now().Truncate(time.Second)}
				h := setup(t, options{callbacks: public, sim: bwsim.Config{Now: clock.now}})
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
					clock.step(tc.later)
					if err := h.sim.Hangup(a.ID); err != nil {
						t.Error(err)
					}
				})
				req := announcedReq(a, target)
				if tc.whisper {
					req.Whisper = &orchestrator.Whisper{Sentence: "Hello! You have an incoming call"}
				}
				tr := h.end(t, h.start(t, req).ID)
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
				} else if tr.State != orchestrator.StateFailed || o.CallerRestored || o.Verified || tr.Cleanup != nil ||
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
}

// stepClock is a clock that moves only when a test steps it.
type stepClock struct {
	mu sync.Mutex
	at time.Time
}

func (c *stepClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

func (c *stepClock) step(d time.Duration) {
	c.mu.Lock()
	c.at = c.at.Add(d)
	c.mu.Unlock()
}

// An announced transfer cancelled while its target rings, on a platform
// that applies the hang-up late: the target answers first, the platform
// connects the caller to it, and then the hang-up lands and ends the call
// (Bandwidth ends a transfer as a whole). The caller's call ended a later
// second than the target answered, as when a transfer took and the call
// ended since; but here transferd's own hang-up may have ended it, and no
// call object tells whose end it was. So the outcome is not completed,
// nor verified. (The storm found it: with the first version of the rule
// above, seed 166185321966901 failed once in five runs; this holds the
// interleaving its cancelled announced transfers can reach.)
func TestAnnouncedHangupLandingAfterTheAnswerIsNotTakenForTransferred(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	clock := &stepClock{at: time.Now().Truncate(time.Second)}
	h := setup(t, options{sim: bwsim.Config{Now: clock.now}})
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
	a := h.placeCall(t)
	tr := h.start(t, announcedReq(a, target))
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool {
		return x.State == orchestrator.StateConsulting && x.Legs.Consult.CallID != ""
	})
	b := tr.Legs.Consult.CallID
	if err := h.sim.SetAdversity(bwsim.Config{ActionDelay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.eng.Cancel(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	// The hang-up is accepted, and waits.
	if err := h.sim.WaitFor(ctx, func() bool {
		return slices.ContainsFunc(h.sim.Actions(), func(ac bwsim.Action) bool {
			return ac.Target == b && ac.Outcome == bwsim.ActionPending
		})
	}); err != nil {
		t.Fatalf("no hang-up of the B-leg was accepted: %v", err)
	}
	// The target answers before it lands; a second later by the
	// platform's clock, it lands.
	if err := h.sim.Answer(target); err != nil {
		t.Fatal(err)
	}
	clock.step(2 * time.Second)
	h.sim.Settle()
	if c := mustCall(t, h, a.ID); c.State != bwsim.StateCompleted {
		t.Fatalf("the caller's call is %s; the landing hang-up should have ended it", c.State)
	}
	tr = h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	if o := tr.Outcome; tr.State == orchestrator.StateCompleted || o.Verified || o.CallerRestored {
		t.Fatalf("state %s outcome %+v: want neither completed nor verified nor restored", tr.State, o)
	}
	t.Logf("state %s, outcome %+v", tr.State, tr.Outcome)
}
