package bwsim

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// The three examples of the "Transfer active Call" page. The curl bodies of examples 1 and 2
// are not valid JSON as printed (a missing quote, a missing comma); these are their intended
// bodies. Example 2 also has an SDK form (node/C#/ruby) with gender, voice "julie" and
// locale "en".
func TestTransferPageExamples(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantTo     string
		wantFrom   string // "" means the A-leg's from
		check      func(t *testing.T, b Call)
		wantWhisp  bool
		wantDivert string
	}{
		{
			name:   "example 1: caller id of the party being transferred",
			body:   `{"state":"transferring","transferTo":"+19192223333"}`,
			wantTo: "+19192223333",
		},
		{
			name:      "example 2: whisper (curl)",
			body:      `{"state":"transferring","transferCallerId":"private","transferTo":"+18382947878","whisperAudio":{"sentence":"Hello! You have an incoming call"}}`,
			wantTo:    "+18382947878",
			wantFrom:  "private",
			wantWhisp: true,
		},
		{
			name:      "example 2: whisper (SDK form)",
			body:      `{"state":"transferring","transferTo":"+18382947878","transferCallerId":"private","whisperAudio":{"sentence":"You have an incoming call","gender":"female","voice":"julie","locale":"en"}}`,
			wantTo:    "+18382947878",
			wantFrom:  "private",
			wantWhisp: true,
		},
		{
			name:       "example 3: outbound diversion",
			body:       `{"state":"transferring","transferTo":"+19195554444","diversionTreatment":"stack","diversionReason":"do-not-disturb"}`,
			wantTo:     "+19195554444",
			wantDivert: "do-not-disturb",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			a := e.inbound()
			r := e.send(http.MethodPost, callPath(a.ID), tt.body)
			e.wantStatus(r, http.StatusCreated)
			if len(r.body) != 0 {
				t.Errorf("body = %q, want empty", r.body)
			}
			wantPrefix := e.srv.URL + mount + "/users/" + testUser + "/calls/c-"
			if !strings.HasPrefix(r.location(), wantPrefix) {
				t.Fatalf("Location = %q, want prefix %q", r.location(), wantPrefix)
			}
			b := e.call(r.id())
			wantFrom := tt.wantFrom
			if wantFrom == "" {
				wantFrom = customer
			}
			if b.Direction != DirectionOut || b.To != tt.wantTo || b.From != wantFrom || b.ParentCallID != a.ID {
				t.Errorf("B-leg = %+v", b)
			}
			if got := e.call(a.ID); got.State != StateTransferring || got.TransferTo != tt.wantTo || got.TransferCallID != b.ID {
				t.Errorf("A-leg = %+v", got)
			}

			e.idle()
			if b = e.call(b.ID); b.State != StateActive {
				t.Fatalf("B state = %q, want active", b.State)
			}
			if !e.sim.Connected(a.ID, b.ID) {
				t.Error("A and B are not connected after B answered")
			}
			if got := e.call(a.ID).State; got != StateTransferring {
				t.Errorf("A state = %q, want transferring", got)
			}
			if b.WhisperPlayed != tt.wantWhisp {
				t.Errorf("WhisperPlayed = %v, want %v", b.WhisperPlayed, tt.wantWhisp)
			}
			if tt.wantDivert != "" && (b.DiversionTreatment != "stack" || b.DiversionReason != tt.wantDivert) {
				t.Errorf("diversion = %q/%q", b.DiversionTreatment, b.DiversionReason)
			}
			ga := e.getCall(a.ID)
			if ga["state"] != StateTransferring || ga["transferTo"] != tt.wantTo {
				t.Errorf("GET A = %v", ga)
			}

			// The exact body of the transfer request is kept.
			var found bool
			for _, req := range e.sim.Requests() {
				if req.Operation == OpTransfer {
					found = true
					if req.Body != tt.body || req.Status != http.StatusCreated || req.Location != r.location() || req.Path != callPath(a.ID) {
						t.Errorf("recorded %+v", req)
					}
				}
			}
			if !found {
				t.Error("transfer request not recorded")
			}
		})
	}
}

