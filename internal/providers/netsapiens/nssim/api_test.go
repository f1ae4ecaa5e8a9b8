package nssim_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

func TestAuth(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	orig := h.placeCall("1000")
	hold := apiBase + callPath("1000", orig.TermCallID, "hold")
	tests := []struct {
		name         string
		key          string
		header       string // overrides key
		method, path string
		status       int
		message      string
	}{
		{name: "no credential", method: "GET", path: apiBase + "/domains/TEST/calls", status: 401, message: "Unauthorized"},
		{name: "basic auth", header: "Basic dXNlcjpwYXNz", method: "GET", path: apiBase + "/domains/TEST/calls", status: 401},
		{name: "empty bearer", header: "Bearer ", method: "GET", path: apiBase + "/domains/TEST/calls", status: 401},
		{name: "unknown key", key: "nsd_unknown", method: "GET", path: apiBase + "/domains/TEST/calls", status: 401},
		{name: "unknown route needs auth first", method: "GET", path: apiBase + "/nope", status: 401},
		{name: "other domain", key: domainKey, method: "GET", path: apiBase + "/domains/OTHER/calls", status: 403, message: "Domain not found or access denied"},
		{name: "domain is case-insensitive", key: domainKey, method: "GET", path: apiBase + "/domains/test/calls", status: 200},
		{name: "super user any domain", key: superKey, method: "GET", path: apiBase + "/domains/OTHER/calls", status: 200},
		{name: "super user all domains", key: superKey, method: "GET", path: apiBase + "/domains/*/calls", status: 200},
		{name: "read-only may read", key: readKey, method: "GET", path: apiBase + "/domains/TEST/calls", status: 200},
		{name: "read-only may not write", key: readKey, method: "PATCH", path: hold, status: 403, message: "Permission Denied"},
		{name: "~ domain", key: domainKey, method: "GET", path: apiBase + "/domains/~/calls/count", status: 200},
		{name: "~ domain of a super key", key: superKey, method: "GET", path: apiBase + "/domains/~/calls", status: 400, message: "~"},
		{name: "~ user of a domain key", key: domainKey, method: "GET", path: apiBase + "/domains/~/users/~/calls", status: 400, message: "~"},
		{name: "~ user of a user key", key: userKey, method: "GET", path: apiBase + "/domains/~/users/~/calls", status: 200},
		{name: "user key on another user", key: userKey, method: "GET", path: apiBase + "/domains/TEST/users/1010/calls", status: 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, h.srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.header != "":
				req.Header.Set("Authorization", tc.header)
			case tc.key != "":
				req.Header.Set("Authorization", "Bearer "+tc.key)
			}
			resp, err := h.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var r response
			r.status, r.header = resp.StatusCode, resp.Header
			r.body, _ = readAll(resp)
			if tc.status >= 400 {
				wantError(t, r, tc.status, tc.message)
				return
			}
			wantStatus(t, r, tc.status)
		})
	}
	if c := h.calls()[0]; c.OrigInfo != nssim.InfoActive {
		t.Error("a refused hold took effect")
	}
	t.Run("~ resolves to the key's user", func(t *testing.T) {
		r := h.must(userKey, http.MethodGet, apiBase+"/domains/~/users/~/calls", nil)
		var calls []nssim.ActiveCall
		r.decode(t, &calls)
		if len(calls) != 1 || calls[0].SessionID != orig.SessionID {
			t.Fatalf("calls %s, want 1000's call", r.body)
		}
	})
	t.Run("no keys configured accepts any bearer", func(t *testing.T) {
		h := newHarness(t, nssim.Config{APIKeys: map[string]nssim.KeyScope{}})
		wantStatus(t, h.must("anything", http.MethodGet, apiBase+"/domains/ANY/calls", nil), 200)
		wantError(t, h.must("", http.MethodGet, apiBase+"/domains/ANY/calls", nil), 401, "")
	})
}

func readAll(resp *http.Response) ([]byte, error) {
	return io.ReadAll(resp.Body)
}

