package bandwidth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// transferBodies returns the bodies of the transfer requests, decoded.
func transferBodies(t *testing.T, h *harness) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range h.requestsOf(bwsim.OpTransfer) {
		var m map[string]any
		if err := json.Unmarshal([]byte(r.Body), &m); err != nil {
			t.Fatalf("transfer body %q: %v", r.Body, err)
		}
		out = append(out, m)
	}
	return out
}

// assertTransferred checks a completed announced transfer: the caller
// talks to the target's new leg.
func assertTransferred(t *testing.T, h *harness, tr *orchestrator.Transfer, a bwsim.Call, to string) {
	t.Helper()
	if tr.State != orchestrator.StateCompleted || tr.Outcome.Reason != orchestrator.ReasonTransferred {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	b := mustCall(t, h, tr.Legs.Consult.CallID)
	if b.To != to || b.ParentCallID != a.ID {
		t.Errorf("B-leg = %+v, want a leg to %s from the transfer of %s", b, to, a.ID)
	}
	if !h.sim.Connected(a.ID, b.ID) {
		t.Error("the caller is not connected to the target")
	}
}

// The page's three examples, sent as transferd requests, produce exactly
// the documented bodies: the options asked for and nothing else.
func TestPageExamples(t *testing.T) {
	cases := []struct {
		name string
		edit func(*orchestrator.Request)
		to   string
		want map[string]any
	}{
		{"1 caller id of the party being transferred", nil, "+19192223333",
			map[string]any{"state": "transferring", "transferTo": "+19192223333"}},
		{"2 private caller id and whisper", func(r *orchestrator.Request) {
			r.CallerID = "private"
			r.Whisper = &orchestrator.Whisper{Sentence: "Hello! You have an incoming call"}
		}, "+18382947878", map[string]any{
			"state": "transferring", "transferCallerId": "private", "transferTo": "+18382947878",
			"whisperAudio": map[string]any{"sentence": "Hello! You have an incoming call"},
		}},
		{"3 outbound diversion header", func(r *orchestrator.Request) {
			r.Diversion = &orchestrator.Diversion{Treatment: "stack", Reason: "do-not-disturb"}
		}, "+19195554444", map[string]any{
			"state": "transferring", "transferTo": "+19195554444",
			"diversionTreatment": "stack", "diversionReason": "do-not-disturb",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := setup(t, options{})
			a := h.placeCall(t)
			req := announcedReq(a, tc.to)
			if tc.edit != nil {
				tc.edit(&req)
			}
			tr := h.end(t, h.start(t, req).ID)
			bodies := transferBodies(t, h)
			if len(bodies) != 1 || !reflect.DeepEqual(bodies[0], tc.want) {
				t.Fatalf("transfer bodies = %v\nwant exactly %v", bodies, tc.want)
			}
			assertTransferred(t, h, tr, a, tc.to)
			// Only reads and the one transfer.
			got := h.commands(t)
			if len(got) != 1 || got[0].Path != "/calls/"+a.ID {
				t.Errorf("commands = %v", got)
			}
		})
	}
}

// Every option maps onto its documented field, exactly, including a
// recording explicitly disabled and the callbackUrl of PublicURL.
func TestAnnouncedOptionsMapExactly(t *testing.T) {
	yes, no := true, false
	cases := []struct {
		name string
		edit func(*orchestrator.Request)
		want func(callback string) map[string]any
	}{
		{"everything", func(r *orchestrator.Request) {
			r.CallerID = owned
			r.Whisper = &orchestrator.Whisper{Sentence: "Transfer from support", FileURL: "https://audio.example.com/chime.mp3",
				Gender: "male", Locale: "en_UK", Voice: "Bridget"}
			r.Recording = &orchestrator.Recording{Enabled: &yes, FileFormat: "mp3"}
			r.Diversion = &orchestrator.Diversion{Treatment: "propagate"}
		}, func(cb string) map[string]any {
			return map[string]any{
				"state": "transferring", "transferTo": target, "transferCallerId": owned, "callbackUrl": cb,
				"whisperAudio": map[string]any{"sentence": "Transfer from support", "fileUrl": "https://audio.example.com/chime.mp3",
					"gender": "male", "locale": "en_UK", "voice": "Bridget"},
				"recordingEnabled": true, "recordingFileFormat": "mp3", "diversionTreatment": "propagate",
			}
		}},
		{"recording disabled is sent", func(r *orchestrator.Request) {
			r.Recording = &orchestrator.Recording{Enabled: &no}
		}, func(cb string) map[string]any {
			return map[string]any{"state": "transferring", "transferTo": target, "callbackUrl": cb, "recordingEnabled": false}
		}},
		{"file format alone", func(r *orchestrator.Request) {
			r.Recording = &orchestrator.Recording{FileFormat: "wav"}
			r.Whisper = &orchestrator.Whisper{FileURL: "http://audio.example.com/a.wav"}
		}, func(cb string) map[string]any {
			return map[string]any{"state": "transferring", "transferTo": target, "callbackUrl": cb,
				"recordingFileFormat": "wav", "whisperAudio": map[string]any{"fileUrl": "http://audio.example.com/a.wav"}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := setup(t, options{callbacks: true})
			a := h.placeCall(t)
			req := announcedReq(a, target)
			tc.edit(&req)
			tr := h.end(t, h.start(t, req).ID)
			want := tc.want(h.public + "/callbacks/bandwidth/" + tr.ID)
			if bodies := transferBodies(t, h); len(bodies) != 1 || !reflect.DeepEqual(bodies[0], want) {
				t.Fatalf("transfer bodies = %v\nwant exactly %v", bodies, want)
			}
			assertTransferred(t, h, tr, a, target)
			b := mustCall(t, h, tr.Legs.Consult.CallID)
			if b.CallbackURL != want["callbackUrl"] {
				t.Errorf("B-leg callbackUrl = %q", b.CallbackURL)
			}
		})
	}
}

// A target that does not take the call fails the transfer with the reason
// the simulator reveals; whether the caller is restored is the platform's
// doing (bwsim's TransferFailure), and the outcome reports it truthfully.
func TestAnnouncedTargetFails(t *testing.T) {
	cases := []struct {
		mode   string
		reason orchestrator.Reason
	}{
		{bwsim.ModeNever, orchestrator.ReasonNoAnswer},
		{bwsim.ModeBusy, orchestrator.ReasonBusy},
		{bwsim.ModeReject, orchestrator.ReasonRejected},
	}
	for _, tc := range cases {
		for _, failure := range []string{bwsim.TransferFailureHangup, bwsim.TransferFailureRestore} {
			t.Run(tc.mode+"/"+failure, func(t *testing.T) {
				t.Parallel()
				h := setup(t, options{sim: bwsim.Config{TransferFailure: failure}})
				h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: tc.mode})
				a := h.placeCall(t)
				req := announcedReq(a, target)
				req.ConsultTimeout = time.Second
				tr := h.end(t, h.start(t, req).ID)
				restored := failure == bwsim.TransferFailureRestore
				if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != tc.reason || tr.Outcome.CallerRestored != restored {
					t.Fatalf("state %s outcome %+v; want reason %s, caller_restored %v", tr.State, tr.Outcome, tc.reason, restored)
				}
				if !restored && !strings.Contains(tr.Outcome.Detail, "did not return the caller") {
					t.Errorf("detail %q should say the caller was not returned", tr.Outcome.Detail)
				}
				wantA := bwsim.StateCompleted
				if restored {
					wantA = bwsim.StateActive
				}
				h.idle(t)
				if got := mustCall(t, h, a.ID).State; got != wantA {
					t.Errorf("caller's call is %s, want %s", got, wantA)
				}
				if b := mustCall(t, h, tr.Legs.Consult.CallID); !b.Ended() {
					t.Errorf("B-leg left %s", b.State)
				}
				if n := len(h.requestsOf(bwsim.OpTransfer)); n != 1 {
					t.Errorf("transfers sent = %d, want 1", n)
				}
			})
		}
	}
}

