package nssim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// The API is mounted under a non-empty base path, as a real client is configured.
const apiBase = "/ns-api/v2"

// Credentials of the default harness. They look like real keys so a leak would be obvious.
const (
	domainKey = "nsd_TESTdomainKEYxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx12345678"
	superKey  = "nss_SUPERuserKEYxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx12345678"
	readKey   = "nsd_READonlyKEYxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx12345678"
	userKey   = "nsu_USER1000KEYxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx12345678"
)

type harness struct {
	t   *testing.T
	sim *nssim.Sim
	srv *httptest.Server
}

// newHarness serves a simulator over real HTTP. A nil cfg.APIKeys gets the default keys.
func newHarness(t *testing.T, cfg nssim.Config) *harness {
	t.Helper()
	if cfg.APIKeys == nil {
		cfg.APIKeys = map[string]nssim.KeyScope{
			domainKey: {Domain: "TEST"},
			superKey:  {Domain: "*"},
			readKey:   {Domain: "TEST", ReadOnly: true},
			userKey:   {Domain: "TEST", User: "1000"},
		}
	}
	sim := nssim.New(cfg)
	mux := http.NewServeMux()
	mux.Handle(apiBase+"/", http.StripPrefix(apiBase, sim.APIHandler()))
	mux.Handle("/sim/", http.StripPrefix("/sim", sim.ControlHandler()))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		sim.Close()
	})
	return &harness{t: t, sim: sim, srv: srv}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// send makes one request; body is sent as is when it is a string, else as JSON.
func (h *harness) send(ctx context.Context, key, method, path string, body any) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			h.t.Fatalf("encode body: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatalf("new request: %v", err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: raw}, nil
}

func (h *harness) must(key, method, path string, body any) response {
	h.t.Helper()
	r, err := h.send(h.t.Context(), key, method, path, body)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// api calls the NS API with the domain key; path is relative to the API base.
func (h *harness) api(method, path string, body any) response {
	h.t.Helper()
	return h.must(domainKey, method, apiBase+path, body)
}

// ctl calls the control surface; path is relative to its mount point.
func (h *harness) ctl(method, path string, body any) response {
	h.t.Helper()
	return h.must("", method, "/sim"+path, body)
}

func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(h.t.Context(), 10*time.Second)
	h.t.Cleanup(cancel)
	return ctx
}

// idle waits until every action due without delay has been applied.
func (h *harness) idle() {
	h.t.Helper()
	if err := h.sim.WaitIdle(h.ctx()); err != nil {
		h.t.Fatalf("WaitIdle: %v", err)
	}
}

// waitFor waits for a condition that a delayed action makes true.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	if err := h.sim.Wait(h.ctx(), cond); err != nil {
		h.t.Fatalf("waiting for %s: %v", what, err)
	}
}

// calls lists the TEST domain's calls over the API.
func (h *harness) calls() []nssim.ActiveCall {
	h.t.Helper()
	r := h.api(http.MethodGet, "/domains/TEST/calls", nil)
	wantStatus(h.t, r, http.StatusOK)
	var out []nssim.ActiveCall
	r.decode(h.t, &out)
	return out
}

func (h *harness) placeCall(user string) nssim.ActiveCall {
	h.t.Helper()
	r := h.ctl(http.MethodPost, "/calls", map[string]any{"domain": "TEST", "user": user})
	wantStatus(h.t, r, http.StatusCreated)
	var c nssim.ActiveCall
	r.decode(h.t, &c)
	return c
}

// consult makes user call target over the API, auto-answering the callback leg, and returns
// the consultation session once every immediate step has run.
func (h *harness) consult(user, target, callID string) nssim.ActiveCall {
	h.t.Helper()
	r := h.api(http.MethodPost, "/domains/TEST/users/"+user+"/calls", map[string]string{
		"synchronous": "no", "call-id": callID, "call-term-user": target, "auto-answer-enabled": "yes",
	})
	wantStatus(h.t, r, http.StatusAccepted)
	h.idle()
	c, ok := findCall(h.calls(), func(c nssim.ActiveCall) bool { return c.OrigCallID == callID })
	if !ok {
		h.t.Fatalf("consultation call %s not listed", callID)
	}
	return c
}

func findCall(calls []nssim.ActiveCall, match func(nssim.ActiveCall) bool) (nssim.ActiveCall, bool) {
	for _, c := range calls {
		if match(c) {
			return c, true
		}
	}
	return nssim.ActiveCall{}, false
}

func callPath(user, callID, action string) string {
	p := "/domains/TEST/users/" + user + "/calls/" + url.PathEscape(callID)
	if action != "" {
		p += "/" + action
	}
	return p
}

func wantStatus(t *testing.T, r response, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; body %s", r.status, want, r.body)
	}
}

// wantError checks an NS error response: status, JSON content type and {"code","message"}.
func wantError(t *testing.T, r response, status int, message string) {
	t.Helper()
	wantStatus(t, r, status)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var body map[string]any
	r.decode(t, &body)
	if len(body) != 2 || body["code"] != float64(status) {
		t.Errorf("error body %s, want {\"code\":%d,\"message\":...}", r.body, status)
	}
	if msg, _ := body["message"].(string); !strings.Contains(msg, message) {
		t.Errorf("message %q, want it to contain %q", msg, message)
	}
}

func wantAccepted(t *testing.T, r response) {
	t.Helper()
	wantStatus(t, r, http.StatusAccepted)
	if string(r.body) != `{"code":202,"message":"Accepted"}` {
		t.Errorf("body %s, want the SuccessResponse", r.body)
	}
}

func wantEnded(t *testing.T, sim *nssim.Sim, sessionID string, reason nssim.EndReason) {
	t.Helper()
	for _, e := range sim.Ended() {
		if e.Call.SessionID == sessionID {
			if e.Reason != reason {
				t.Fatalf("session %s ended %q (%s), want %q", sessionID, e.Reason, e.Detail, reason)
			}
			return
		}
	}
	t.Fatalf("session %s has not ended; ended: %+v", sessionID, sim.Ended())
}