func TestNotFound(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	orig := h.placeCall("1000")
	tests := []struct {
		name, method, path, message string
	}{
		{"unknown route", "GET", "/nope", "No Route Found"},
		{"wrong method", "PUT", "/domains/TEST/calls", "No Route Found"},
		{"unknown action", "PATCH", callPath("1000", orig.TermCallID, "park"), "No Route Found"},
		{"reject must be DELETE", "PATCH", callPath("1000", orig.OrigCallID, "reject"), "No Route Found"},
		{"unknown call", "GET", callPath("1000", "nope", ""), "Call not found"},
		{"call of another user", "GET", callPath("1099", orig.TermCallID, ""), "Call not found"},
		{"hold unknown call", "PATCH", callPath("1000", "nope", "hold"), "Call not found"},
		{"unhold unknown call", "PATCH", callPath("1000", "nope", "unhold"), "Call not found"},
		{"answer unknown call", "PATCH", callPath("1000", "nope", "answer"), "Call not found"},
		{"transfer unknown call", "PATCH", callPath("1000", "nope", "transfer"), "Call not found"},
		{"disconnect unknown call", "DELETE", callPath("1000", "nope", ""), "Call not found"},
		{"reject unknown call", "DELETE", callPath("1000", "nope", "reject"), "Call not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := any(nil)
			if tc.method == "PATCH" {
				body = map[string]string{"call-term-user": "1010"}
			}
			wantError(t, h.api(tc.method, tc.path, body), http.StatusNotFound, tc.message)
		})
	}
}

func TestListCountRead(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	r := h.api(http.MethodGet, "/domains/TEST/calls", nil)
	wantStatus(t, r, 200)
	if string(r.body) != "[]" {
		t.Errorf("idle list %s, want []", r.body)
	}
	r = h.api(http.MethodGet, "/domains/TEST/calls/count", nil)
	if string(r.body) != `{"total":0}` {
		t.Errorf("idle count %s", r.body)
	}

	a := h.placeCall("1000")
	b := h.placeCall("1001")
	if _, err := h.sim.PlaceCall(nssim.InboundCall{Domain: "OTHER", User: "1000"}); err != nil {
		t.Fatal(err)
	}
	if r := h.api(http.MethodGet, "/domains/TEST/calls/count", nil); string(r.body) != `{"total":2}` {
		t.Errorf("count %s, want 2", r.body)
	}
	if r := h.api(http.MethodGet, "/domains/TEST/users/1000/calls/count", nil); string(r.body) != `{"total":1}` {
		t.Errorf("user count %s, want 1", r.body)
	}
	calls := h.calls()
	if len(calls) != 2 || calls[0].SessionID != a.SessionID || calls[1].SessionID != b.SessionID {
		t.Errorf("list %+v, want a then b", calls)
	}
	var all []nssim.ActiveCall
	h.must(superKey, http.MethodGet, apiBase+"/domains/*/calls", nil).decode(t, &all)
	if len(all) != 3 {
		t.Errorf("%d calls in all domains, want 3", len(all))
	}
	var mine []nssim.ActiveCall
	h.api(http.MethodGet, "/domains/TEST/users/1001/calls", nil).decode(t, &mine)
	if len(mine) != 1 || mine[0].SessionID != b.SessionID {
		t.Errorf("1001's calls %+v", mine)
	}
	for _, id := range []string{a.OrigCallID, a.TermCallID} {
		var one nssim.ActiveCall
		r := h.api(http.MethodGet, callPath("1000", id, ""), nil)
		wantStatus(t, r, 200)
		r.decode(t, &one)
		if one.SessionID != a.SessionID {
			t.Errorf("read by %s: %+v", id, one)
		}
	}
}