// A transfer whose answer is lost is found again, never sent twice.
func TestAnnouncedLostResponseTransfersOnce(t *testing.T) {
	for _, public := range []bool{false, true} {
		name := "polling"
		if public {
			name = "callbackUrl"
		}
		t.Run(name, func(t *testing.T) {
			h := setup(t, options{callbacks: public})
			a := h.placeCall(t)
			h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpTransfer, Drop: true, Apply: true, Count: 1})
			tr := h.end(t, h.start(t, announcedReq(a, target)).ID)
			assertTransferred(t, h, tr, a, target)
			if n := len(h.requestsOf(bwsim.OpTransfer)); n != 1 {
				t.Errorf("transfers sent = %d, want 1", n)
			}
		})
	}
}

// A transfer request lost before the platform applied it (the connection
// dropped, nothing transferred) leaves the caller where it was, reported
// restored and verified, on both sides of ALegTransferFields and with or
// without callbacks: nothing was created, and an "active" caller's call
// whose transfer leg never appears is the caller back. Storm seed
// 4020487345062600 found a version of the adapter that took it for
// unknown: the outcome was then verified caller_restored false while the
// caller talked to the agent.
func TestAnnouncedTransferLostBeforeItWasAppliedRestoresTheCaller(t *testing.T) {
	for _, fields := range []string{bwsim.ALegTransferFieldsAlways, bwsim.ALegTransferFieldsNever} {
		for _, public := range []bool{false, true} {
			name := fields + "/polling"
			if public {
				name = fields + "/callbackUrl"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				h := setup(t, options{callbacks: public, engine: shortWindows, sim: bwsim.Config{ALegTransferFields: fields}})
				a := h.placeCall(t)
				h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpTransfer, Drop: true, Count: 1})
				tr := h.end(t, h.start(t, announcedReq(a, target)).ID)
				if tr.State != orchestrator.StateFailed || !tr.Outcome.CallerRestored || !tr.Outcome.Verified {
					t.Fatalf("state %s outcome %+v: want failed, the caller restored, verified", tr.State, tr.Outcome)
				}
				if got := mustCall(t, h, a.ID).State; got != bwsim.StateActive {
					t.Errorf("caller's call is %s", got)
				}
				if n := len(h.requestsOf(bwsim.OpTransfer)); n != 1 {
					t.Errorf("transfers sent = %d, want 1 (never retried blindly)", n)
				}
			})
		}
	}
}

