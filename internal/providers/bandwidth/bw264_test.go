package bandwidth_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// asRejectEvent rewrites a hangup callback that says CALL_REJECTED as the
// Java SDK's "reject" event type, without a cause: the other side of the
// notes' guess of how a rejection is told (the docs send a hangup).
func asRejectEvent(body []byte) []byte {
	var ev map[string]any
	if json.Unmarshal(body, &ev) != nil || ev["eventType"] != "hangup" || ev["cause"] != "CALL_REJECTED" {
		return body
	}
	ev["eventType"] = "reject"
	delete(ev, "cause")
	out, _ := json.Marshal(ev)
	return out
}

// An attended consult to a rejecting target that the platform never
// indexes (VanishFailedLegs): only its callback tells how it ended, and
// it comes as a "reject" event (the Java SDK's enum) rather than a hangup
// with CALL_REJECTED (the docs). Read as an event that says nothing, the
// leg was judged by the visibility window as one that never appeared:
// consult_failed, where the target rejected the call. Both wordings now
// say rejected.
func TestARejectEventIsARejection(t *testing.T) {
	for _, reject := range []bool{false, true} {
		name := "hangup CALL_REJECTED"
		if reject {
			name = "reject"
		}
		t.Run(name, func(t *testing.T) {
			seen := make(chan struct{})
			var once sync.Once
			o := options{callbacks: true, sim: bwsim.Config{VanishFailedLegs: true}, engine: shortWindows,
				onCallback: func(eventType string) {
					if eventType == "hangup" || eventType == "reject" {
						once.Do(func() { close(seen) })
					}
				}}
			if reject {
				o.rewriteCallback = asRejectEvent
			}
			h := setup(t, o)
			h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeReject})
			a, g, _ := h.placeBridged(t)
			// The consult is first read once its callback was handled.
			callPath := "/users/" + userID + "/calls/"
			h.before(func(method, path, _ string) bool {
				return method == http.MethodGet && strings.HasPrefix(path, callPath) &&
					path != callPath+a.ID && path != callPath+g.ID && !strings.Contains(strings.TrimPrefix(path, callPath), "/")
			}, func() {
				select {
				case <-seen:
				case <-time.After(10 * time.Second):
					t.Error("no callback of the leg's end")
				}
			})
			req := attendedReq(a, g, orchestrator.CompletionAuto)
			req.ConsultTimeout = time.Minute
			end := h.waitSaved(t, h.start(t, req).ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
			if end.State != orchestrator.StateFailed || end.Outcome.Reason != orchestrator.ReasonRejected || !end.Outcome.CallerRestored {
				t.Fatalf("ended %s %+v; want failed, rejected, the caller restored", end.State, end.Outcome)
			}
		})
	}
}

// upperDirection is a platform that writes a call's direction in capitals
// ("OUT"): the notes give "in" and "out", and no case.
func upperDirection(_ *bwsim.Sim, api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		body := bytes.ReplaceAll(rec.Body.Bytes(), []byte(`"direction":"out"`), []byte(`"direction":"OUT"`))
		body = bytes.ReplaceAll(body, []byte(`"direction":"in"`), []byte(`"direction":"IN"`))
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	})
}

// An attended consult whose create answer was lost is found again by its
// tag among the calls to the target, outbound ones only. The direction
// was compared exactly: on a platform writing "OUT" the consult was never
// found, the transfer failed (consult_failed, "did not appear") with the
// target's phone still ringing in a bridge with the agent. Both cases now
// find it and complete.
func TestAConsultIsFoundWhateverTheCaseOfItsDirection(t *testing.T) {
	for _, upper := range []bool{false, true} {
		name := "out"
		if upper {
			name = "OUT"
		}
		t.Run(name, func(t *testing.T) {
			o := options{}
			if upper {
				o.wrap = upperDirection
			}
			h := setup(t, o)
			a, g, _ := h.placeBridged(t)
			h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpCreateCall, Drop: true, Apply: true, Count: 1})
			tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
			if tr.State != orchestrator.StateCompleted {
				t.Fatalf("state %s outcome %+v; want completed", tr.State, tr.Outcome)
			}
			h.idle(t)
			if !h.sim.Connected(a.ID, tr.Legs.Consult.CallID) {
				t.Error("the caller must talk to the target")
			}
		})
	}
}

