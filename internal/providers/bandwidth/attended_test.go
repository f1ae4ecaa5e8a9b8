package bandwidth_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// assertAgentRestored checks the simulator: the caller talks to the agent
// again, not held, and the consult call is gone.
func assertAgentRestored(t *testing.T, h *harness, tr *orchestrator.Transfer, a, g bwsim.Call) {
	t.Helper()
	h.idle(t)
	if !h.sim.Connected(a.ID, g.ID) || h.sim.Held(a.ID) {
		ca, _ := h.sim.Call(a.ID)
		cg, _ := h.sim.Call(g.ID)
		t.Fatalf("caller not restored to the agent: A=%+v G=%+v bridges=%+v", ca, cg, h.sim.Bridges())
	}
	if id := tr.Legs.Consult.CallID; id != "" {
		if c := mustCall(t, h, id); !c.Ended() {
			t.Errorf("consult call left %s", c.State)
		}
	}
	for _, c := range h.sim.Calls() {
		if c.To == target && !c.Ended() {
			t.Errorf("a call to the target is still up: %+v", c)
		}
	}
}

func TestAttendedAutoCompletes(t *testing.T) {
	h := setup(t, options{})
	a, g, b1 := h.placeBridged(t)
	tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
	if tr.State != orchestrator.StateCompleted || tr.Outcome.Reason != orchestrator.ReasonTransferred {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	b2, tid := tr.Legs.Consult.BridgeID, tr.Legs.Consult.CallID
	if tr.Legs.Caller.BridgeID != b1.ID || tr.Legs.Agent.CallID != g.ID || b2 == "" || tid == "" {
		t.Fatalf("legs = %+v", tr.Legs)
	}
	want := []command{
		{Method: "POST", Path: "/bridges/" + b1.ID, Body: map[string]any{"bridgeAudio": false}},                         // hold
		{Method: "POST", Path: "/bridges/" + b1.ID, Body: map[string]any{"callIds": []any{a.ID}, "bridgeAudio": false}}, // G leaves b1
		{Method: "POST", Path: "/bridges", Body: map[string]any{"bridgeAudio": true, "callIds": []any{g.ID}}},           // b2 with G
		{Method: "POST", Path: "/calls", Body: map[string]any{"from": owned, "to": target, "bridgeId": b2,
			"callTimeout": float64(30), "tag": tr.ID}}, // T into b2
		{Method: "POST", Path: "/bridges/" + b2, Body: map[string]any{"callIds": []any{g.ID}}},                              // T leaves b2
		{Method: "POST", Path: "/bridges/" + b1.ID, Body: map[string]any{"callIds": []any{a.ID, tid}, "bridgeAudio": true}}, // A+T
		{Method: "POST", Path: "/calls/" + g.ID, Body: map[string]any{"state": "completed"}},                                // G hangs up
	}
	assertCommands(t, h, want)

	h.idle(t)
	if !h.sim.Connected(a.ID, tid) || h.sim.Held(a.ID) {
		t.Error("the caller must talk to the target")
	}
	if c := mustCall(t, h, g.ID); c.State != bwsim.StateCompleted {
		t.Errorf("agent's call is %s", c.State)
	}
	if br, _ := h.sim.Bridge(b2); br.State != bwsim.BridgeCompleted {
		t.Errorf("b2 = %+v", br)
	}
	for _, op := range []string{"get_call", "get_bridge", "hold", "split", "create_bridge", "create_call",
		"release_consult", "join", "hangup_agent"} {
		if requestSamples(t, h, op) == 0 {
			t.Errorf("no request latency samples for operation %s", op)
		}
	}
}

func assertCommands(t *testing.T, h *harness, want []command) {
	t.Helper()
	got := h.commands(t)
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		ok = got[i].Method == want[i].Method && got[i].Path == want[i].Path && jsonEqualMaps(got[i].Body, want[i].Body)
	}
	if !ok {
		t.Fatalf("commands:\n got %v\nwant %v", got, want)
	}
}

