package nssim_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

func wantControlError(t *testing.T, r response, status int) {
	t.Helper()
	wantStatus(t, r, status)
	var body map[string]string
	r.decode(t, &body)
	if len(body) != 1 || body["error"] == "" {
		t.Errorf("control error body %s, want {\"error\":...}", r.body)
	}
}

func TestControlCalls(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	wantControlError(t, h.ctl(http.MethodPost, "/calls", `{}`), 400)
	wantControlError(t, h.ctl(http.MethodPost, "/calls", `{"user":"1000","colour":"red"}`), 400)
	wantControlError(t, h.ctl(http.MethodPost, "/calls", `{"user":`), 400)

	r := h.ctl(http.MethodPost, "/calls", map[string]string{"user": "1000"})
	wantStatus(t, r, http.StatusCreated)
	var c nssim.ActiveCall
	r.decode(t, &c)
	if c.TermDomain != "TEST" || c.TermUser != "1000" || c.CallerIDNumber != "15555555555" ||
		c.DialedNumber != "11111111111" || c.OrigInfo != nssim.InfoActive || c.TermInfo != nssim.InfoActive {
		t.Errorf("placed %+v", c)
	}

	var list []nssim.ActiveCall
	h.ctl(http.MethodGet, "/calls?domain=TEST", nil).decode(t, &list)
	if len(list) != 1 || list[0].SessionID != c.SessionID {
		t.Errorf("control list %+v", list)
	}
	if r := h.ctl(http.MethodGet, "/calls?domain=OTHER", nil); string(r.body) != "[]" {
		t.Errorf("OTHER %s, want []", r.body)
	}
	if r := h.ctl(http.MethodGet, "/ended", nil); string(r.body) != "[]" {
		t.Errorf("ended %s, want []", r.body)
	}

	wantControlError(t, h.ctl(http.MethodPost, "/calls/"+c.SessionID+"/hangup", `{"party":"both"}`), 400)
	wantControlError(t, h.ctl(http.MethodPost, "/calls/nope/hangup", `{"party":"orig"}`), 404)
	wantStatus(t, h.ctl(http.MethodPost, "/calls/"+c.SessionID+"/hangup", `{"party":"term"}`), http.StatusNoContent)
	var ended []struct {
		Call   nssim.ActiveCall `json:"call"`
		Reason string           `json:"reason"`
		Detail string           `json:"detail"`
		Time   time.Time        `json:"time"`
	}
	h.ctl(http.MethodGet, "/ended", nil).decode(t, &ended)
	if len(ended) != 1 || ended[0].Reason != "hangup" || ended[0].Call.SessionID != c.SessionID || ended[0].Time.IsZero() {
		t.Errorf("ended %+v", ended)
	}
}

func TestControlBehaviourAndAnswer(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	wantControlError(t, h.ctl(http.MethodPut, "/users/TEST/1010/behaviour", `{"mode":"sometimes"}`), 400)
	wantControlError(t, h.ctl(http.MethodPut, "/users/TEST/1010/behaviour", `{"mode":"after","delay":"soon"}`), 400)
	wantControlError(t, h.ctl(http.MethodPost, "/users/TEST/1010/answer", nil), 409)
	wantStatus(t, h.ctl(http.MethodPut, "/users/TEST/1010/behaviour", `{"mode":"manual"}`), http.StatusNoContent)

	h.consult("1000", "1010", "ctl-1")
	if c := h.calls()[0]; c.TermInfo != nssim.InfoAlerting {
		t.Fatalf("1010 %q, want ringing", c.TermInfo)
	}
	wantStatus(t, h.ctl(http.MethodPost, "/users/TEST/1010/answer", nil), http.StatusNoContent)
	wantStatus(t, h.ctl(http.MethodGet, "/idle", nil), http.StatusNoContent)
	if c := h.calls()[0]; c.TermInfo != nssim.InfoActive {
		t.Fatalf("1010 %q, want answered", c.TermInfo)
	}

	wantStatus(t, h.ctl(http.MethodPut, "/users/TEST/1020/behaviour", `{"mode":"after","delay":"5ms"}`), http.StatusNoContent)
	h.consult("1000", "1020", "ctl-2")
	h.waitFor("1020 to answer", func() bool {
		c, ok := findCall(h.sim.Sessions("TEST"), func(c nssim.ActiveCall) bool { return c.OrigCallID == "ctl-2" })
		return ok && c.TermInfo == nssim.InfoActive
	})
}

