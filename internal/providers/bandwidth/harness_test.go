package bandwidth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/providers/apiclient"
	"github.com/transferd/transferd/internal/providers/bandwidth"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
	"github.com/transferd/transferd/internal/store/memory"
)

const (
	apiToken  = "bwtok-T0kenT0kenT0kenT0ken9876"
	apiSecret = "bwsec-S3cretS3cretS3cretS3cret1234"
	userID    = "u-transferd"
	// basePath is deliberately not the docs' "/v1": nothing may assume it.
	basePath = "/carrier/catapult/v1"
	owned    = "+15555550000" // the number customers dial
	customer = "+15555550100"
	agentNum = "+15555550111"
	target   = "+19195550123"
)

// syncBuffer is a log sink safe for the engine's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// hook runs before a matching API request reaches the simulator: it
// injects a fault for exactly that request, or holds it back.
type hook struct {
	match func(method, path, body string) bool
	run   func()
	used  bool
	every bool // runs before every matching request, not only the first
}

type options struct {
	sim    bwsim.Config
	engine func(*orchestrator.Config)
	// callbacks serves CallbackHandler on an httptest server and sets
	// PublicURL to it.
	callbacks bool
	// onCallback sees every callback the handler answered.
	onCallback func(eventType string)
	// dropCallback, when it reports true for a callback's body, answers it
	// 200 without handing it to the client: a callback the process
	// receiving it never acted on (it stopped first).
	dropCallback func(body []byte) bool
	// refuseCallback, when it reports true for a callback's body, answers
	// it 503 without handing it to the client: transferd's answer to a
	// callback whose note the process driving its transfer did not save
	// in time (api.NoteKeeper), for the platform to send it again.
	refuseCallback func(body []byte) bool
	// rewriteCallback, when set, replaces a callback's body before the
	// client reads it (and onCallback sees it): a platform that words an
	// event otherwise than bwsim.
	rewriteCallback func(body []byte) []byte
	// callbackToken is the client's CallbackToken (nil: none).
	callbackToken func(transferID string) string
	// respond, when set, wraps the writer of every API answer, so that a
	// test can change what the platform answers (drop a header, say).
	respond func(w http.ResponseWriter, r *http.Request) http.ResponseWriter
	// wrap, when set, is a middleware around bwsim's API handler (after
	// the hooks): it can act after a request was served, and hold other
	// requests back meanwhile.
	wrap func(sim *bwsim.Sim, api http.Handler) http.Handler
	// now is the client's clock (Config.Now; nil: time.Now), which its
	// waits for an update to show are measured by.
	now func() time.Time
}

type harness struct {
	sim    *bwsim.Sim
	eng    *orchestrator.Engine
	client *bandwidth.Client
	logs   *syncBuffer
	reg    *prometheus.Registry
	public string // PublicURL, when callbacks are served
	apiURL string // the simulator's API, as the client's BaseURL
	mu     sync.Mutex
	// callbacks is the client's CallbackHandler, served once built.
	callbacks http.Handler
	hooks     []*hook
	notified  []string
	store     *orchestratortest.Saved
}

// waitSaved waits until the stored record of id satisfies cond: for what
// happens to a terminal transfer (its cleanup), which Engine.Wait does not
// wait for.
func (h *harness) waitSaved(t *testing.T, id string, cond func(*orchestrator.Transfer) bool) *orchestrator.Transfer {
	t.Helper()
	return h.store.WaitSaved(t, id, cond)
}