// The consult call carries the options an attended transfer takes: the
// caller id as from, recording, and the callback URL.
func TestAttendedConsultCallOptions(t *testing.T) {
	h := setup(t, options{callbacks: true})
	a, g, _ := h.placeBridged(t)
	yes := true
	req := attendedReq(a, g, orchestrator.CompletionAuto)
	req.CallerID = owned
	req.Recording = &orchestrator.Recording{Enabled: &yes, FileFormat: "mp3"}
	req.ConsultTimeout = 9 * time.Minute // rings at most the 300 s POST /calls allows
	tr := h.end(t, h.start(t, req).ID)
	if tr.State != orchestrator.StateCompleted {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	creates := h.requestsOf(bwsim.OpCreateCall)
	want := map[string]any{"from": owned, "to": target, "bridgeId": tr.Legs.Consult.BridgeID, "callTimeout": float64(300),
		"tag": tr.ID, "callbackUrl": h.public + "/callbacks/bandwidth/" + tr.ID,
		"recordingEnabled": true, "recordingFileFormat": "mp3"}
	if len(creates) != 1 || !jsonEqual(creates[0].Body, want) {
		t.Fatalf("create call bodies = %v\nwant exactly %v", creates, want)
	}
	// The consult call's events wake the transfer.
	h.idle(t) // callbacks are delivered asynchronously
	if !slices.Contains(h.notifiedIDs(), tr.ID) {
		t.Errorf("the consult call's callbacks did not notify the transfer: %v", h.notifiedIDs())
	}
}

func TestAttendedManualWaitsForComplete(t *testing.T) {
	h := setup(t, options{})
	a, g, b1 := h.placeBridged(t)
	tr := h.start(t, attendedReq(a, g, orchestrator.CompletionManual))
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	if tr.State != orchestrator.StateConsulting {
		t.Fatalf("state = %s, want consulting", tr.State)
	}
	h.idle(t)
	tid := tr.Legs.Consult.CallID
	if !h.sim.Connected(g.ID, tid) || !h.sim.Held(a.ID) {
		t.Fatal("the agent must talk to the target while the caller is held")
	}
	for _, c := range h.commands(t) {
		if c.Path == "/bridges/"+b1.ID && jsonEqualMaps(c.Body, map[string]any{"callIds": []any{a.ID, tid}, "bridgeAudio": true}) {
			t.Fatal("a manual transfer must not join before /complete")
		}
	}
	if _, err := h.eng.Complete(context.Background(), tr.ID); err != nil {
		t.Fatal(err)
	}
	if tr = h.end(t, tr.ID); tr.State != orchestrator.StateCompleted {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	h.idle(t)
	if !h.sim.Connected(a.ID, tid) {
		t.Error("the caller must talk to the target")
	}
}

func TestAttendedCancelRestoresCaller(t *testing.T) {
	h := setup(t, options{})
	a, g, b1 := h.placeBridged(t)
	tr := h.start(t, attendedReq(a, g, orchestrator.CompletionManual))
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	if _, err := h.eng.Cancel(context.Background(), tr.ID); err != nil {
		t.Fatal(err)
	}
	tr = h.end(t, tr.ID)
	if tr.State != orchestrator.StateCancelled || tr.Outcome.Reason != orchestrator.ReasonCancelled || !tr.Outcome.CallerRestored {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	if got := undos(tr); !slices.Equal(got, []string{"hangup_consult", "unhold"}) {
		t.Errorf("compensations = %v", got)
	}
	got := h.commands(t)
	tail := got[len(got)-3:]
	wantTail := []command{
		{Method: "POST", Path: "/calls/" + tr.Legs.Consult.CallID, Body: map[string]any{"state": "completed"}},
		{Method: "POST", Path: "/bridges/" + tr.Legs.Consult.BridgeID, Body: map[string]any{"callIds": []any{}}},
		{Method: "POST", Path: "/bridges/" + b1.ID, Body: map[string]any{"callIds": []any{a.ID, g.ID}, "bridgeAudio": true}},
	}
	for i := range wantTail {
		if tail[i].Path != wantTail[i].Path || !jsonEqualMaps(tail[i].Body, wantTail[i].Body) {
			t.Fatalf("cancel commands:\n got %v\nwant %v", tail, wantTail)
		}
	}
	assertAgentRestored(t, h, tr, a, g)
}

func TestAttendedTargetNoAnswer(t *testing.T) {
	h := setup(t, options{})
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeNever})
	a, g, _ := h.placeBridged(t)
	req := attendedReq(a, g, orchestrator.CompletionAuto)
	req.ConsultTimeout = time.Second
	tr := h.end(t, h.start(t, req).ID)
	if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonNoAnswer || !tr.Outcome.CallerRestored {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	if got := undos(tr); !slices.Equal(got, []string{"hangup_consult", "unhold"}) {
		t.Errorf("compensations = %v", got)
	}
	assertAgentRestored(t, h, tr, a, g)
}

func TestAttendedTargetBusyOrRejects(t *testing.T) {
	for mode, reason := range map[string]orchestrator.Reason{
		bwsim.ModeBusy: orchestrator.ReasonBusy, bwsim.ModeReject: orchestrator.ReasonRejected,
	} {
		t.Run(mode, func(t *testing.T) {
			h := setup(t, options{})
			h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: mode})
			a, g, _ := h.placeBridged(t)
			tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
			if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != reason || !tr.Outcome.CallerRestored {
				t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
			}
			assertAgentRestored(t, h, tr, a, g)
		})
	}
}

