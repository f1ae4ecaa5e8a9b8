package bwsim

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestCreateCallLifecycle(t *testing.T) {
	clock := newFakeClock()
	e := newEnv(t, Config{Now: clock.Now})
	e.sim.SetBehaviour(target, Behaviour{Mode: ModeManual})
	r := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`","callTimeout":"30","tag":"t-1","recordingEnabled":"true"}`)
	e.wantStatus(r, http.StatusCreated)
	if len(r.body) != 0 {
		t.Errorf("body = %q, want empty", r.body)
	}
	if !regexp.MustCompile(`^c-[a-z2-7]{20}$`).MatchString(r.id()) {
		t.Errorf("call id %q does not look like c- + 20 lowercase base32", r.id())
	}
	m := e.getCall(r.id())
	for k, want := range map[string]any{
		"id": r.id(), "direction": "out", "from": ownedMain, "to": target, "state": "started",
		"startTime": "2024-03-01T12:00:00Z", "callTimeout": 30.0, "tag": "t-1", "recordingEnabled": true,
		"recordingFileFormat": "wav", "events": e.srv.URL + mount + callPath(r.id()) + "/events",
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
	for _, k := range []string{"endTime", "chargeableDuration", "activeTime"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s present on a ringing call", k)
		}
	}

	if err := e.sim.Answer(target); err != nil {
		t.Fatal(err)
	}
	clock.Advance(61 * time.Second)
	e.wantStatus(e.send(http.MethodPost, callPath(r.id()), `{"state":"completed"}`), http.StatusOK)
	m = e.getCall(r.id())
	if m["state"] != "completed" || m["endTime"] != "2024-03-01T12:01:01Z" || m["chargeableDuration"] != 120.0 {
		t.Errorf("ended call = %v", m)
	}
	e.wantError(e.send(http.MethodPost, callPath(r.id()), `{"state":"active"}`), http.StatusForbidden, "call-invalid-state",
		"Unable to update call `"+r.id()+"`. You can`t update the call`s state after being set to `completed`.")

	ev := e.send(http.MethodGet, callPath(r.id())+"/events", "")
	e.wantStatus(ev, http.StatusOK)
	var events []callEvent
	if err := json.Unmarshal(ev.body, &events); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, x := range events {
		names = append(names, x.Name)
	}
	if got := strings.Join(names, ","); got != "create,answer,hangup" {
		t.Errorf("events = %s", got)
	}
}

func TestChargeableDuration(t *testing.T) {
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		talk time.Duration
		want int
	}{{2 * time.Second, 60}, {3 * time.Second, 60}, {5*time.Minute + time.Second, 360}, {time.Minute, 60}, {0, 0}} {
		c := Call{State: StateCompleted, ActiveTime: start, EndTime: start.Add(tt.talk)}
		if got := c.ChargeableDuration(); got != tt.want {
			t.Errorf("%v: %d, want %d", tt.talk, got, tt.want)
		}
	}
	if got := (Call{State: StateCompleted, EndTime: start}).ChargeableDuration(); got != 0 {
		t.Errorf("never answered: %d", got)
	}
}

func TestCreateCallValidation(t *testing.T) {
	e := newEnv(t, Config{})
	tests := []struct {
		body, code, message string
	}{
		{`{"to":"` + target + `"}`, "missing-property", "The 'call' resource property 'from' is required but was not specified"},
		{`{"from":"` + ownedMain + `"}`, "missing-property", "The 'call' resource property 'to' is required but was not specified"},
		{`{"from":"+17775550000","to":"` + target + `"}`, "validation-error", "The from number `+17775550000` is not allowed. It must be a phone number owned by user"},
		{`{"from":"` + ownedMain + `","to":"12"}`, "validation-error", ""},
		{`{"from":"` + ownedMain + `","to":"` + target + `","callTimeout":301}`, "validation-error", ""},
		{`{"from":"` + ownedMain + `","to":"` + target + `","callbackUrl":"not a url"}`, "callback-invalid-url", ""},
		{`{"from":"` + ownedMain + `","to":"` + target + `","bridgeId":"brg-none"}`, "bridge-not-found", ""},
		{`{"from":"` + ownedMain + `","to":"` + target + `","sipHeaders":{"Foo":"1"}}`, "validation-error", ""},
		{`{"from":`, "validation-error", ""},
		{`[1,2]`, "validation-error", ""},
	}
	for _, tt := range tests {
		r := e.send(http.MethodPost, callsPath, tt.body)
		if r.status == http.StatusCreated {
			t.Errorf("%s: created", tt.body)
			continue
		}
		b := r.apiErr(t)
		if b.Code != tt.code || (tt.message != "" && b.Message != tt.message) {
			t.Errorf("%s: %d %s %q", tt.body, r.status, b.Code, b.Message)
		}
	}
	if n := len(e.sim.Calls()); n != 0 {
		t.Errorf("%d calls created by invalid requests", n)
	}
}