func TestTransferTargetFails(t *testing.T) {
	tests := []struct {
		name      string
		behaviour Behaviour
		ring      time.Duration
		expire    bool // use Sim.Timeout instead of the ring timer
		cause     string
		events    []string
	}{
		{"busy", Behaviour{Mode: ModeBusy}, 0, false, CauseUserBusy, []string{"hangup"}},
		{"reject", Behaviour{Mode: ModeReject}, 0, false, CauseCallRejected, []string{"hangup"}},
		{"never, ring timer", Behaviour{Mode: ModeNever}, time.Millisecond, false, CauseNoAnswer, []string{"timeout", "hangup"}},
		{"manual, Timeout", Behaviour{Mode: ModeManual}, 0, true, CauseNoAnswer, []string{"timeout", "hangup"}},
	}
	for _, policy := range []string{TransferFailureHangup, TransferFailureRestore} {
		for _, tt := range tests {
			t.Run(policy+"/"+tt.name, func(t *testing.T) {
				rc := newReceiver(t, http.StatusOK)
				e := newEnv(t, Config{TransferFailure: policy, RingTimeout: tt.ring})
				e.sim.SetBehaviour(target, tt.behaviour)
				a := e.inbound()
				r := e.send(http.MethodPost, callPath(a.ID),
					`{"state":"transferring","transferTo":"`+target+`","callbackUrl":"`+rc.srv.URL+`/b"}`)
				e.wantStatus(r, http.StatusCreated)
				if tt.expire {
					if err := e.sim.Timeout(r.id()); err != nil {
						t.Fatal(err)
					}
				}
				b := e.waitState(r.id(), StateCompleted)
				if b.Cause != tt.cause {
					t.Errorf("B cause = %q, want %q", b.Cause, tt.cause)
				}
				gotA := e.call(a.ID)
				switch policy {
				case TransferFailureHangup:
					if gotA.State != StateCompleted || gotA.Cause != CauseNormalClearing {
						t.Errorf("A = %s/%s, want completed/NORMAL_CLEARING", gotA.State, gotA.Cause)
					}
				case TransferFailureRestore:
					if gotA.State != StateActive {
						t.Errorf("A state = %s, want active", gotA.State)
					}
				}
				if e.sim.Connected(a.ID, b.ID) {
					t.Error("A connected to a failed B")
				}
				e.idle()
				if got := rc.eventTypes(b.ID); strings.Join(got, ",") != strings.Join(tt.events, ",") {
					t.Errorf("B events = %v, want %v", got, tt.events)
				}
			})
		}
	}
}

func TestTransferConnectedLegsEndTogether(t *testing.T) {
	for _, hangUp := range []string{"A", "B"} {
		t.Run("remote "+hangUp+" hangs up", func(t *testing.T) {
			e := newEnv(t, Config{TransferredALegState: StateActive})
			a := e.inbound()
			r := e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring","transferTo":"`+target+`"}`)
			e.wantStatus(r, http.StatusCreated)
			e.waitState(r.id(), StateActive)
			if got := e.call(a.ID).State; got != StateActive {
				t.Fatalf("A state = %q, want active (TransferredALegState)", got)
			}
			if !e.sim.Connected(a.ID, r.id()) {
				t.Fatal("not connected")
			}
			first, other := a.ID, r.id()
			if hangUp == "B" {
				first, other = other, first
			}
			if err := e.sim.Hangup(first); err != nil {
				t.Fatal(err)
			}
			if c := e.call(other); c.State != StateCompleted || c.Cause != CauseNormalClearing {
				t.Errorf("other leg = %s/%s", c.State, c.Cause)
			}
		})
	}
}

func TestTransferALegHangsUpWhileRinging(t *testing.T) {
	e := newEnv(t, Config{})
	e.sim.SetBehaviour(target, Behaviour{Mode: ModeManual})
	a := e.inbound()
	r := e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring","transferTo":"`+target+`"}`)
	e.wantStatus(r, http.StatusCreated)
	e.wantStatus(e.send(http.MethodPost, callPath(a.ID), `{"state":"completed"}`), http.StatusOK)
	if b := e.call(r.id()); b.State != StateCompleted || b.Cause != CauseOriginatorCancel {
		t.Errorf("B = %s/%s, want completed/ORIGINATOR_CANCEL", b.State, b.Cause)
	}
}

func TestTransferManualAnswer(t *testing.T) {
	e := newEnv(t, Config{})
	e.sim.SetBehaviour(target, Behaviour{Mode: ModeManual})
	a := e.inbound()
	r := e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring","transferTo":"`+target+`"}`)
	e.wantStatus(r, http.StatusCreated)
	e.idle()
	if got := e.call(r.id()).State; got != StateStarted {
		t.Fatalf("B state = %q, want started", got)
	}
	if e.sim.Connected(a.ID, r.id()) {
		t.Fatal("connected before answer")
	}
	if err := e.sim.Answer(target); err != nil {
		t.Fatal(err)
	}
	if !e.sim.Connected(a.ID, r.id()) {
		t.Fatal("not connected after answer")
	}
	if err := e.sim.Answer(target); !errors.Is(err, ErrNotRinging) || !errors.Is(err, ErrInvalidState) {
		t.Errorf("Answer with nothing ringing: %v, want ErrNotRinging (an ErrInvalidState)", err)
	}
}