// A transfer the platform refuses leaves the caller where it was.
func TestAnnouncedTransferRefused(t *testing.T) {
	cases := []struct {
		name   string
		fault  bwsim.Fault
		reason orchestrator.Reason
	}{
		{"call-transfer-error", bwsim.Fault{Operation: bwsim.OpTransfer, Status: 503}, orchestrator.ReasonProviderUnavailable},
		{"invalid destination", bwsim.Fault{Operation: bwsim.OpTransfer, Status: 403, Code: "invalid-call-to-number",
			Message: "Cannot make a call to number `" + target + "`"}, orchestrator.ReasonProviderError},
		{"unauthorized", bwsim.Fault{Operation: bwsim.OpTransfer, Status: 401}, orchestrator.ReasonProviderError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := setup(t, options{engine: briefWindow})
			a := h.placeCall(t)
			h.sim.InjectFault(tc.fault)
			tr := h.end(t, h.start(t, announcedReq(a, target)).ID)
			if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != tc.reason || !tr.Outcome.CallerRestored {
				t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
			}
			if ev := tr.Outcome.Evidence; ev == nil || ev.Status != tc.fault.Status || ev.Code == "" {
				t.Errorf("evidence = %+v", ev)
			}
			if n := len(h.requestsOf(bwsim.OpTransfer)); n != 1 {
				t.Errorf("transfers sent = %d, want 1 (never retried blindly)", n)
			}
			if got := mustCall(t, h, a.ID).State; got != bwsim.StateActive {
				t.Errorf("caller's call is %s", got)
			}
		})
	}
}