func TestCreateCallOutcomes(t *testing.T) {
	// Only "never" gets a tiny ring timeout: the others must not race against it.
	tests := []struct {
		behaviour Behaviour
		ring      time.Duration
		state     string
		cause     string
	}{
		{Behaviour{}, 0, StateActive, ""},
		{Behaviour{Mode: ModeAnswer, Delay: time.Millisecond}, 0, StateActive, ""},
		{Behaviour{Mode: ModeBusy}, 0, StateCompleted, CauseUserBusy},
		{Behaviour{Mode: ModeReject, Delay: time.Millisecond}, 0, StateCompleted, CauseCallRejected},
		{Behaviour{Mode: ModeNever}, 5 * time.Millisecond, StateCompleted, CauseNoAnswer},
	}
	for _, tt := range tests {
		t.Run(tt.behaviour.Mode, func(t *testing.T) {
			e := newEnv(t, Config{RingTimeout: tt.ring})
			e.sim.SetBehaviour(target, tt.behaviour)
			r := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`"}`)
			e.wantStatus(r, http.StatusCreated)
			c := e.waitState(r.id(), tt.state)
			if c.Cause != tt.cause {
				t.Errorf("cause = %q, want %q", c.Cause, tt.cause)
			}
		})
	}
}

func TestDefaultBehaviour(t *testing.T) {
	e := newEnv(t, Config{DefaultBehaviour: Behaviour{Mode: ModeManual}})
	e.sim.SetBehaviour(agent, Behaviour{Mode: ModeAnswer})
	r := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`"}`)
	own := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+agent+`"}`)
	e.idle()
	if got := e.call(r.id()).State; got != StateStarted {
		t.Errorf("number without behaviour: %q, want started (manual default)", got)
	}
	if got := e.call(own.id()).State; got != StateActive {
		t.Errorf("number with its own behaviour: %q, want active", got)
	}
	if err := (Config{DefaultBehaviour: Behaviour{Mode: "sing"}}).Validate(); err == nil {
		t.Error("invalid DefaultBehaviour: want an error")
	}
}

func TestCancelUnansweredOutbound(t *testing.T) {
	e := newEnv(t, Config{})
	e.sim.SetBehaviour(target, Behaviour{Mode: ModeManual})
	r := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`"}`)
	e.wantStatus(r, http.StatusCreated)
	e.wantStatus(e.send(http.MethodPost, callPath(r.id()), `{"state":"completed"}`), http.StatusOK)
	if c := e.call(r.id()); c.State != StateCompleted || c.Cause != CauseOriginatorCancel || c.ChargeableDuration() != 0 {
		t.Errorf("cancelled = %+v", c)
	}
	// An outbound call cannot be "answered" by the application.
	e.sim.SetBehaviour(agent, Behaviour{Mode: ModeManual})
	r = e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+agent+`"}`)
	e.wantError(e.send(http.MethodPost, callPath(r.id()), `{"state":"active"}`), http.StatusForbidden, "call-invalid-state", "")
}