func TestAttendedHangupsDuringConsult(t *testing.T) {
	t.Run("target hangs up", func(t *testing.T) {
		h := setup(t, options{})
		a, g, _ := h.placeBridged(t)
		tr := h.start(t, attendedReq(a, g, orchestrator.CompletionManual))
		tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
		if err := h.sim.Hangup(tr.Legs.Consult.CallID); err != nil {
			t.Fatal(err)
		}
		tr = h.end(t, tr.ID)
		if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonTargetHungUp || !tr.Outcome.CallerRestored {
			t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
		}
		assertAgentRestored(t, h, tr, a, g)
	})
	t.Run("caller hangs up", func(t *testing.T) {
		h := setup(t, options{})
		a, g, _ := h.placeBridged(t)
		tr := h.start(t, attendedReq(a, g, orchestrator.CompletionManual))
		tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
		if err := h.sim.Hangup(a.ID); err != nil {
			t.Fatal(err)
		}
		tr = h.end(t, tr.ID)
		if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonCallerHungUp || tr.Outcome.CallerRestored {
			t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
		}
		h.idle(t)
		if c := mustCall(t, h, tr.Legs.Consult.CallID); !c.Ended() {
			t.Errorf("the consult call must be hung up: %s", c.State)
		}
		if c := mustCall(t, h, g.ID); c.Ended() || c.BridgeID != "" {
			t.Errorf("the agent's call is left up and free: %+v", c)
		}
	})
	t.Run("caller hangs up while held, then cancel", func(t *testing.T) {
		h := setup(t, options{})
		a, g, _ := h.placeBridged(t)
		tr := h.start(t, attendedReq(a, g, orchestrator.CompletionManual))
		tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
		// Cancel first; the caller hangs up before the undo reaches it.
		h.before(func(method, path, _ string) bool {
			return method == http.MethodPost && path == "/users/"+userID+"/calls/"+tr.Legs.Consult.CallID
		}, func() { _ = h.sim.Hangup(a.ID) })
		if _, err := h.eng.Cancel(context.Background(), tr.ID); err != nil {
			t.Fatal(err)
		}
		tr = h.end(t, tr.ID)
		if tr.State != orchestrator.StateCancelled || tr.Outcome.CallerRestored ||
			!strings.Contains(tr.Outcome.Detail, "hung up before being taken off hold") {
			t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
		}
	})
}