func TestTransferAnswerAfterDelay(t *testing.T) {
	e := newEnv(t, Config{AnswerDelay: time.Millisecond})
	e.sim.SetBehaviour(target, Behaviour{Mode: ModeAfter})
	a := e.inbound()
	r := e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring","transferTo":"`+target+`"}`)
	e.wantStatus(r, http.StatusCreated)
	e.waitState(r.id(), StateActive)
	if !e.sim.Connected(a.ID, r.id()) {
		t.Fatal("not connected")
	}
}

func TestTransferOfBridgedCallLeavesBridge(t *testing.T) {
	e := newEnv(t, Config{})
	a, g, br, err := e.sim.PlaceCallWithAgent(InboundCall{From: customer, To: ownedMain, Agent: agent})
	if err != nil {
		t.Fatal(err)
	}
	r := e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring","transferTo":"`+target+`"}`)
	e.wantStatus(r, http.StatusCreated)
	e.idle()
	if !e.sim.Connected(a.ID, r.id()) || e.sim.Connected(a.ID, g.ID) {
		t.Error("after transfer, A must hear B only")
	}
	if got := e.bridge(br.ID).CallIDs; len(got) != 1 || got[0] != g.ID {
		t.Errorf("bridge members = %v, want the agent only", got)
	}
}

func TestTransferInvalidState(t *testing.T) {
	e := newEnv(t, Config{})
	body := `{"state":"transferring","transferTo":"` + target + `"}`

	ringing, err := e.sim.PlaceCall(InboundCall{From: customer, To: ownedMain, Unanswered: true})
	if err != nil {
		t.Fatal(err)
	}
	e.wantError(e.send(http.MethodPost, callPath(ringing.ID), body), http.StatusForbidden, "call-invalid-state",
		"Unable to update call `"+ringing.ID+"`. Invalid call state `started`")

	a := e.inbound()
	e.wantStatus(e.send(http.MethodPost, callPath(a.ID), body), http.StatusCreated)
	e.wantError(e.send(http.MethodPost, callPath(a.ID), body), http.StatusForbidden, "call-invalid-state",
		"Unable to update call `"+a.ID+"`. Invalid call state `transferring`")

	done := e.inbound()
	e.wantStatus(e.send(http.MethodPost, callPath(done.ID), `{"state":"completed"}`), http.StatusOK)
	b := e.wantError(e.send(http.MethodPost, callPath(done.ID), body), http.StatusForbidden, "call-invalid-state",
		"Unable to update call `"+done.ID+"`. You can`t update the call`s state after being set to `completed`.")
	if b.Category != DefaultForbiddenCategory {
		t.Errorf("category = %q", b.Category)
	}

	e.wantError(e.send(http.MethodPost, callPath("c-nosuchcall"), body), http.StatusNotFound, "call-not-found",
		"The call `c-nosuchcall` could not be found")
}