// With PublicURL, Catapult's events reach CallbackHandler: the hangup's
// cause says the target was busy, and the transfer is woken.
func TestCallbacksReportBusy(t *testing.T) {
	hungUp := make(chan struct{})
	var once sync.Once
	h := setup(t, options{callbacks: true, onCallback: func(eventType string) {
		if eventType == "hangup" {
			once.Do(func() { close(hungUp) })
		}
	}})
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeBusy})
	a := h.placeCall(t)
	// The B-leg is read only after its hangup callback was handled, so
	// the reason must come from the recorded cause, not from a race.
	h.before(func(method, path, _ string) bool {
		return method == http.MethodGet && strings.HasPrefix(path, "/users/"+userID+"/calls/c-") &&
			!strings.HasSuffix(path, "/"+a.ID)
	}, func() {
		select {
		case <-hungUp:
		case <-time.After(10 * time.Second):
		}
	})
	tr := h.end(t, h.start(t, announcedReq(a, target)).ID)
	if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonBusy {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	if !strings.Contains(tr.Outcome.Detail, "USER_BUSY") {
		t.Errorf("detail %q should name the cause", tr.Outcome.Detail)
	}
	for _, r := range h.sim.Requests() {
		if strings.HasSuffix(r.Path, "/events") {
			t.Errorf("the cause was known from the callback, yet the events were read: %s", r.Path)
		}
	}
	notified := h.notifiedIDs()
	if len(notified) == 0 || notified[0] != tr.ID {
		t.Errorf("notify calls = %v, want %s", notified, tr.ID)
	}
	// The simulator records a delivery once the receiver has answered,
	// which can be after the transfer ended: wait until it has.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.sim.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	delivered := false
	for _, cb := range h.sim.Callbacks() {
		if cb.CallID == tr.Legs.Consult.CallID && cb.EventType == "hangup" {
			delivered = cb.Status == http.StatusOK && cb.URL == h.public+"/callbacks/bandwidth/"+tr.ID
		}
	}
	if !delivered {
		t.Errorf("the B-leg's hangup was not delivered to the transfer's callback URL: %+v", h.sim.Callbacks())
	}
}

// A caller that is not there, or not active, fails the transfer before
// anything is changed.
func TestCallMissingOrNotActiveChangesNothing(t *testing.T) {
	cases := []struct {
		name   string
		req    func(t *testing.T, h *harness) orchestrator.Request
		reason orchestrator.Reason
	}{
		{"announced not found", func(t *testing.T, h *harness) orchestrator.Request {
			return announcedReq(bwsim.Call{ID: "c-doesnotexist"}, target)
		}, orchestrator.ReasonCallNotFound},
		{"announced ringing", func(t *testing.T, h *harness) orchestrator.Request {
			a, err := h.sim.PlaceCall(bwsim.InboundCall{From: customer, To: owned, Unanswered: true})
			if err != nil {
				t.Fatal(err)
			}
			return announcedReq(a, target)
		}, orchestrator.ReasonCallNotActive},
		{"announced ended", func(t *testing.T, h *harness) orchestrator.Request {
			a := h.placeCall(t)
			if err := h.sim.Hangup(a.ID); err != nil {
				t.Fatal(err)
			}
			return announcedReq(a, target)
		}, orchestrator.ReasonCallNotActive},
		{"attended agent not found", func(t *testing.T, h *harness) orchestrator.Request {
			a, _, _ := h.placeBridged(t)
			return attendedReq(a, bwsim.Call{ID: "c-doesnotexist"}, orchestrator.CompletionAuto)
		}, orchestrator.ReasonCallNotFound},
		{"attended not bridged together", func(t *testing.T, h *harness) orchestrator.Request {
			a := h.placeCall(t)
			_, g, _ := h.placeBridged(t)
			return attendedReq(a, g, orchestrator.CompletionAuto)
		}, orchestrator.ReasonCallNotActive},
		{"attended agent hung up", func(t *testing.T, h *harness) orchestrator.Request {
			a, g, _ := h.placeBridged(t)
			if err := h.sim.Hangup(g.ID); err != nil {
				t.Fatal(err)
			}
			return attendedReq(a, g, orchestrator.CompletionAuto)
		}, orchestrator.ReasonCallNotActive},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := setup(t, options{engine: briefWindow})
			tr := h.end(t, h.start(t, tc.req(t, h)).ID)
			if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != tc.reason || !tr.Outcome.CallerRestored {
				t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
			}
			if tr.Outcome.Detail == "" {
				t.Error("the outcome should say what was wrong")
			}
			for _, r := range h.sim.Requests() {
				if r.Method != http.MethodGet {
					t.Errorf("changed something: %s %s", r.Method, r.Path)
				}
			}
		})
	}
}