func TestCreateCall(t *testing.T) {
	tests := []struct {
		name    string
		cfg     nssim.Config
		body    any
		status  int
		message string
	}{
		{name: "malformed JSON", body: `{"call-id":`, status: 400, message: "Invalid JSON"},
		{name: "not an object", body: `[1]`, status: 400},
		{name: "empty body", body: ``, status: 400, message: "call-id, call-term-user"},
		{name: "missing call-id", body: map[string]string{"call-term-user": "1010"}, status: 400, message: "call-id"},
		{name: "missing call-term-user", body: map[string]string{"call-id": "x"}, status: 400, message: "call-term-user"},
		{name: "object as a field", body: `{"call-id":"x","call-term-user":{"a":1}}`, status: 400, message: "call-term-user"},
		{name: "bad synchronous", body: map[string]string{"call-id": "x", "call-term-user": "1010", "synchronous": "maybe"}, status: 400, message: "synchronous"},
		{name: "strict synchronous", cfg: nssim.Config{StrictSynchronous: true}, body: map[string]string{"call-id": "x", "call-term-user": "1010"}, status: 400, message: "synchronous"},
		{name: "lenient synchronous", body: map[string]string{"call-id": "x", "call-term-user": "1010"}, status: 202},
		{name: "unknown fields ignored", body: `{"call-id":"x","call-term-user":1010,"dial-rule-application":"call","bogus":[1]}`, status: 202},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			r := h.api(http.MethodPost, "/domains/TEST/users/1000/calls", tc.body)
			if tc.status >= 400 {
				wantError(t, r, tc.status, tc.message)
				h.idle()
				if n := len(h.sim.Sessions("")); n != 0 {
					t.Errorf("%d sessions after a refused create", n)
				}
				return
			}
			wantStatus(t, r, tc.status)
			h.idle()
			calls := h.calls()
			if len(calls) != 1 || calls[0].TermUser != "1010" || calls[0].OrigCallID != "x" {
				t.Errorf("calls %+v", calls)
			}
		})
	}

	t.Run("duplicate call-id", func(t *testing.T) {
		h := newHarness(t, nssim.Config{})
		body := map[string]string{"call-id": "dup", "call-term-user": "1010"}
		wantStatus(t, h.api(http.MethodPost, "/domains/TEST/users/1000/calls", body), 202)
		h.idle()
		wantError(t, h.api(http.MethodPost, "/domains/TEST/users/1000/calls", body), 409, "call-id")
	})
	t.Run("duplicate while still being created", func(t *testing.T) {
		h := newHarness(t, nssim.Config{ActionDelay: time.Hour, DuplicateCallIDStatus: 400})
		body := map[string]string{"call-id": "dup", "call-term-user": "1010"}
		wantStatus(t, h.api(http.MethodPost, "/domains/TEST/users/1000/calls", body), 202)
		wantError(t, h.api(http.MethodPost, "/domains/TEST/users/1000/calls", body), 400, "call-id")
	})
	t.Run("synchronous", func(t *testing.T) {
		h := newHarness(t, nssim.Config{})
		h.sim.SetBehaviour("TEST", "1000", nssim.Behaviour{Mode: nssim.ModeManual})
		r := h.api(http.MethodPost, "/domains/TEST/users/1000/calls", map[string]string{
			"synchronous": "yes", "call-id": "sync-1", "call-term-user": "1010@TEST", "caller-id-number": "15550001111",
		})
		wantStatus(t, r, http.StatusOK)
		var c nssim.ActiveCall
		r.decode(t, &c)
		if c.OrigCallID != "sync-1" || c.ByCallID != "sync-1" || c.ByAction != "CallRequest" || c.ByUser != "1000" ||
			c.ByDomain != "TEST" || c.OrigUser != "1000" || c.OrigInfo != nssim.InfoAlerting || c.TermUser != "1010" ||
			c.TermCallID != "" || c.TermInfo != "" || c.CallerIDNumber != "15550001111" || c.DialedNumber != "1010" {
			t.Errorf("synchronous create returned %+v", c)
		}
	})
	t.Run("callback leg rings first", func(t *testing.T) {
		h := newHarness(t, nssim.Config{})
		h.sim.SetBehaviour("TEST", "1001", nssim.Behaviour{Mode: nssim.ModeManual})
		wantStatus(t, h.api(http.MethodPost, "/domains/TEST/users/1000/calls", map[string]string{
			"call-id": "cb-1", "call-term-user": "1010", "call-orig-user": "1001@TEST",
		}), 202)
		h.idle()
		c := h.calls()[0]
		if c.OrigUser != "1001" || c.ByUser != "1000" || c.OrigInfo != nssim.InfoAlerting || c.TermCallID != "" {
			t.Fatalf("before the callback is answered: %+v", c)
		}
		// The requester may address the call by its call-id although 1001 is the party.
		wantAccepted(t, h.api(http.MethodPatch, callPath("1000", "cb-1", "hold"), nil))
	})
}

