package bwsim

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// consultSetup runs notes §8.3 steps 1 and 2: the caller A and agent G share b1; hold, move
// G to a new bridge b2 and dial the target T into it. It returns A, G, T, b1 and b2.
func consultSetup(t *testing.T, e *env) (a, g, tgt, b1, b2 string) {
	t.Helper()
	ac, gc, br, err := e.sim.PlaceCallWithAgent(InboundCall{From: customer, To: ownedMain, Agent: agent})
	if err != nil {
		t.Fatal(err)
	}
	a, g, b1 = ac.ID, gc.ID, br.ID

	// 1. Hold: no audio between A and G.
	e.wantStatus(e.send(http.MethodPost, bridgePath(b1), `{"bridgeAudio":false}`), http.StatusOK)
	if e.sim.Connected(a, g) || !e.sim.Held(a) || !e.sim.Held(g) {
		t.Fatal("hold: A and G must both be held")
	}
	if st := e.bridge(b1).State; st != BridgeHold {
		t.Fatalf("b1 state = %q, want hold", st)
	}
	e.wantStatus(e.send(http.MethodPost, callPath(a)+"/audio", `{"fileUrl":"https://x/moh.mp3","loopEnabled":true}`), http.StatusOK)

	// 2. Consult: remove G from b1, bridge G alone in b2, dial T into b2.
	e.wantStatus(e.send(http.MethodPost, bridgePath(b1), `{"callIds":["`+a+`"]}`), http.StatusOK)
	if got := e.call(g).BridgeID; got != "" {
		t.Fatalf("G still in bridge %q", got)
	}
	r := e.send(http.MethodPost, bridgesPath, `{"callIds":["`+g+`"],"bridgeAudio":"true"}`)
	e.wantStatus(r, http.StatusCreated)
	b2 = r.id()
	if !regexp.MustCompile(`^brg-[a-z2-7]{20}$`).MatchString(b2) {
		t.Errorf("bridge id %q", b2)
	}
	if want := e.srv.URL + mount + bridgePath(b2); r.location() != want {
		t.Errorf("Location = %q, want %q", r.location(), want)
	}
	r = e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`","callTimeout":15,"bridgeId":"`+b2+`"}`)
	e.wantStatus(r, http.StatusCreated)
	tgt = r.id()
	if m := e.getCall(tgt); m["bridgeId"] != b2 {
		t.Errorf("ringing T bridgeId = %v, want %s", m["bridgeId"], b2)
	}
	e.idle()
	if !e.sim.Connected(g, tgt) {
		t.Fatal("consult: G and T must talk")
	}
	if !e.sim.Held(a) || e.sim.Connected(a, g) || e.sim.Connected(a, tgt) {
		t.Fatal("consult: A must be held alone")
	}
	if st := e.bridge(b2).State; st != BridgeActive {
		t.Errorf("b2 state = %q, want active", st)
	}
	return a, g, tgt, b1, b2
}