func TestTransferValidation(t *testing.T) {
	e := newEnv(t, Config{})
	a := e.inbound()

	e.wantError(e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring"}`), http.StatusBadRequest,
		"missing-property", "The 'call' resource property 'transferTo' is required but was not specified")
	e.wantError(e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring","transferTo":null}`), http.StatusBadRequest,
		"missing-property", "The 'call' resource property 'transferTo' is required but was not specified")

	bad := []struct {
		name string
		json string // fields added to a valid transfer
		prop string // the property the message must name
	}{
		{"caller id", `"transferCallerId":"+17775550000"`, ""},
		{"gender", `"whisperAudio":{"sentence":"hi","gender":"robot"}`, "whisperAudio.gender"},
		{"locale", `"whisperAudio":{"sentence":"hi","locale":"pt_BR"}`, "whisperAudio.locale"},
		{"voice", `"whisperAudio":{"sentence":"hi","voice":"HAL"}`, "whisperAudio.voice"},
		{"loopEnabled", `"whisperAudio":{"sentence":"hi","loopEnabled":"maybe"}`, "whisperAudio.loopEnabled"},
		{"whisperAudio type", `"whisperAudio":"hello"`, "whisperAudio"},
		{"diversionTreatment", `"diversionTreatment":"forward"`, "diversionTreatment"},
		{"diversionReason", `"diversionTreatment":"stack","diversionReason":"lunch"`, "diversionReason"},
		{"recordingFileFormat", `"recordingFileFormat":"ogg"`, "recordingFileFormat"},
		{"recordingEnabled", `"recordingEnabled":"yes"`, "recordingEnabled"},
		{"transferTo", `"transferTo":"not a number"`, "transferTo"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"state":"transferring","transferTo":"` + target + `",` + tt.json + `}`
			if strings.Contains(tt.json, `"transferTo"`) {
				body = `{"state":"transferring",` + tt.json + `}`
			}
			b := e.wantError(e.send(http.MethodPost, callPath(a.ID), body), http.StatusBadRequest, "validation-error", "")
			if tt.prop != "" && !strings.Contains(b.Message, "`"+tt.prop+"`") {
				t.Errorf("message %q does not name %s", b.Message, tt.prop)
			}
			if b.Category != "bad-request" {
				t.Errorf("category = %q", b.Category)
			}
		})
	}
	e.wantError(e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring","transferTo":"`+target+`","transferCallerId":"+17775550000"}`),
		http.StatusBadRequest, "validation-error",
		"The callerId `+17775550000` is not allowed. It must be `private` or a phone number owned by user")
	if got := e.call(a.ID).State; got != StateActive {
		t.Errorf("A state after rejected transfers = %q, want active", got)
	}
	if n := len(e.sim.Calls()); n != 1 {
		t.Errorf("%d calls, want only A", n)
	}

	good := []string{
		`"transferCallerId":"private"`,
		`"transferCallerId":"` + customer + `"`, // the inbound call's from
		`"transferCallerId":"` + ownedAlt + `"`,
		`"whisperAudio":{"sentence":"hi","locale":"t","voice":"LUCA","gender":"Male"}`,
		`"whisperAudio":{"fileUrl":"https://example.com/w.mp3","loopEnabled":"false"}`,
		`"diversionTreatment":"propagate"`,
		`"recordingEnabled":"true","recordingFileFormat":"mp3"`,
		`"transferTo":"sip:agent@pbx.example"`,
	}
	for _, g := range good {
		a := e.inbound()
		body := `{"state":"transferring","transferTo":"` + target + `",` + g + `}`
		if strings.Contains(g, `"transferTo"`) {
			body = `{"state":"transferring",` + g + `}`
		}
		e.wantStatus(e.send(http.MethodPost, callPath(a.ID), body), http.StatusCreated)
	}
}

func TestTransferCallerIDOfOutboundCall(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+agent+`"}`)
	e.wantStatus(r, http.StatusCreated)
	out := e.waitState(r.id(), StateActive)
	// For an outgoing call only private or an owned number: not its to number.
	e.wantError(e.send(http.MethodPost, callPath(out.ID), `{"state":"transferring","transferTo":"`+target+`","transferCallerId":"`+agent+`"}`),
		http.StatusBadRequest, "validation-error", "")
	e.wantStatus(e.send(http.MethodPost, callPath(out.ID), `{"state":"transferring","transferTo":"`+target+`","transferCallerId":"`+ownedAlt+`"}`),
		http.StatusCreated)
}

func TestTransferTolerantBody(t *testing.T) {
	e := newEnv(t, Config{TransferLegCallback: TransferLegCallbackNone})
	a := e.inbound()
	// The python SDK sends an explicit null for every unset field.
	r := e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring","transferTo":"`+target+`","transferCallerId":null,`+
		`"whisperAudio":null,"callbackUrl":null,"recordingEnabled":null,"diversionTreatment":null,"diversionReason":null}`)
	e.wantStatus(r, http.StatusCreated)
	if b := e.call(r.id()); b.From != customer || b.CallbackURL != "" {
		t.Errorf("B = %+v", b)
	}
}