// A failure at any step ends the transfer with the right reason, runs the
// compensations newest first and gives the caller back to the agent.
func TestAttendedFailureAtEachStepCompensates(t *testing.T) {
	type env struct{ a, g, b1 string }
	cases := []struct {
		name   string
		inject func(h *harness, e env)
		status int
		reason orchestrator.Reason
		undos  []string
	}{
		// A hold is safe to repeat: the engine tries again until
		// StepTimeout has passed, then gives up.
		{"hold unavailable", func(h *harness, e env) {
			h.faultEach(bridgeUpdate(e.b1, map[string]any{"bridgeAudio": false}),
				bwsim.Fault{Operation: bwsim.OpUpdateBridge, Status: 503, Count: 1})
		}, 503, orchestrator.ReasonProviderUnavailable, []string{"unhold"}},
		{"hold refused", func(h *harness, e env) {
			h.faultAt(bridgeUpdate(e.b1, map[string]any{"bridgeAudio": false}),
				bwsim.Fault{Operation: bwsim.OpUpdateBridge, Status: 400, Code: "bridge-invalid-operation", Message: "No active calls in the bridge", Count: 1})
		}, 400, orchestrator.ReasonProviderError, []string{"unhold"}},
		{"agent leaving b1 refused", func(h *harness, e env) {
			h.faultAt(bridgeUpdate(e.b1, map[string]any{"callIds": []any{e.a}, "bridgeAudio": false}),
				bwsim.Fault{Operation: bwsim.OpUpdateBridge, Status: 400, Count: 1})
		}, 400, orchestrator.ReasonProviderError, []string{"unhold"}}, // nothing was created: no hang-up owed
		{"create bridge unavailable", func(h *harness, e env) {
			h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpCreateBridge, Status: 503, Count: 1})
		}, 503, orchestrator.ReasonProviderUnavailable, []string{"hangup_consult", "unhold"}},
		{"create call unavailable", func(h *harness, e env) {
			h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpCreateCall, Status: 503, Count: 1})
		}, 503, orchestrator.ReasonProviderUnavailable, []string{"hangup_consult", "unhold"}},
		{"create call unauthorized", func(h *harness, e env) {
			h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpCreateCall, Status: 401, Count: 1})
		}, 401, orchestrator.ReasonProviderError, []string{"hangup_consult", "unhold"}},
		{"create call refused", func(h *harness, e env) {
			h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpCreateCall, Status: 403, Code: "invalid-call-to-number",
				Message: "Cannot make a call to number `" + target + "`", Count: 1})
		}, 403, orchestrator.ReasonProviderError, []string{"hangup_consult", "unhold"}},
		{"consult leaving b2 refused", func(h *harness, e env) {
			h.faultAt(func(method, path, body string) bool {
				return method == http.MethodPost && strings.Contains(path, "/bridges/brg-") &&
					!strings.HasSuffix(path, e.b1) && jsonEqual(body, map[string]any{"callIds": []any{e.g}})
			}, bwsim.Fault{Operation: bwsim.OpUpdateBridge, Status: 400, Count: 1})
		}, 400, orchestrator.ReasonProviderError, []string{"hangup_consult", "unhold"}},
		{"join refused", func(h *harness, e env) {
			h.faultAt(func(method, path, body string) bool {
				return method == http.MethodPost && strings.HasSuffix(path, "/bridges/"+e.b1) && strings.Contains(body, `"bridgeAudio":true`)
			}, bwsim.Fault{Operation: bwsim.OpUpdateBridge, Status: 403, Code: "bridge-callIds-overflow", Count: 1})
		}, 403, orchestrator.ReasonProviderError, []string{"hangup_consult", "unhold"}},
		{"join unavailable", func(h *harness, e env) {
			h.faultAt(func(method, path, body string) bool {
				return method == http.MethodPost && strings.HasSuffix(path, "/bridges/"+e.b1) && strings.Contains(body, `"bridgeAudio":true`)
			}, bwsim.Fault{Operation: bwsim.OpUpdateBridge, Status: 503, Count: 3})
		}, 503, orchestrator.ReasonProviderUnavailable, []string{"hangup_consult", "unhold"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A join whose result is unknown is verified before it is
			// undone; keep that wait short here.
			h := setup(t, options{engine: func(c *orchestrator.Config) {
				c.VerifyTimeout = 200 * time.Millisecond
				c.VisibilityWindow = 200 * time.Millisecond
				c.StepTimeout = time.Second
			}})
			a, g, b1 := h.placeBridged(t)
			tc.inject(h, env{a.ID, g.ID, b1.ID})
			tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
			if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != tc.reason || !tr.Outcome.CallerRestored {
				t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
			}
			if ev := tr.Outcome.Evidence; ev == nil || ev.Status != tc.status {
				t.Errorf("evidence = %+v, want the provider's status %d", ev, tc.status)
			}
			if got := undos(tr); !slices.Equal(got, tc.undos) {
				t.Errorf("compensations = %v, want %v", got, tc.undos)
			}
			for _, s := range tr.Steps {
				if (s.Name == "unhold" || s.Name == "hangup_consult") && s.Status != orchestrator.StepSucceeded {
					t.Errorf("compensation %s: %s %s", s.Name, s.Status, s.Detail)
				}
			}
			assertAgentRestored(t, h, tr, a, g)
			if n := len(h.requestsOf(bwsim.OpCreateCall)); n > 1 {
				t.Errorf("consult calls created = %d", n)
			}
		})
	}
}