func TestAttendedTransferComplete(t *testing.T) {
	e := newEnv(t, Config{})
	a, g, tgt, b1, b2 := consultSetup(t, e)

	// 3. Complete: T leaves b2, A's music stops, A and T are joined in b1, G hangs up.
	e.wantStatus(e.send(http.MethodPost, bridgePath(b2), `{"callIds":["`+g+`"]}`), http.StatusOK)
	e.wantStatus(e.send(http.MethodPost, callPath(a)+"/audio", `{"fileUrl":""}`), http.StatusOK)
	e.wantStatus(e.send(http.MethodPost, bridgePath(b1), `{"callIds":["`+a+`","`+tgt+`"],"bridgeAudio":true}`), http.StatusOK)
	e.wantStatus(e.send(http.MethodPost, callPath(g), `{"state":"completed"}`), http.StatusOK)

	if !e.sim.Connected(a, tgt) || e.sim.Held(a) {
		t.Error("A must talk to T")
	}
	if c := e.call(g); c.State != StateCompleted {
		t.Errorf("G state = %q", c.State)
	}
	if st := e.bridge(b2).State; st != BridgeCompleted {
		t.Errorf("b2 state = %q, want completed", st)
	}
	if br := e.bridge(b1); br.State != BridgeActive || len(br.CallIDs) != 2 {
		t.Errorf("b1 = %+v", br)
	}

	// GET bridges/{id} and bridges/{id}/calls.
	r := e.send(http.MethodGet, bridgePath(b1), "")
	e.wantStatus(r, http.StatusOK)
	var br map[string]any
	_ = json.Unmarshal(r.body, &br)
	if br["state"] != "active" || br["bridgeAudio"] != true || br["calls"] != e.srv.URL+mount+bridgePath(b1)+"/calls" {
		t.Errorf("GET bridge = %v", br)
	}
	r = e.send(http.MethodGet, bridgePath(b1)+"/calls", "")
	var calls []map[string]any
	_ = json.Unmarshal(r.body, &calls)
	if len(calls) != 2 || calls[0]["id"] != a || calls[1]["id"] != tgt {
		t.Errorf("bridge calls = %v", calls)
	}
	r = e.send(http.MethodGet, callsPath+"?bridgeId="+b1, "")
	_ = json.Unmarshal(r.body, &calls)
	if len(calls) != 2 {
		t.Errorf("calls?bridgeId = %d calls", len(calls))
	}
}

func TestAttendedTransferCancel(t *testing.T) {
	e := newEnv(t, Config{})
	a, g, tgt, b1, b2 := consultSetup(t, e)

	// 4. Cancel: T hangs up. The notes' next step, re-bridging A and G in b1, is refused
	// while G is still in b2: a call can be in one bridge only.
	e.wantStatus(e.send(http.MethodPost, callPath(tgt), `{"state":"completed"}`), http.StatusOK)
	if !e.sim.Held(g) {
		t.Error("G alone in b2 must be held")
	}
	e.wantError(e.send(http.MethodPost, bridgePath(b1), `{"callIds":["`+a+`","`+g+`"],"bridgeAudio":true}`),
		http.StatusBadRequest, "bridge-bridged-callId", "The callId `"+g+"` is already in another bridge")

	e.wantStatus(e.send(http.MethodPost, bridgePath(b2), `{"callIds":[]}`), http.StatusOK)
	e.wantStatus(e.send(http.MethodPost, bridgePath(b1), `{"callIds":["`+a+`","`+g+`"],"bridgeAudio":true}`), http.StatusOK)
	if !e.sim.Connected(a, g) || e.sim.Held(a) {
		t.Error("A must talk to G again")
	}
	if c := e.call(tgt); c.State != StateCompleted || c.Cause != CauseNormalClearing {
		t.Errorf("T = %s/%s", c.State, c.Cause)
	}
	if st := e.bridge(b2).State; st != BridgeCompleted {
		t.Errorf("b2 state = %q", st)
	}
	// A completed bridge cannot be revived.
	e.wantError(e.send(http.MethodPost, bridgePath(b2), `{"callIds":["`+g+`"]}`), http.StatusBadRequest, "bridge-invalid-state", "")
}