func setup(t *testing.T, o options) *harness {
	t.Helper()
	h := &harness{logs: &syncBuffer{}, reg: prometheus.NewRegistry()}
	cfg := o.sim
	cfg.Token, cfg.Secret, cfg.UserID = apiToken, apiSecret, userID
	if cfg.OwnedNumbers == nil {
		cfg.OwnedNumbers = []string{owned}
	}
	if cfg.MaxRecords == 0 {
		// The engine here reads every millisecond or so: through a
		// visibility window of 5 s that is about 6,000 reads, and through
		// two the default 10,000 records dropped the commands a test
		// looks for (TestAttendedCancelRestoresCaller failed so on an idle
		// machine).
		cfg.MaxRecords = 1 << 20
	}
	h.sim = bwsim.New(cfg)
	var simAPI http.Handler = h.sim.APIHandler()
	if o.wrap != nil {
		simAPI = o.wrap(h.sim, simAPI)
	}
	api := http.StripPrefix(basePath, simAPI)
	mux := http.NewServeMux()
	mux.Handle(basePath+"/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.runHooks(r.Method, strings.TrimPrefix(r.URL.Path, basePath), string(body))
		if o.respond != nil {
			w = o.respond(w, r)
		}
		api.ServeHTTP(w, r)
	}))
	srv := httptest.NewServer(mux)

	var cbSrv *httptest.Server
	if o.callbacks {
		cbMux := http.NewServeMux()
		cbMux.Handle("/callbacks/bandwidth/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if o.rewriteCallback != nil {
				body = o.rewriteCallback(body)
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			if o.dropCallback != nil && o.dropCallback(body) {
				w.WriteHeader(http.StatusOK)
				return
			}
			if o.refuseCallback != nil && o.refuseCallback(body) {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			h.mu.Lock()
			handler := h.callbacks
			h.mu.Unlock()
			if handler == nil {
				http.NotFound(w, r)
				return
			}
			http.StripPrefix("/callbacks/bandwidth", handler).ServeHTTP(w, r)
			if o.onCallback != nil {
				o.onCallback(eventOf(body))
			}
		}))
		cbSrv = httptest.NewServer(cbMux)
		h.public = cbSrv.URL
	}

	h.apiURL = srv.URL + basePath
	ecfg := orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond}
	if o.engine != nil {
		o.engine(&ecfg)
	}
	// The adapter is given the engine's visibility window and step
	// timeout, as cmd/transferd gives it TRANSFERD_VISIBILITY_WINDOW and
	// TRANSFERD_STEP_TIMEOUT (0: the default of both).
	client, err := bandwidth.New(bandwidth.Config{BaseURL: h.apiURL, UserID: userID,
		APIToken: apiToken, APISecret: apiSecret, Attempts: 3, RetryBase: time.Millisecond,
		MaxRateLimitWait: 5 * time.Second, PublicURL: h.public, CallbackToken: o.callbackToken,
		Metrics: apiclient.NewMetrics(h.reg), VisibilityWindow: ecfg.VisibilityWindow, StepTimeout: ecfg.StepTimeout, Now: o.now})
	if err != nil {
		t.Fatal(err)
	}
	h.client = client
	h.store = orchestratortest.NewSaved(memory.New())
	h.eng, err = orchestrator.New(ecfg, h.store, []orchestrator.Provider{client},
		zerolog.New(h.logs).Level(zerolog.DebugLevel), h.reg)
	if err != nil {
		t.Fatal(err)
	}
	handler := client.CallbackHandler(func(id string) {
		h.mu.Lock()
		h.notified = append(h.notified, id)
		h.mu.Unlock()
		h.eng.Notify(id)
	})
	h.mu.Lock()
	h.callbacks = handler
	h.mu.Unlock()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.eng.Shutdown(ctx)
		h.sim.Close()
		srv.Close()
		if cbSrv != nil {
			cbSrv.Close()
		}
	})
	return h
}

// eventOf is the eventType of a callback's body ("" when it has none).
func eventOf(body []byte) string {
	var ev struct {
		EventType string `json:"eventType"`
	}
	_ = json.Unmarshal(body, &ev)
	return ev.EventType
}

func (h *harness) runHooks(method, path, body string) {
	h.mu.Lock()
	var run []func()
	for _, hk := range h.hooks {
		if (!hk.used || hk.every) && hk.match(method, path, body) {
			hk.used = true
			run = append(run, hk.run)
		}
	}
	h.mu.Unlock()
	for _, f := range run {
		f()
	}
}

// before runs f, once, just before the first API request that matches.
func (h *harness) before(match func(method, path, body string) bool, f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hooks = append(h.hooks, &hook{match: match, run: f})
}

// beforeEach runs f just before every API request that matches.
func (h *harness) beforeEach(match func(method, path, body string) bool, f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hooks = append(h.hooks, &hook{match: match, run: f, every: true})
}

// faultAt injects f just before the first request that matches, so that
// this very request (and, with f.Count, its retries) meets the fault.
func (h *harness) faultAt(match func(method, path, body string) bool, f bwsim.Fault) {
	h.before(match, func() { h.sim.InjectFault(f) })
}

// faultEach injects f just before every request that matches.
func (h *harness) faultEach(match func(method, path, body string) bool, f bwsim.Fault) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hooks = append(h.hooks, &hook{match: match, run: func() { h.sim.InjectFault(f) }, every: true})
}

func (h *harness) notifiedIDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.notified)
}

// bridgeUpdate matches POST bridges/{id} whose body decodes to want.
func bridgeUpdate(id string, want map[string]any) func(string, string, string) bool {
	return func(method, path, body string) bool {
		return method == http.MethodPost && path == "/users/"+userID+"/bridges/"+id && jsonEqual(body, want)
	}
}

func jsonEqual(body string, want map[string]any) bool {
	var got map[string]any
	return json.Unmarshal([]byte(body), &got) == nil && reflect.DeepEqual(got, want)
}