func TestAnswerEndpoint(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	h.sim.SetBehaviour("TEST", "1000", nssim.Behaviour{Mode: nssim.ModeManual})
	r := h.ctl(http.MethodPost, "/calls", map[string]any{"user": "1000", "ring": true})
	wantStatus(t, r, http.StatusCreated)
	var in nssim.ActiveCall
	r.decode(t, &in)
	h.idle()
	if c := h.calls()[0]; c.TermInfo != nssim.InfoAlerting || c.AnswerDatetime != "0000-00-00 00:00:00" {
		t.Fatalf("inbound call %+v, want 1000 ringing", c)
	}
	wantAccepted(t, h.api(http.MethodPatch, callPath("1000", in.OrigCallID, "answer"), map[string]string{"destination": "sip:1000wp@TEST"}))
	h.idle()
	c := h.calls()[0]
	if c.TermInfo != nssim.InfoActive || c.AnswerDatetime == "0000-00-00 00:00:00" {
		t.Fatalf("after answer %+v", c)
	}
	wantError(t, h.api(http.MethodPatch, callPath("1000", in.OrigCallID, "answer"), nil), 409, "not ringing")

	t.Run("callback leg", func(t *testing.T) {
		h := newHarness(t, nssim.Config{NotRingingStatus: 400})
		h.sim.SetBehaviour("TEST", "1000", nssim.Behaviour{Mode: nssim.ModeManual})
		wantStatus(t, h.api(http.MethodPost, "/domains/TEST/users/1000/calls", map[string]string{
			"call-id": "cb", "call-term-user": "1010",
		}), 202)
		h.idle()
		wantAccepted(t, h.api(http.MethodPatch, callPath("1000", "cb", "answer"), nil))
		h.idle()
		c := h.calls()[0]
		if c.OrigInfo != nssim.InfoActive || c.TermInfo != nssim.InfoActive || c.TermCallID == "" {
			t.Fatalf("after answering the callback leg %+v, want 1010 dialled and answered", c)
		}
		wantError(t, h.api(http.MethodPatch, callPath("1000", "cb", "answer"), nil), 400, "not ringing")
	})
}