// Announced transfers take every option; the engine refuses a manual
// completion, since there is no consult phase.
func TestAnnouncedRefusesManualCompletion(t *testing.T) {
	h := setup(t, options{})
	req := announcedReq(bwsim.Call{ID: "c-abc"}, target)
	req.Completion = orchestrator.CompletionManual
	_, err := h.eng.Start(context.Background(), req, orchestrator.StartOptions{})
	if orchestrator.KindOf(err) != orchestrator.KindInvalid || orchestrator.FieldsOf(err)["completion"] == "" {
		t.Fatalf("err = %v", err)
	}
}

// A create answered 2xx without a usable Location (a 200, or a proxy that
// dropped the header) was carried out: only the new id is lost, as with a
// lost answer. Its outcome is unknown, not "refused": the engine keeps
// the dial sent and watches for the leg, which the platform may list only
// later (bwsim ListingDelay, both sides), instead of reporting "nothing
// was created, caller restored" while the leg rings and then connects the
// caller to the target. The announced transfer is tried on both sides of
// TransferredALegState, which decides how its leg is found again.
func TestCreateWithoutLocationIsAnUnknownOutcome(t *testing.T) {
	transfer := func(method, path string) bool {
		return method == http.MethodPost && strings.HasPrefix(path, "/users/"+userID+"/calls/")
	}
	createCall := func(method, path string) bool {
		return method == http.MethodPost && path == "/users/"+userID+"/calls"
	}
	createBridge := func(method, path string) bool {
		return method == http.MethodPost && path == "/users/"+userID+"/bridges"
	}
	cases := []struct {
		name  string
		mode  orchestrator.Mode
		op    string // the create answered without Location
		match func(method, path string) bool
		late  bool // the new call is listed only after the dial stopped looking for it
		aLeg  string
	}{
		{"transfer/listed at once/A transferring", orchestrator.ModeAnnounced, bwsim.OpTransfer, transfer, false, bwsim.StateTransferring},
		{"transfer/listed late/A transferring", orchestrator.ModeAnnounced, bwsim.OpTransfer, transfer, true, bwsim.StateTransferring},
		{"transfer/listed at once/A active", orchestrator.ModeAnnounced, bwsim.OpTransfer, transfer, false, bwsim.StateActive},
		{"transfer/listed late/A active", orchestrator.ModeAnnounced, bwsim.OpTransfer, transfer, true, bwsim.StateActive},
		{"consult call/listed at once", orchestrator.ModeAttended, bwsim.OpCreateCall, createCall, false, ""},
		{"consult call/listed late", orchestrator.ModeAttended, bwsim.OpCreateCall, createCall, true, ""},
		{"consult bridge", orchestrator.ModeAttended, bwsim.OpCreateBridge, createBridge, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := setup(t, options{sim: bwsim.Config{TransferredALegState: tc.aLeg}, respond: withoutLocation(tc.match),
				engine: func(c *orchestrator.Config) {
					// Longer than the test: the leg is watched for, not given up on.
					c.VisibilityWindow = time.Minute
				}})
			h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
			if tc.late {
				if err := h.sim.SetAdversity(bwsim.Config{ListingDelay: time.Hour}); err != nil {
					t.Fatal(err)
				}
			}
			var a, g bwsim.Call
			var req orchestrator.Request
			if tc.mode == orchestrator.ModeAnnounced {
				a = h.placeCall(t)
				req = announcedReq(a, target)
			} else {
				a, g, _ = h.placeBridged(t)
				req = attendedReq(a, g, orchestrator.CompletionAuto)
			}
			tr := h.wait(t, h.start(t, req).ID, func(x *orchestrator.Transfer) bool {
				return x.State == orchestrator.StateConsulting || x.State == orchestrator.StateRecovering
			})
			if tr.State != orchestrator.StateConsulting {
				t.Fatalf("the dial's outcome is unknown: the transfer must watch for its leg, not end %s (%+v)", tr.State, tr.Outcome)
			}
			h.sim.Settle() // the platform lists the new leg
			if err := h.sim.Answer(target); err != nil {
				t.Fatal(err)
			}
			tr = h.end(t, tr.ID)
			h.idle(t)
			if tc.mode == orchestrator.ModeAnnounced {
				assertTransferred(t, h, tr, a, target)
			} else if tr.State != orchestrator.StateCompleted || !h.sim.Connected(a.ID, tr.Legs.Consult.CallID) || h.sim.Held(a.ID) {
				t.Fatalf("state %s outcome %+v; the caller must talk to the target %s", tr.State, tr.Outcome, tr.Legs.Consult.CallID)
			}
			if n := len(h.requestsOf(tc.op)); n != 1 {
				t.Errorf("%s sent %d times, want 1", tc.op, n)
			}
			dialFailed := false
			for _, s := range tr.Steps {
				dialFailed = dialFailed || (s.Name == orchestrator.StepDial && s.Status == orchestrator.StepFailed)
			}
			if tc.late && !dialFailed {
				t.Error("the dial found the late leg: the test does not test what it says")
			}
			if tc.op != bwsim.OpCreateBridge && tr.Legs.Consult.CallID == "" {
				t.Errorf("the leg was not learnt: %+v", tr.Legs)
			}
		})
	}
}