// Rate limits are waited out, then the request is sent again, even a
// create: a rate-limited request was not executed.
func TestAttendedRateLimitsWaitThenSucceed(t *testing.T) {
	const reset = 50 * time.Millisecond
	cases := []struct {
		name  string
		fault bwsim.Fault
		op    string
	}{
		{"429 on a bridge update", bwsim.Fault{Operation: bwsim.OpUpdateBridge, Status: 429, RateLimitReset: reset, Count: 1}, bwsim.OpUpdateBridge},
		{"429 on create call", bwsim.Fault{Operation: bwsim.OpCreateCall, Status: 429, RateLimitReset: reset, Count: 1}, bwsim.OpCreateCall},
		{"403 call-rate-limit on create call", bwsim.Fault{Operation: bwsim.OpCreateCall, Status: 403, Count: 2}, bwsim.OpCreateCall},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := setup(t, options{})
			a, g, _ := h.placeBridged(t)
			h.sim.InjectFault(tc.fault)
			tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
			if tr.State != orchestrator.StateCompleted {
				t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
			}
			reqs := h.requestsOf(tc.op)
			limited := 0
			for _, r := range reqs {
				if r.Status == tc.fault.Status {
					limited++
				}
			}
			if limited != tc.fault.Count {
				t.Fatalf("%d rate-limited requests, want %d: %+v", limited, tc.fault.Count, reqs)
			}
			first, retry := reqs[0], reqs[tc.fault.Count]
			if first.Status != tc.fault.Status || retry.Status >= 300 {
				t.Fatalf("requests: %+v", reqs)
			}
			if tc.fault.Status == 429 {
				// X-RateLimit-Reset is now+reset in epoch ms: the retry
				// came no earlier.
				if earliest := time.UnixMilli(first.Time.Add(reset).UnixMilli()); retry.Time.Before(earliest) {
					t.Errorf("retried at %s, before the reset at %s", retry.Time, earliest)
				}
			} else if retry.Time.Equal(first.Time) {
				t.Error("retried without waiting")
			}
			if n := len(h.requestsOf(bwsim.OpCreateCall)); tc.op != bwsim.OpCreateCall && n != 1 {
				t.Errorf("consult calls created = %d", n)
			}
		})
	}
}

// A rate limit that outlasts the patience fails fast instead of hammering.
func TestRateLimitBeyondPatienceFails(t *testing.T) {
	h := setup(t, options{})
	a, g, _ := h.placeBridged(t)
	h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpCreateCall, Status: 429, RateLimitReset: time.Hour, Count: 1})
	tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
	if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonProviderUnavailable || !tr.Outcome.CallerRestored {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	if !strings.Contains(tr.Outcome.Detail, "longer than the 5s transferd waits") {
		t.Errorf("detail %q should say why it gave up", tr.Outcome.Detail)
	}
	if n := len(h.requestsOf(bwsim.OpCreateCall)); n != 1 {
		t.Errorf("create call sent %d times", n)
	}
	assertAgentRestored(t, h, tr, a, g)
}

// Creates whose answers are lost are found again: one bridge, one call.
func TestAttendedLostCreateResponsesCreateOnce(t *testing.T) {
	for _, op := range []string{bwsim.OpCreateBridge, bwsim.OpCreateCall} {
		t.Run(op, func(t *testing.T) {
			h := setup(t, options{})
			a, g, _ := h.placeBridged(t)
			h.sim.InjectFault(bwsim.Fault{Operation: op, Drop: true, Apply: true, Count: 1})
			tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
			if tr.State != orchestrator.StateCompleted {
				t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
			}
			if n := len(h.requestsOf(op)); n != 1 {
				t.Errorf("%s sent %d times, want 1", op, n)
			}
			h.idle(t)
			if !h.sim.Connected(a.ID, tr.Legs.Consult.CallID) {
				t.Error("the caller must talk to the target")
			}
		})
	}
}

// Options an attended transfer cannot honour are refused by the engine,
// naming the field, before anything reaches Bandwidth.
func TestAttendedRefusesWhisperAndDiversion(t *testing.T) {
	h := setup(t, options{})
	req := attendedReq(bwsim.Call{ID: "c-aaa"}, bwsim.Call{ID: "c-bbb"}, orchestrator.CompletionAuto)
	req.Whisper = &orchestrator.Whisper{Sentence: "hi"}
	req.Diversion = &orchestrator.Diversion{Treatment: "propagate"}
	_, err := h.eng.Start(context.Background(), req, orchestrator.StartOptions{})
	var oe *orchestrator.Error
	if !errors.As(err, &oe) || oe.Kind != orchestrator.KindUnsupported || oe.Fields["whisper"] == "" || oe.Fields["diversion"] == "" {
		t.Fatalf("err = %v (%+v)", err, oe)
	}
	if n := len(h.sim.Requests()); n != 0 {
		t.Errorf("%d requests reached Bandwidth", n)
	}
}