func TestTargetBehaviours(t *testing.T) {
	tests := []struct {
		name      string
		behaviour nssim.Behaviour
		cfg       nssim.Config
		// drive makes the outcome happen and returns once it has.
		drive func(h *harness, sessionID string)
		end   nssim.EndReason // "" = the call is up with 1010 active
	}{
		{name: "answer", behaviour: nssim.Behaviour{}},
		{name: "busy", behaviour: nssim.Behaviour{Mode: nssim.ModeBusy}, end: nssim.EndBusy},
		{name: "reject", behaviour: nssim.Behaviour{Mode: nssim.ModeReject}, end: nssim.EndRejected},
		{
			name: "never", behaviour: nssim.Behaviour{Mode: nssim.ModeNever}, cfg: nssim.Config{RingTimeout: 5 * time.Millisecond},
			drive: func(h *harness, id string) {
				h.waitFor("ring timeout", func() bool { return len(h.sim.Ended()) == 1 })
			},
			end: nssim.EndNoAnswer,
		},
		{
			name: "manual", behaviour: nssim.Behaviour{Mode: nssim.ModeManual},
			drive: func(h *harness, id string) {
				if c := h.sim.Sessions("TEST")[0]; c.TermInfo != nssim.InfoAlerting {
					h.t.Fatalf("manual target %+v, want ringing", c)
				}
				wantStatus(h.t, h.ctl(http.MethodPost, "/users/TEST/1010/answer", nil), http.StatusNoContent)
				h.idle()
			},
		},
		{
			name: "after", behaviour: nssim.Behaviour{Mode: nssim.ModeAfter, Delay: 5 * time.Millisecond},
			drive: func(h *harness, id string) {
				h.waitFor("answer", func() bool { return h.sim.Sessions("TEST")[0].TermInfo == nssim.InfoActive })
			},
		},
		{
			name: "after with the default delay", behaviour: nssim.Behaviour{Mode: nssim.ModeAfter},
			cfg: nssim.Config{AnswerDelay: 5 * time.Millisecond},
			drive: func(h *harness, id string) {
				h.waitFor("answer", func() bool { return h.sim.Sessions("TEST")[0].TermInfo == nssim.InfoActive })
			},
		},
		{
			name: "after longer than the ring timeout", behaviour: nssim.Behaviour{Mode: nssim.ModeAfter, Delay: time.Hour},
			cfg: nssim.Config{RingTimeout: 5 * time.Millisecond},
			drive: func(h *harness, id string) {
				h.waitFor("ring timeout", func() bool { return len(h.sim.Ended()) == 1 })
			},
			end: nssim.EndNoAnswer,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			h.sim.SetBehaviour("TEST", "1010", tc.behaviour)
			wantStatus(t, h.api(http.MethodPost, "/domains/TEST/users/1000/calls", map[string]string{
				"call-id": "b-1", "call-term-user": "1010", "auto-answer-enabled": "yes",
			}), 202)
			h.idle()
			id := ""
			if s := h.sim.Sessions(""); len(s) == 1 {
				id = s[0].SessionID
			} else if e := h.sim.Ended(); len(e) == 1 {
				id = e[0].Call.SessionID
			}
			if tc.drive != nil {
				tc.drive(h, id)
			}
			if tc.end != "" {
				wantEnded(t, h.sim, id, tc.end)
				if n := len(h.sim.Sessions("")); n != 0 {
					t.Errorf("%d sessions left", n)
				}
				return
			}
			c := h.calls()[0]
			if c.TermUser != "1010" || c.TermInfo != nssim.InfoActive || c.OrigInfo != nssim.InfoActive {
				t.Errorf("call %+v, want 1000 and 1010 talking", c)
			}
		})
	}
}

func TestHoldUnhold(t *testing.T) {
	tests := []struct {
		name         string
		side         string
		wantO, wantT string
	}{
		{"remote", nssim.HeldRemote, nssim.InfoHeld, nssim.InfoActive},
		{"both", nssim.HeldBoth, nssim.InfoHeld, nssim.InfoHeld},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nssim.Config{HeldSide: tc.side})
			orig := h.placeCall("1000")
			wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.TermCallID, "hold"), nil))
			h.idle()
			if c := h.calls()[0]; c.OrigInfo != tc.wantO || c.TermInfo != tc.wantT {
				t.Fatalf("held: orig %q term %q, want %q %q", c.OrigInfo, c.TermInfo, tc.wantO, tc.wantT)
			}
			// The orig call id addresses the same call.
			wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.OrigCallID, "unhold"), nil))
			h.idle()
			if c := h.calls()[0]; c.OrigInfo != nssim.InfoActive || c.TermInfo != nssim.InfoActive {
				t.Fatalf("unheld: orig %q term %q", c.OrigInfo, c.TermInfo)
			}
		})
	}
	t.Run("a ringing call cannot be held", func(t *testing.T) {
		h := newHarness(t, nssim.Config{})
		h.sim.SetBehaviour("TEST", "1000", nssim.Behaviour{Mode: nssim.ModeManual})
		in, err := h.sim.PlaceCall(nssim.InboundCall{User: "1000", Ring: true})
		if err != nil {
			t.Fatal(err)
		}
		wantAccepted(t, h.api(http.MethodPatch, callPath("1000", in.TermCallID, "hold"), nil))
		h.idle()
		if c := h.calls()[0]; c.OrigInfo != nssim.InfoActive || c.TermInfo != nssim.InfoAlerting {
			t.Fatalf("call %+v changed", c)
		}
	})
}