func TestInboundAnswerAndReject(t *testing.T) {
	e := newEnv(t, Config{})
	in, err := e.sim.PlaceCall(InboundCall{From: customer, To: ownedMain, Unanswered: true})
	if err != nil {
		t.Fatal(err)
	}
	if in.State != StateStarted || in.Direction != DirectionIn {
		t.Fatalf("placed %+v", in)
	}
	e.wantStatus(e.send(http.MethodPost, callPath(in.ID), `{"state":"active"}`), http.StatusOK)
	if got := e.call(in.ID).State; got != StateActive {
		t.Errorf("state = %q", got)
	}
	e.wantError(e.send(http.MethodPost, callPath(in.ID), `{"state":"rejected"}`), http.StatusForbidden, "call-invalid-state", "")

	rej, _ := e.sim.PlaceCall(InboundCall{From: customer, To: ownedMain, Unanswered: true})
	e.wantStatus(e.send(http.MethodPost, callPath(rej.ID), `{"state":"rejected"}`), http.StatusOK)
	if c := e.call(rej.ID); c.State != StateRejected || c.Cause != CauseCallRejected {
		t.Errorf("rejected = %s/%s", c.State, c.Cause)
	}
	e.wantError(e.send(http.MethodPost, callPath(rej.ID), `{"state":"completed"}`), http.StatusForbidden, "call-invalid-state",
		"Unable to update call `"+rej.ID+"`. You can`t update the call`s state after being set to `rejected`.")
}

func TestUpdateCallFields(t *testing.T) {
	e := newEnv(t, Config{})
	a := e.inbound()
	e.wantStatus(e.send(http.MethodPost, callPath(a.ID),
		`{"recordingEnabled":"true","recordingFileFormat":"mp3","callbackUrl":"https://crm.example/cb","tag":"x"}`), http.StatusOK)
	c := e.call(a.ID)
	if !c.RecordingEnabled || c.RecordingFileFormat != "mp3" || c.CallbackURL != "https://crm.example/cb" || c.Tag != "x" {
		t.Errorf("updated = %+v", c)
	}
	e.wantStatus(e.send(http.MethodPost, callPath(a.ID), `{"recordingEnabled":false}`), http.StatusOK)
	if e.call(a.ID).RecordingEnabled {
		t.Error("recording still enabled")
	}
	e.wantStatus(e.send(http.MethodPost, callPath(a.ID), `{"state":null,"recordingEnabled":null}`), http.StatusOK)

	b := e.wantError(e.send(http.MethodPost, callPath(a.ID), `{"state":"dancing"}`), http.StatusBadRequest, "validation-error", "")
	if !strings.Contains(b.Message, "`state`") {
		t.Errorf("message %q does not name state", b.Message)
	}
	e.wantError(e.send(http.MethodPost, callPath(a.ID), `{"state":"started"}`), http.StatusBadRequest, "validation-error", "")
	e.wantError(e.send(http.MethodPost, callPath(a.ID), `{"state":true}`), http.StatusBadRequest, "validation-error", "")
}

func TestAudioAndDTMF(t *testing.T) {
	e := newEnv(t, Config{})
	a := e.inbound()
	e.wantStatus(e.send(http.MethodPost, callPath(a.ID)+"/audio", `{"fileUrl":"https://x/ring.mp3","loopEnabled":"true","tag":"ringing"}`), http.StatusOK)
	if au := e.call(a.ID).Audio; au == nil || !au.LoopEnabled || au.FileURL != "https://x/ring.mp3" {
		t.Errorf("audio = %+v", au)
	}
	e.wantStatus(e.send(http.MethodPost, callPath(a.ID)+"/audio", `{"fileUrl":""}`), http.StatusOK)
	if au := e.call(a.ID).Audio; au != nil {
		t.Errorf("audio not stopped: %+v", au)
	}
	e.wantError(e.send(http.MethodPost, callPath(a.ID)+"/audio", `{"sentence":"hi","volume":9}`), http.StatusBadRequest, "validation-error", "")
	e.wantStatus(e.send(http.MethodPost, callPath(a.ID)+"/dtmf", `{"dtmfOut":"12"}`), http.StatusOK)
	e.wantError(e.send(http.MethodPost, callPath(a.ID)+"/dtmf", `{}`), http.StatusBadRequest, "missing-property", "")
	e.wantError(e.send(http.MethodPost, callPath("c-none")+"/audio", `{"fileUrl":"x"}`), http.StatusNotFound, "call-not-found", "")
}