// placeCall places an answered inbound call from the customer to the
// account's number.
func (h *harness) placeCall(t *testing.T) bwsim.Call {
	t.Helper()
	a, err := h.sim.PlaceCall(bwsim.InboundCall{From: customer, To: owned})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// placeBridged places the attended starting point: the customer's call A
// and the agent's call G, talking in bridge b1.
func (h *harness) placeBridged(t *testing.T) (bwsim.Call, bwsim.Call, bwsim.Bridge) {
	t.Helper()
	a, g, b1, err := h.sim.PlaceCallWithAgent(bwsim.InboundCall{From: customer, To: owned, Agent: agentNum})
	if err != nil {
		t.Fatal(err)
	}
	return a, g, b1
}

func announcedReq(a bwsim.Call, to string) orchestrator.Request {
	return orchestrator.Request{Provider: bandwidth.Name, Mode: orchestrator.ModeAnnounced,
		Call: orchestrator.CallRef{CallID: a.ID}, Target: to}
}

func attendedReq(a, g bwsim.Call, completion orchestrator.Completion) orchestrator.Request {
	return orchestrator.Request{Provider: bandwidth.Name, Mode: orchestrator.ModeAttended,
		Call: orchestrator.CallRef{CallID: a.ID, AgentCallID: g.ID}, Target: target, Completion: completion}
}

func (h *harness) start(t *testing.T, r orchestrator.Request) *orchestrator.Transfer {
	t.Helper()
	tr, err := h.eng.Start(context.Background(), r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// wait returns the transfer once cond holds or it is terminal.
func (h *harness) wait(t *testing.T, id string, cond func(*orchestrator.Transfer) bool) *orchestrator.Transfer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := h.eng.Wait(ctx, id, cond)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func (h *harness) end(t *testing.T, id string) *orchestrator.Transfer {
	t.Helper()
	tr := h.wait(t, id, func(*orchestrator.Transfer) bool { return false })
	if !tr.State.Terminal() {
		t.Fatalf("transfer did not end: %s", tr.State)
	}
	return tr
}

func (h *harness) idle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.sim.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

// command is one non-GET API request with its decoded body.
type command struct {
	Method, Path string
	Body         map[string]any
	Status       int
}

func (c command) String() string {
	b, _ := json.Marshal(c.Body)
	return c.Method + " " + c.Path + " " + string(b)
}

// commands returns the requests that change something, in order.
func (h *harness) commands(t *testing.T) []command {
	t.Helper()
	var out []command
	for _, r := range h.sim.Requests() {
		if r.Method == http.MethodGet {
			continue
		}
		c := command{Method: r.Method, Path: strings.TrimPrefix(r.Path, "/users/"+userID), Status: r.Status}
		if err := json.Unmarshal([]byte(r.Body), &c.Body); err != nil {
			t.Fatalf("%s %s: body %q is not a JSON object", r.Method, r.Path, r.Body)
		}
		out = append(out, c)
	}
	return out
}

// requestsOf returns the recorded requests of one operation.
func (h *harness) requestsOf(op string) []bwsim.Request {
	var out []bwsim.Request
	for _, r := range h.sim.Requests() {
		if r.Operation == op {
			out = append(out, r)
		}
	}
	return out
}

// undos returns the compensation steps in the order they first ran.
func undos(tr *orchestrator.Transfer) []string {
	var out []string
	for _, s := range tr.Steps {
		if (s.Name == orchestrator.StepUnhold || s.Name == orchestrator.StepHangup) && !slices.Contains(out, s.Name) {
			out = append(out, s.Name)
		}
	}
	return out
}

// withoutLocation answers a create the request matches without its
// Location header, as a proxy that drops it would (notes §2: the id of
// what was created travels only there).
func withoutLocation(match func(method, path string) bool) func(http.ResponseWriter, *http.Request) http.ResponseWriter {
	return func(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
		if match(r.Method, strings.TrimPrefix(r.URL.Path, basePath)) {
			return noLocation{w}
		}
		return w
	}
}

// noLocation drops the Location header of the answer.
type noLocation struct{ http.ResponseWriter }

func (w noLocation) WriteHeader(code int) {
	w.Header().Del("Location")
	w.ResponseWriter.WriteHeader(code)
}

// api sends one request straight to the simulator, as another application
// on the account would, and fails the test unless it succeeds.
func (h *harness) api(t *testing.T, method, path, body string) {
	t.Helper()
	r := httptest.NewRequest(method, "/users/"+userID+path, strings.NewReader(body))
	r.SetBasicAuth(apiToken, apiSecret)
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.sim.APIHandler().ServeHTTP(w, r)
	if w.Code >= 300 {
		t.Fatalf("%s %s %s: %d %s", method, path, body, w.Code, w.Body)
	}
}

func mustCall(t *testing.T, h *harness, id string) bwsim.Call {
	t.Helper()
	c, ok := h.sim.Call(id)
	if !ok {
		t.Fatalf("no call %s in the simulator", id)
	}
	return c
}