func TestControlFaults(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	wantControlError(t, h.ctl(http.MethodPost, "/faults", `{"operation":"park"}`), 400)
	wantControlError(t, h.ctl(http.MethodPost, "/faults", `{"operation":"count","latency":"-1s"}`), 400)
	wantControlError(t, h.ctl(http.MethodPost, "/faults", `{"operation":"count","retryAfter":"1"}`), 400)
	wantStatus(t, h.ctl(http.MethodPost, "/faults",
		`{"operation":"count","status":429,"message":"Too Many Requests","count":1,"latency":"1ms","retry_after":"2"}`),
		http.StatusNoContent)

	r := h.ctl(http.MethodGet, "/faults", nil)
	if want := `[{"operation":"count","status":429,"message":"Too Many Requests","count":1,"latency":"1ms","drop":false,"apply":false,"retry_after":"2"}]`; string(r.body) != want {
		t.Errorf("faults %s\nwant   %s", r.body, want)
	}
	r = h.api(http.MethodGet, "/domains/TEST/calls/count", nil)
	wantError(t, r, 429, "Too Many Requests")
	if r.header.Get("Retry-After") != "2" {
		t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
	}
	wantStatus(t, h.api(http.MethodGet, "/domains/TEST/calls/count", nil), 200)

	wantStatus(t, h.ctl(http.MethodPost, "/faults", `{"operation":"any","status":503}`), http.StatusNoContent)
	wantError(t, h.api(http.MethodGet, "/domains/TEST/calls", nil), 503, "")
	wantStatus(t, h.ctl(http.MethodDelete, "/faults", nil), http.StatusNoContent)
	wantStatus(t, h.api(http.MethodGet, "/domains/TEST/calls", nil), 200)
}

func TestControlResetAndUnknownRoute(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	c := h.placeCall("1000")
	if err := h.sim.Hangup(c.SessionID, "orig"); err != nil {
		t.Fatal(err)
	}
	h.placeCall("1000")
	h.sim.SetBehaviour("TEST", "1010", nssim.Behaviour{Mode: nssim.ModeBusy})
	h.sim.InjectFault(nssim.Fault{Operation: nssim.OpRead, Status: 500})
	h.api(http.MethodGet, "/domains/TEST/calls", nil)

	wantStatus(t, h.ctl(http.MethodPost, "/reset", nil), http.StatusNoContent)
	if len(h.sim.Sessions("")) != 0 || len(h.sim.Ended()) != 0 || len(h.sim.Requests()) != 0 || len(h.sim.Faults()) != 0 {
		t.Error("reset left state behind")
	}
	// Behaviours are reset too: 1010 answers again.
	h.consult("1000", "1010", "after-reset")
	if c := h.calls()[0]; c.TermInfo != nssim.InfoActive {
		t.Errorf("1010 %q after reset, want the default behaviour", c.TermInfo)
	}

	for _, p := range []string{"/nope", "/calls/x", "/users/TEST/1000/behaviour"} {
		r := h.ctl(http.MethodGet, p, nil)
		wantControlError(t, r, 404)
		if !strings.Contains(string(r.body), "no control route") {
			t.Errorf("%s: %s", p, r.body)
		}
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	h := newHarness(t, nssim.Config{ActionDelay: time.Hour})
	orig := h.placeCall("1000")
	wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.TermCallID, "hold"), nil))
	h.sim.Close()
	h.sim.Close()
	h.idle()
	// Accepted after Close, never applied.
	wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.TermCallID, "unhold"), nil))
	h.idle()
}

func TestConfigValidate(t *testing.T) {
	bad := []nssim.Config{
		{TermInfoField: "term-info"},
		{DefaultBehaviour: nssim.Behaviour{Mode: "sometimes"}},
		{TransferWithTermUser: "merge"},
		{WrongHostname: "fail"},
		{HostnameMatch: "any"},
		{UnknownDestination: "404"},
		{HeldSide: "local"},
		{ActionDelay: -1},
		{SubscriptionWriteDelay: -1},
		{NotRingingStatus: 200},
		{HistoryLimit: -1},
		{CoreServers: []string{""}},
		{APIKeys: map[string]nssim.KeyScope{"k": {}}},
	}
	for _, cfg := range bad {
		if err := cfg.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", cfg)
		}
	}
	if err := (nssim.Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("New accepted an invalid Config")
		}
	}()
	nssim.New(nssim.Config{HeldSide: "local"})
}

// A consult the API accepted rings only once the simulator applies it (ActionDelay, as in demo
// mode): the answer control, sent as soon as transferd reports the transfer consulting, waits
// for it rather than answer 409 "nothing is ringing".
func TestControlAnswerWaitsForAcceptedConsult(t *testing.T) {
	h := newHarness(t, nssim.Config{ActionDelay: time.Second})
	wantStatus(t, h.ctl(http.MethodPut, "/users/TEST/1010/behaviour", `{"mode":"manual"}`), http.StatusNoContent)
	r := h.api(http.MethodPost, "/domains/TEST/users/1000/calls", map[string]string{
		"synchronous": "no", "call-id": "ctl-late", "call-term-user": "1010", "auto-answer-enabled": "yes",
	})
	wantStatus(t, r, http.StatusAccepted)
	wantStatus(t, h.ctl(http.MethodPost, "/users/TEST/1010/answer", nil), http.StatusNoContent)
	wantStatus(t, h.ctl(http.MethodGet, "/idle", nil), http.StatusNoContent)
	c, ok := findCall(h.calls(), func(c nssim.ActiveCall) bool { return c.OrigCallID == "ctl-late" })
	if !ok || c.TermInfo != nssim.InfoActive {
		t.Fatalf("consult %+v (listed %v), want 1010 answered", c, ok)
	}
	// With nothing ringing and nothing pending, the answer is still a 409 at once.
	wantControlError(t, h.ctl(http.MethodPost, "/users/TEST/1011/answer", nil), 409)
}
