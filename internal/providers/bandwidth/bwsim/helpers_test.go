package bwsim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testToken  = "tok-123"
	testSecret = "sec-456"
	testUser   = "u-sim"

	ownedMain = "+15555550000" // the number customers dial
	ownedAlt  = "+15555550001"
	customer  = "+15555550100"
	agent     = "+15555550111"
	target    = "+19195550123"

	// mount is deliberately not "/v1": clients must not assume the docs' path.
	mount = "/bw/v1"
)

// env is a simulator behind a real HTTP server, its API mounted under mount and its control
// surface under /bw/control.
type env struct {
	t   *testing.T
	sim *Sim
	srv *httptest.Server
	ctx context.Context
}

// newEnv adds the test credentials and owned numbers to cfg.
func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	cfg.Token, cfg.Secret = testToken, testSecret
	if cfg.OwnedNumbers == nil {
		cfg.OwnedNumbers = []string{ownedMain, ownedAlt}
	}
	return newEnvRaw(t, cfg)
}

// newEnvRaw uses cfg as given.
func newEnvRaw(t *testing.T, cfg Config) *env {
	t.Helper()
	sim := New(cfg)
	mux := http.NewServeMux()
	mux.Handle(mount+"/", http.StripPrefix(mount, sim.APIHandler()))
	mux.Handle("/bw/control/", http.StripPrefix("/bw/control", sim.ControlHandler()))
	srv := httptest.NewServer(mux)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(func() {
		cancel()
		sim.Close()
		srv.Close()
	})
	return &env{t: t, sim: sim, srv: srv, ctx: ctx}
}

// resp is a response read in full.
type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) location() string { return r.header.Get("Location") }

// id is the last segment of the Location, as every SDK reads it.
func (r resp) id() string { return path.Base(r.location()) }

func (r resp) apiErr(t *testing.T) errorBody {
	t.Helper()
	var b errorBody
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type = %q", ct)
	}
	return b
}

// send makes a request to the API with the test credentials; p is relative to the API root.
func (e *env) send(method, p, body string) resp {
	e.t.Helper()
	return e.sendAuth(method, p, body, testToken, testSecret)
}

func (e *env) sendAuth(method, p, body, user, pass string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(e.ctx, method, e.srv.URL+mount+p, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if user != "" || pass != "" {
		req.SetBasicAuth(user, pass)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return e.do(req)
}

func (e *env) do(req *http.Request) resp {
	e.t.Helper()
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

// control makes a request to the control surface.
func (e *env) control(method, p, body string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(e.ctx, method, e.srv.URL+"/bw/control"+p, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(req)
}

func callPath(id string) string   { return "/users/" + testUser + "/calls/" + id }
func bridgePath(id string) string { return "/users/" + testUser + "/bridges/" + id }

const callsPath = "/users/" + testUser + "/calls"
const bridgesPath = "/users/" + testUser + "/bridges"

func (e *env) wantStatus(r resp, want int) {
	e.t.Helper()
	if r.status != want {
		e.t.Fatalf("status = %d, want %d; body %s", r.status, want, r.body)
	}
}

// wantError checks status, code and (if not empty) the exact message of an error response.
func (e *env) wantError(r resp, status int, code, message string) errorBody {
	e.t.Helper()
	e.wantStatus(r, status)
	b := r.apiErr(e.t)
	if b.Code != code {
		e.t.Errorf("code = %q, want %q (message %q)", b.Code, code, b.Message)
	}
	if message != "" && b.Message != message {
		e.t.Errorf("message = %q\nwant      %q", b.Message, message)
	}
	return b
}

// inbound places an answered inbound call from the customer.
func (e *env) inbound() Call {
	e.t.Helper()
	a, err := e.sim.PlaceCall(InboundCall{From: customer, To: ownedMain})
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

func (e *env) call(id string) Call {
	e.t.Helper()
	c, ok := e.sim.Call(id)
	if !ok {
		e.t.Fatalf("no call %s", id)
	}
	return c
}

func (e *env) bridge(id string) Bridge {
	e.t.Helper()
	b, ok := e.sim.Bridge(id)
	if !ok {
		e.t.Fatalf("no bridge %s", id)
	}
	return b
}

func (e *env) idle() {
	e.t.Helper()
	if err := e.sim.WaitIdle(e.ctx); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) waitState(id string, states ...string) Call {
	e.t.Helper()
	c, err := e.sim.WaitCallState(e.ctx, id, states...)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// getCall GETs the call's v1 representation as a generic map.
func (e *env) getCall(id string) map[string]any {
	e.t.Helper()
	r := e.send(http.MethodGet, callPath(id), "")
	e.wantStatus(r, http.StatusOK)
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		e.t.Fatal(err)
	}
	return m
}

// receiver is a callback endpoint that records what it receives.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []received
	status int
}

type received struct {
	method string
	header http.Header
	query  string
	event  map[string]any
}

func newReceiver(t *testing.T, status int) *receiver {
	t.Helper()
	rc := &receiver{status: status}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev map[string]any
		if b, _ := io.ReadAll(r.Body); len(b) > 0 {
			_ = json.Unmarshal(b, &ev)
		}
		rc.mu.Lock()
		rc.got = append(rc.got, received{method: r.Method, header: r.Header.Clone(), query: r.URL.RawQuery, event: ev})
		rc.mu.Unlock()
		w.WriteHeader(rc.status)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) events() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// eventTypes lists the eventType of each event received for the call.
func (rc *receiver) eventTypes(callID string) []string {
	var out []string
	for _, r := range rc.events() {
		if r.event["callId"] == callID {
			out = append(out, r.event["eventType"].(string))
		}
	}
	return out
}

// fakeClock is a Config.Now that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