// shortWindows makes the engine give up on a consult not seen, and on a
// caller not verified, within a test's patience.
func shortWindows(c *orchestrator.Config) {
	c.VisibilityWindow = 200 * time.Millisecond
	c.VerifyTimeout = 500 * time.Millisecond
}

// loseTransferAnswer makes the platform apply A's transfer and lose its
// answer, and runs then (if not nil) before the first reading of A after it.
func loseTransferAnswer(t *testing.T, h *harness, a bwsim.Call, then func()) {
	t.Helper()
	var sent atomic.Bool
	h.before(func(method, path, body string) bool {
		return method == http.MethodPost && path == "/users/"+userID+"/calls/"+a.ID && strings.Contains(body, "transferring")
	}, func() {
		h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpTransfer, Drop: true, Apply: true, Count: 1})
		sent.Store(true)
	})
	if then != nil {
		h.before(func(method, path, _ string) bool {
			return sent.Load() && method == http.MethodGet && path == "/users/"+userID+"/calls/"+a.ID
		}, then)
	}
}

// transferLeg returns the B-leg the simulator created for A's transfer.
func transferLeg(t *testing.T, h *harness, a bwsim.Call) bwsim.Call {
	t.Helper()
	for _, c := range h.sim.Calls() {
		if c.ParentCallID == a.ID {
			return c
		}
	}
	t.Fatalf("no B-leg for %s: %+v", a.ID, h.sim.Calls())
	return bwsim.Call{}
}