func TestBridgeLimits(t *testing.T) {
	e := newEnv(t, Config{})
	c1, c2, c3 := e.inbound().ID, e.inbound().ID, e.inbound().ID

	b := e.wantError(e.send(http.MethodPost, bridgesPath, `{"callIds":["`+c1+`","`+c2+`","`+c3+`"]}`),
		http.StatusForbidden, "bridge-callIds-overflow", "Only two calls are allowed in a bridge")
	if b.Category != DefaultForbiddenCategory {
		t.Errorf("category = %q", b.Category)
	}
	r := e.send(http.MethodPost, bridgesPath, `{"callIds":["`+c1+`","`+c2+`"]}`)
	e.wantStatus(r, http.StatusCreated)
	full := r.id()
	if br := e.bridge(full); !br.BridgeAudio || br.State != BridgeActive {
		t.Errorf("default bridge = %+v", br)
	}
	e.wantError(e.send(http.MethodPost, bridgePath(full), `{"callIds":["`+c1+`","`+c2+`","`+c3+`"]}`),
		http.StatusForbidden, "bridge-callIds-overflow", "")
	e.wantError(e.send(http.MethodPost, bridgesPath, `{"callIds":["`+c1+`"]}`),
		http.StatusBadRequest, "bridge-bridged-callId", "The callId `"+c1+"` is already in another bridge")
	e.wantError(e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`","bridgeId":"`+full+`"}`),
		http.StatusForbidden, "bridge-callIds-overflow", "Bridge `"+full+"` already has 2 calls")
	e.wantError(e.send(http.MethodPost, bridgesPath, `{"callIds":["c-none"]}`), http.StatusNotFound, "call-not-found", "")
	e.wantError(e.send(http.MethodGet, bridgePath("brg-none"), ""), http.StatusNotFound, "bridge-not-found", "")
	e.wantError(e.send(http.MethodPost, bridgePath("brg-none"), `{}`), http.StatusNotFound, "bridge-not-found", "")

	_ = e.sim.Hangup(c3)
	e.wantError(e.send(http.MethodPost, bridgesPath, `{"callIds":["`+c3+`"]}`), http.StatusForbidden, "call-invalid-state", "")

	// Duplicates count once; an empty bridge is "created" until it had calls.
	r = e.send(http.MethodPost, bridgesPath, `{"bridgeAudio":null,"callIds":null}`)
	e.wantStatus(r, http.StatusCreated)
	if br := e.bridge(r.id()); br.State != BridgeCreated || len(br.CallIDs) != 0 {
		t.Errorf("empty bridge = %+v", br)
	}
	e.wantStatus(e.send(http.MethodPost, bridgePath(full), `{"callIds":["`+c1+`","`+c1+`"]}`), http.StatusOK)
	if br := e.bridge(full); len(br.CallIDs) != 1 || e.call(c2).BridgeID != "" {
		t.Errorf("after dedupe = %+v", br)
	}

	// A member hanging up leaves the bridge; the last one completes it.
	_ = e.sim.Hangup(c1)
	if br := e.bridge(full); br.State != BridgeCompleted || len(br.CallIDs) != 0 {
		t.Errorf("after hangups = %+v", br)
	}

	r = e.send(http.MethodGet, bridgesPath, "")
	var list []map[string]any
	_ = json.Unmarshal(r.body, &list)
	if len(list) != 2 || !strings.Contains(r.header.Get("Link"), `rel="first"`) {
		t.Errorf("list bridges = %d, Link %q", len(list), r.header.Get("Link"))
	}
}

func TestCallCreatedIntoBridgeJoinsOnAnswer(t *testing.T) {
	e := newEnv(t, Config{})
	e.sim.SetBehaviour(target, Behaviour{Mode: ModeManual})
	g := e.inbound().ID
	r := e.send(http.MethodPost, bridgesPath, `{"callIds":["`+g+`"]}`)
	e.wantStatus(r, http.StatusCreated)
	brg := r.id()
	r = e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`","bridgeId":"`+brg+`"}`)
	e.wantStatus(r, http.StatusCreated)
	if br := e.bridge(brg); len(br.CallIDs) != 1 || br.State != BridgeCreated {
		t.Fatalf("before answer = %+v", br)
	}
	if !e.sim.Held(g) {
		t.Error("G alone must be held")
	}
	if err := e.sim.Answer(target); err != nil {
		t.Fatal(err)
	}
	if !e.sim.Connected(g, r.id()) {
		t.Error("not connected after answer")
	}
}