// An attended consult to a busy target whose create answer is lost, on a
// platform that lists and reads the leg (the listing finds it by its
// tag), or never indexes it (VanishFailedLegs: only its callbacks name
// it). The callback-named leg was not used: never found, it was judged by
// the visibility window as a consult that never appeared, consult_failed,
// where its callback said busy. Both sides now report busy, the caller
// restored.
func TestAConsultWhoseCreateAnswerWasLostEndsWithItsCallbacksCause(t *testing.T) {
	for _, vanish := range []bool{false, true} {
		name := "listed"
		if vanish {
			name = "never listed"
		}
		t.Run(name, func(t *testing.T) {
			h, hungUp := setupBusyWithCallbacks(t, bwsim.Config{VanishFailedLegs: vanish})
			a, g, _ := h.placeBridged(t)
			h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpCreateCall, Drop: true, Apply: true, Count: 1})
			// The consult is looked for once its hangup callback was
			// handled.
			h.before(func(method, path, _ string) bool {
				return method == http.MethodGet && path == "/users/"+userID+"/calls"
			}, hungUp)
			req := attendedReq(a, g, orchestrator.CompletionAuto)
			req.ConsultTimeout = time.Minute
			end := h.waitSaved(t, h.start(t, req).ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
			if end.State != orchestrator.StateFailed || end.Outcome.Reason != orchestrator.ReasonBusy || !end.Outcome.CallerRestored {
				t.Fatalf("ended %s %+v; want failed, busy, the caller restored", end.State, end.Outcome)
			}
			h.idle(t)
			if c := mustCall(t, h, a.ID); c.Ended() {
				t.Errorf("the caller's call is %s", c.State)
			}
		})
	}
}

// An announced transfer to a busy target, on the platform's side of the
// guess that gives the caller's call back when the transfer fails
// (TransferFailure restore). A caller who was bridged with an agent
// comes back out of that bridge (bwsim takes a transferred call out of
// its bridge), up but connected to no one: it was reported restored,
// verified. It is now put back with the agent, and reported restored
// once a reading shows it in its bridge again
// (TestACallerGivenBackOutOfItsBridgeIsPutBackWithTheAgent; the agent
// gone, it is reported not restored). A caller who was in no bridge is
// restored, as before.
func TestACallerGivenBackOutOfItsBridgeIsNotReportedRestored(t *testing.T) {
	for _, bridged := range []bool{false, true} {
		name := "not bridged"
		if bridged {
			name = "bridged with an agent"
		}
		t.Run(name, func(t *testing.T) {
			h := setup(t, options{engine: shortWindows, sim: bwsim.Config{TransferFailure: bwsim.TransferFailureRestore}})
			h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeBusy})
			var a bwsim.Call
			if bridged {
				a, _, _ = h.placeBridged(t)
			} else {
				a = h.placeCall(t)
			}
			end := h.waitSaved(t, h.start(t, announcedReq(a, target)).ID, func(x *orchestrator.Transfer) bool {
				return x.State.Terminal() && x.Cleanup == nil
			})
			if c := mustCall(t, h, a.ID); c.Ended() || (bridged && c.BridgeID == "") {
				t.Fatalf("the caller's call is %s in bridge %q", c.State, c.BridgeID)
			}
			if end.State != orchestrator.StateFailed || end.Outcome.Reason != orchestrator.ReasonBusy || !end.Outcome.CallerRestored ||
				!end.Outcome.Verified {
				t.Fatalf("ended %s %+v; want failed, busy, the caller restored, verified", end.State, end.Outcome)
			}
		})
	}
}