// A transfer's answer is lost and the target answers before anything
// reads the caller's call. Whether that call then shows transferTo is a
// guess (bwsim ALegTransferFields), and so is its state once connected
// (TransferredALegState): on every side the B-leg is found, by the
// callbackUrl that names the transfer, and the transfer completes: with a
// callbackUrl, an A reading "active" without transferTo is never taken for
// "no transfer". Polling, the leg is found as the newest leg to the target
// while A shows the transfer (transferring, or transferTo naming the
// target); an A "active" without transferTo is then no evidence that the
// leg to the target is ours (searchTransferLeg), a limitation the README
// states.
func TestAnnouncedLostAnswerFindsTheLegByItsCallbackURL(t *testing.T) {
	for _, fields := range []string{bwsim.ALegTransferFieldsAlways, bwsim.ALegTransferFieldsWhileTransferring, bwsim.ALegTransferFieldsNever} {
		for _, aLeg := range []string{bwsim.StateTransferring, bwsim.StateActive} {
			for _, public := range []bool{true, false} {
				if !public && aLeg == bwsim.StateActive && fields != bwsim.ALegTransferFieldsAlways {
					continue // polling cannot tell this leg from another transfer's
				}
				name := fields + "/A " + aLeg + "/polling"
				if public {
					name = fields + "/A " + aLeg + "/callbackUrl"
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					h := setup(t, options{callbacks: public, engine: shortWindows,
						sim: bwsim.Config{ALegTransferFields: fields, TransferredALegState: aLeg}})
					h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
					a := h.placeCall(t)
					loseTransferAnswer(t, h, a, func() {
						if err := h.sim.Answer(target); err != nil {
							t.Error(err)
						}
					})
					req := announcedReq(a, target)
					req.ConsultTimeout = time.Minute
					tr := h.end(t, h.start(t, req).ID)
					h.idle(t)
					assertTransferred(t, h, tr, a, target)
					if n := len(h.requestsOf(bwsim.OpTransfer)); n != 1 {
						t.Errorf("transfers sent = %d, want 1", n)
					}
				})
			}
		}
	}
}

// A transfer the platform refused in its own words (503
// call-transfer-error, "could not be transferred") created nothing: the
// caller reading "active" is the caller back, on every side of
// ALegTransferFields.
func TestAnnouncedTransferErrorLeavesTheCallerVerified(t *testing.T) {
	for _, fields := range []string{bwsim.ALegTransferFieldsAlways, bwsim.ALegTransferFieldsNever} {
		t.Run(fields, func(t *testing.T) {
			t.Parallel()
			h := setup(t, options{engine: shortWindows, sim: bwsim.Config{ALegTransferFields: fields}})
			a := h.placeCall(t)
			h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpTransfer, Status: http.StatusServiceUnavailable})
			tr := h.end(t, h.start(t, announcedReq(a, target)).ID)
			if tr.State != orchestrator.StateFailed || !tr.Outcome.CallerRestored || !tr.Outcome.Verified {
				t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
			}
		})
	}
}

// Bandwidth's clock is not transferd's: a B-leg whose startTime (whole
// seconds, Bandwidth's clock) is before the transfer's creation by
// transferd's is found all the same after a lost answer, instead of being
// left to ring and connect the caller after the transfer failed. Both
// ways round, with and without a callbackUrl (bwsim Config.Now).
func TestAnnouncedLostAnswerFindsTheLegWhateverBandwidthsClock(t *testing.T) {
	for _, skew := range []time.Duration{-1500 * time.Millisecond, 1500 * time.Millisecond} {
		for _, public := range []bool{true, false} {
			name := "skew " + skew.String() + "/polling"
			if public {
				name = "skew " + skew.String() + "/callbackUrl"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				h := setup(t, options{callbacks: public, engine: shortWindows,
					sim: bwsim.Config{Now: func() time.Time { return time.Now().Add(skew) }}})
				h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
				a := h.placeCall(t)
				loseTransferAnswer(t, h, a, nil)
				req := announcedReq(a, target)
				req.ConsultTimeout = time.Minute
				tr := h.wait(t, h.start(t, req).ID, func(x *orchestrator.Transfer) bool { return x.Legs.Consult.CallID != "" })
				b := transferLeg(t, h, a)
				if tr.Legs.Consult.CallID != b.ID {
					t.Fatalf("the B-leg %s was never found: the transfer ended %s %+v while it is %s", b.ID, tr.State, tr.Outcome, b.State)
				}
				if err := h.sim.Answer(target); err != nil {
					t.Fatal(err)
				}
				tr = h.end(t, tr.ID)
				h.idle(t)
				assertTransferred(t, h, tr, a, target)
			})
		}
	}
}