func TestListCalls(t *testing.T) {
	e := newEnv(t, Config{})
	var ids []string
	for range 5 {
		ids = append(ids, e.inbound().ID)
	}
	r := e.send(http.MethodGet, callsPath+"?size=2&page=1", "")
	e.wantStatus(r, http.StatusOK)
	var got []map[string]any
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	// desc by default: page 1 of size 2 holds the 3rd and 2nd newest.
	if len(got) != 2 || got[0]["id"] != ids[2] || got[1]["id"] != ids[1] {
		t.Errorf("page = %v", got)
	}
	link := r.header.Get("Link")
	for _, want := range []string{`rel="first"`, `rel="previous"`, `rel="next"`, "page=2"} {
		if !strings.Contains(link, want) {
			t.Errorf("Link %q lacks %s", link, want)
		}
	}
	r = e.send(http.MethodGet, callsPath+"?sortOrder=asc&size=1", "")
	_ = json.Unmarshal(r.body, &got)
	if len(got) != 1 || got[0]["id"] != ids[0] {
		t.Errorf("asc first = %v", got)
	}
	e.wantError(e.send(http.MethodGet, callsPath+"?size=1001", ""), http.StatusBadRequest, "validation-error", "")

	r = e.send(http.MethodGet, callsPath+"?from="+strings.ReplaceAll(customer, "+", "%2B"), "")
	_ = json.Unmarshal(r.body, &got)
	if len(got) != 5 {
		t.Errorf("from filter: %d calls", len(got))
	}
}

func TestGetUnknownAndSubresources(t *testing.T) {
	e := newEnv(t, Config{})
	a := e.inbound()
	for _, sub := range []string{"/recordings", "/transcriptions"} {
		r := e.send(http.MethodGet, callPath(a.ID)+sub, "")
		if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != "[]" {
			t.Errorf("%s = %d %s", sub, r.status, r.body)
		}
	}
	e.wantStatus(e.send(http.MethodGet, callPath(a.ID)+"/events/ev-1", ""), http.StatusOK)
	e.wantError(e.send(http.MethodGet, "/users/"+testUser+"/nothing", ""), http.StatusNotFound, "resource-not-found", "")
	r := e.send(http.MethodDelete, callPath(a.ID), "")
	e.wantError(r, http.StatusMethodNotAllowed, "method-not-allowed", "")
	if r.header.Get("Allow") != "GET, POST" {
		t.Errorf("Allow = %q", r.header.Get("Allow"))
	}
}

func TestPlaceCallWithAgent(t *testing.T) {
	e := newEnv(t, Config{})
	a, err := e.sim.PlaceCall(InboundCall{From: customer, To: ownedMain, Agent: agent})
	if err != nil {
		t.Fatal(err)
	}
	if a.BridgeID == "" || a.State != StateActive {
		t.Fatalf("A = %+v", a)
	}
	br := e.bridge(a.BridgeID)
	if br.State != BridgeActive || len(br.CallIDs) != 2 || !br.BridgeAudio {
		t.Fatalf("bridge = %+v", br)
	}
	g := e.call(br.CallIDs[1])
	if g.To != agent || g.From != ownedMain || g.Direction != DirectionOut || g.State != StateActive {
		t.Errorf("agent leg = %+v", g)
	}
	if !e.sim.Connected(a.ID, g.ID) || e.sim.Held(a.ID) {
		t.Error("caller and agent must talk")
	}
	if _, err := e.sim.PlaceCall(InboundCall{From: customer}); err == nil {
		t.Error("PlaceCall without To: want an error")
	}
	if _, err := e.sim.PlaceCall(InboundCall{From: customer, To: ownedMain, Agent: agent, Unanswered: true}); err == nil {
		t.Error("unanswered call with agent: want an error")
	}
}

func TestHangupRemote(t *testing.T) {
	e := newEnv(t, Config{})
	a := e.inbound()
	if err := e.sim.Hangup(a.ID); err != nil {
		t.Fatal(err)
	}
	if c := e.call(a.ID); c.State != StateCompleted || c.Cause != CauseNormalClearing {
		t.Errorf("A = %s/%s", c.State, c.Cause)
	}
	if err := e.sim.Hangup(a.ID); err == nil {
		t.Error("second hangup: want an error")
	}
	if err := e.sim.Hangup("c-none"); err == nil {
		t.Error("unknown call: want an error")
	}
	ringing, _ := e.sim.PlaceCall(InboundCall{From: customer, To: ownedMain, Unanswered: true})
	_ = e.sim.Hangup(ringing.ID)
	if c := e.call(ringing.ID); c.Cause != CauseOriginatorCancel {
		t.Errorf("abandoned inbound cause = %s", c.Cause)
	}
}