// ALegTransferFields decides when the transferred call's object shows
// transferTo and transferCallerId: always, only while it reads
// "transferring", or never.
func TestTransferALegTransferFields(t *testing.T) {
	for _, tc := range []struct {
		fields                  string
		whileRinging, connected bool
	}{
		{"", true, true},
		{ALegTransferFieldsAlways, true, true},
		{ALegTransferFieldsWhileTransferring, true, false},
		{ALegTransferFieldsNever, false, false},
	} {
		t.Run("fields "+tc.fields, func(t *testing.T) {
			e := newEnv(t, Config{ALegTransferFields: tc.fields, TransferredALegState: StateActive})
			e.sim.SetBehaviour(target, Behaviour{Mode: ModeManual})
			a := e.inbound()
			r := e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring","transferTo":"`+target+`","transferCallerId":"private"}`)
			e.wantStatus(r, http.StatusCreated)
			shows := func(m map[string]any) bool { return m["transferTo"] == target && m["transferCallerId"] == "private" }
			if got := shows(e.getCall(a.ID)); got != tc.whileRinging {
				t.Errorf("while transferring: transfer fields shown %t, want %t", got, tc.whileRinging)
			}
			if err := e.sim.Answer(target); err != nil {
				t.Fatal(err)
			}
			m := e.getCall(a.ID)
			if m["state"] != StateActive {
				t.Fatalf("connected A reads %v", m["state"])
			}
			if got := shows(m); got != tc.connected {
				t.Errorf("connected: transfer fields shown %t, want %t", got, tc.connected)
			}
			// The ground truth keeps them whatever the API shows.
			if c := e.call(a.ID); c.TransferTo != target {
				t.Errorf("truth lost transferTo: %+v", c)
			}
		})
	}
}

// TimeoutHangupCause is the cause of the hangup event after a timeout, or
// no hangup event at all; the call ends NO_ANSWER either way.
func TestTimeoutHangupCause(t *testing.T) {
	for _, tc := range []struct {
		setting string
		events  []string
		cause   string // of the hangup event
	}{
		{"", []string{"timeout", "hangup"}, CauseNoAnswer},
		{CauseOriginatorCancel, []string{"timeout", "hangup"}, CauseOriginatorCancel},
		{TimeoutHangupNone, []string{"timeout"}, ""},
	} {
		t.Run("cause "+tc.setting, func(t *testing.T) {
			rc := newReceiver(t, http.StatusOK)
			e := newEnv(t, Config{TimeoutHangupCause: tc.setting})
			e.sim.SetBehaviour(target, Behaviour{Mode: ModeManual})
			a := e.inbound()
			r := e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring","transferTo":"`+target+`","callbackUrl":"`+rc.srv.URL+`/b"}`)
			e.wantStatus(r, http.StatusCreated)
			if err := e.sim.Timeout(r.id()); err != nil {
				t.Fatal(err)
			}
			e.idle()
			if got := rc.eventTypes(r.id()); !slices.Equal(got, tc.events) {
				t.Errorf("callbacks = %v, want %v", got, tc.events)
			}
			var events []map[string]any
			ev := e.send(http.MethodGet, callPath(r.id())+"/events", "")
			e.wantStatus(ev, http.StatusOK)
			if err := json.Unmarshal(ev.body, &events); err != nil {
				t.Fatal(err)
			}
			hangup := ""
			for _, x := range events {
				if x["name"] == "hangup" {
					hangup, _ = x["data"].(string)
				}
			}
			if hangup != tc.cause {
				t.Errorf("hangup event cause = %q, want %q (events %v)", hangup, tc.cause, events)
			}
			if c := e.call(r.id()); c.State != StateCompleted || c.Cause != CauseNoAnswer {
				t.Errorf("B = %s %s, want completed NO_ANSWER", c.State, c.Cause)
			}
		})
	}
}

// TestTransferLegFrom: what a transfer B-leg's from shows, on each side of
// the guess, with and without transferCallerId.
func TestTransferLegFrom(t *testing.T) {
	for _, c := range []struct {
		side, callerID, want string
	}{
		{TransferLegFromAsGiven, "", customer},
		{TransferLegFromAsGiven, "private", "private"},
		{TransferLegFromCalledNumber, "", ownedMain},
		{TransferLegFromCalledNumber, "private", "private"},
		{TransferLegFromAnonymous, "", customer},
		{TransferLegFromAnonymous, "private", "anonymous"},
		{TransferLegFromAnonymous, ownedMain, ownedMain},
	} {
		e := newEnv(t, Config{TransferLegFrom: c.side})
		a := e.inbound()
		body := `{"state":"transferring","transferTo":"` + target + `"`
		if c.callerID != "" {
			body += `,"transferCallerId":"` + c.callerID + `"`
		}
		r := e.send(http.MethodPost, callPath(a.ID), body+`}`)
		e.wantStatus(r, http.StatusCreated)
		if b := e.call(r.id()); b.From != c.want {
			t.Errorf("%s, transferCallerId %q: the B-leg's from is %q, want %q", c.side, c.callerID, b.From, c.want)
		}
	}
}