// The target is busy while its new B-leg cannot be read yet (bwsim
// ListingDelay + UnlistedNotFound), or ever (VanishFailedLegs). The
// caller's call ends with it (TransferFailure "hangup") or comes back
// ("restore"). The transfer reports why from the hangup callback that
// named the leg. (Polling, with B unreadable and A ended, nothing tells a
// failed target from a caller who hung up: the outcome says it cannot be
// verified; TestAnUnreadableLegNextToAnEndedCallerIsNotTheCallerHangingUp.)
func TestAnnouncedTargetFailsWhileItsLegIsNotReadable(t *testing.T) {
	cases := []struct {
		name     string
		cfg      bwsim.Config
		restored bool
	}{
		{"not listed yet/hangup", bwsim.Config{ListingDelay: time.Hour, UnlistedNotFound: true}, false},
		{"not listed yet/restore", bwsim.Config{ListingDelay: time.Hour, UnlistedNotFound: true, TransferFailure: bwsim.TransferFailureRestore}, true},
		{"vanished/hangup", bwsim.Config{VanishFailedLegs: true}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h, hungUp := setupBusyWithCallbacks(t, tc.cfg)
			a := h.placeCall(t)
			var sent atomic.Bool
			h.before(func(method, path, body string) bool {
				return method == http.MethodPost && path == "/users/"+userID+"/calls/"+a.ID && strings.Contains(body, "transferring")
			}, func() { sent.Store(true) })
			// A is first read after B, and A with it, ended, and after B's
			// hangup callback was handled.
			h.before(func(method, path, _ string) bool {
				return sent.Load() && method == http.MethodGet && path == "/users/"+userID+"/calls/"+a.ID
			}, func() {
				hungUp()
			})
			req := announcedReq(a, target)
			req.ConsultTimeout = time.Second
			tr := h.end(t, h.start(t, req).ID)
			if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonBusy || tr.Outcome.CallerRestored != tc.restored {
				t.Fatalf("the target was busy; the transfer reports %s %+v, want busy, caller_restored %t", tr.State, tr.Outcome, tc.restored)
			}
		})
	}
}

// A ring timeout is followed by a hangup whose cause is a guess (bwsim
// TimeoutHangupCause: NO_ANSWER, ORIGINATOR_CANCEL, or no hangup at all).
// Whatever it says, the target did not answer: the timeout wins over a
// later cause that is no failure, from the event history or the
// callbacks, in both modes.
func TestTimeoutWinsOverALaterHangupCause(t *testing.T) {
	for _, cause := range []string{bwsim.CauseNoAnswer, bwsim.CauseOriginatorCancel, bwsim.TimeoutHangupNone} {
		for _, mode := range []orchestrator.Mode{orchestrator.ModeAnnounced, orchestrator.ModeAttended} {
			for _, public := range []bool{false, true} {
				name := cause + "/" + string(mode) + "/polling"
				if public {
					name = cause + "/" + string(mode) + "/callbacks"
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					h := setup(t, options{callbacks: public, engine: shortWindows, sim: bwsim.Config{TimeoutHangupCause: cause}})
					h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
					var req orchestrator.Request
					if mode == orchestrator.ModeAnnounced {
						req = announcedReq(h.placeCall(t), target)
					} else {
						a, g, _ := h.placeBridged(t)
						req = attendedReq(a, g, orchestrator.CompletionAuto)
					}
					req.ConsultTimeout = time.Minute
					tr := h.wait(t, h.start(t, req).ID, func(x *orchestrator.Transfer) bool { return x.Legs.Consult.CallID != "" })
					if err := h.sim.Timeout(tr.Legs.Consult.CallID); err != nil {
						t.Fatal(err)
					}
					tr = h.end(t, tr.ID)
					if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonNoAnswer {
						t.Errorf("the target did not answer; the transfer reports %s %s: %s", tr.State, tr.Outcome.Reason, tr.Outcome.Detail)
					}
				})
			}
		}
	}
}