func TestDisconnect(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	orig := h.placeCall("1000")
	r := h.api(http.MethodDelete, callPath("1000", orig.TermCallID, ""), nil)
	wantStatus(t, r, http.StatusOK)
	if string(r.body) != "{}" {
		t.Errorf("body %s, want {}", r.body)
	}
	// 200, not 202: the call is gone when the response arrives.
	if n := len(h.sim.Sessions("")); n != 0 {
		t.Fatalf("%d sessions after disconnect", n)
	}
	wantEnded(t, h.sim, orig.SessionID, nssim.EndDisconnected)
	wantError(t, h.api(http.MethodDelete, callPath("1000", orig.TermCallID, ""), nil), 404, "")

	// A consultation is ended by the call-id the client chose.
	consult := h.consult("1000", "1010", "my-call-id")
	wantStatus(t, h.api(http.MethodDelete, callPath("1000", "my-call-id", ""), nil), 200)
	wantEnded(t, h.sim, consult.SessionID, nssim.EndDisconnected)
}

func TestReject(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	h.sim.SetBehaviour("TEST", "1010", nssim.Behaviour{Mode: nssim.ModeManual})
	consult := h.consult("1000", "1010", "ringing-consult")
	// Only the orig Call-ID addresses a reject.
	wantError(t, h.api(http.MethodDelete, callPath("1000", consult.TermCallID, "reject"), nil), 404, "")
	r := h.api(http.MethodDelete, callPath("1000", "ringing-consult", "reject"), nil)
	wantStatus(t, r, http.StatusAccepted)
	if string(r.body) != "{}" {
		t.Errorf("body %s, want {}", r.body)
	}
	h.idle()
	wantEnded(t, h.sim, consult.SessionID, nssim.EndRejected)

	answered := h.placeCall("1000")
	wantError(t, h.api(http.MethodDelete, callPath("1000", answered.OrigCallID, "reject"), nil), 409, "not ringing")

	t.Run("inbound ringing call", func(t *testing.T) {
		h := newHarness(t, nssim.Config{})
		h.sim.SetBehaviour("TEST", "1000", nssim.Behaviour{Mode: nssim.ModeManual})
		in, err := h.sim.PlaceCall(nssim.InboundCall{User: "1000", Ring: true})
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, h.api(http.MethodDelete, callPath("1000", in.OrigCallID, "reject"), nil), 202)
		h.idle()
		wantEnded(t, h.sim, in.SessionID, nssim.EndRejected)
	})
}

func TestHangup(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	c := h.placeCall("1000")
	if err := h.sim.Hangup(c.SessionID, "sideways"); err == nil {
		t.Error("Hangup accepted an unknown party")
	}
	if err := h.sim.Hangup("nope", "orig"); err == nil {
		t.Error("Hangup accepted an unknown session")
	}
	if err := h.sim.Hangup(c.SessionID, "orig"); err != nil {
		t.Fatal(err)
	}
	wantEnded(t, h.sim, c.SessionID, nssim.EndHangup)
	if e := h.sim.Ended()[0]; !strings.Contains(e.Detail, "orig") || e.Call.TermUser != "1000" {
		t.Errorf("ended %+v", e)
	}
}

func TestDefaultBehaviour(t *testing.T) {
	h := newHarness(t, nssim.Config{DefaultBehaviour: nssim.Behaviour{Mode: nssim.ModeManual}})
	h.sim.SetBehaviour("TEST", "1020", nssim.Behaviour{Mode: nssim.ModeAnswer})
	ringing := h.consult("1000", "1010", "d-1")
	answered := h.consult("1000", "1020", "d-2")
	if ringing.TermInfo != nssim.InfoAlerting || answered.TermInfo != nssim.InfoActive {
		t.Errorf("1010 %q (default), 1020 %q (own behaviour)", ringing.TermInfo, answered.TermInfo)
	}
}
