package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd"
	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// The contract tests hold openapi.yaml and the server to each other: every
// request below is sent to the real handler over HTTP, checked against the
// spec (does the contract accept it?), and the server's actual response
// (status, headers, body) must be one the spec documents for the
// operation. Response schemas forbid additional properties, so a new or
// renamed field, an undocumented status, a missing header or a problem of
// an unlisted type all fail here.

// contract is openapi.yaml, loaded and validated, with a router that maps
// requests onto its operations.
type contract struct {
	doc    *openapi3.T
	router routers.Router
}

// parseContract loads openapi.yaml, validates it and routes it (what
// loadContract keeps for the package).
func parseContract(t *testing.T) *contract {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(transferd.OpenAPI)
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi.yaml declares OpenAPI %s, want 3.1", doc.OpenAPI)
	}
	// The spec's server is the operator's address; match any host so that
	// requests to the test server find their operations.
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("route openapi.yaml: %v", err)
	}
	return &contract{doc: doc, router: router}
}

// env is a real server over a real engine, store and the fake provider.
type env struct {
	c    *contract
	srv  *httptest.Server
	eng  *orchestrator.Engine
	fake *orchestratortest.Fake
	h    http.Handler
	ids  map[string]string // transfers created by earlier cases, by role
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvLogging(t, zerolog.Nop())
}

// newEnvLogging is newEnv with the server's log (its access log among
// it) written to log.
func newEnvLogging(t *testing.T, log zerolog.Logger) *env {
	t.Helper()
	return newEnvSigning(t, log, testSigner(t))
}

// newEnvSigning is newEnvLogging with signer checking the callbacks'
// tokens.
func newEnvSigning(t *testing.T, log zerolog.Logger, signer *api.CallbackSigner) *env {
	t.Helper()
	return newEnvStore(t, log, signer, memory.New())
}

// newEnvStore is newEnvSigning on store.
func newEnvStore(t *testing.T, log zerolog.Logger, signer *api.CallbackSigner, store orchestrator.Store) *env {
	t.Helper()
	return newEnvConfig(t, log, signer, store, nil)
}

// newEnvConfig is newEnvStore with the server's configuration changed by
// tweak, if any.
func newEnvConfig(t *testing.T, log zerolog.Logger, signer *api.CallbackSigner, store orchestrator.Store, tweak func(*api.Config)) *env {
	t.Helper()
	fake := orchestratortest.NewFake("netsapiens")
	reg := prometheus.NewRegistry()
	eng, err := orchestrator.New(orchestrator.Config{
		PollInterval:    time.Millisecond,
		PollMaxInterval: 5 * time.Millisecond,
		VerifyTimeout:   200 * time.Millisecond,
		// Readings count for judging a caller a visibility window after a
		// hold; keep that short here.
		VisibilityWindow: 20 * time.Millisecond,
	}, store, []orchestrator.Provider{fake}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.Config{OpenAPI: transferd.OpenAPI, Idempotency: store,
		Callbacks: map[string]api.CallbackReceiver{"netsapiens": eventReceiver{}},
		Keys:      testKeys(t), CallbackSigner: signer}
	if tweak != nil {
		tweak(&cfg)
	}
	h := api.NewServer(cfg, eng, log, reg, reg)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := eng.Shutdown(ctx); err != nil {
			t.Errorf("engine shutdown: %v", err)
		}
	})
	return &env{c: loadContract(t), srv: srv, eng: eng, fake: fake, h: h, ids: map[string]string{}}
}

// wait blocks until the transfer satisfies until or is terminal.
func (e *env) wait(t *testing.T, id string, until func(*orchestrator.Transfer) bool) *orchestrator.Transfer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := e.eng.Wait(ctx, id, until)
	if err != nil {
		t.Fatalf("wait for %s: %v", id, err)
	}
	if !tr.State.Terminal() && !until(tr) {
		t.Fatalf("transfer %s still %s after 30s", id, tr.State)
	}
	return tr
}

func terminal(*orchestrator.Transfer) bool { return false }

func answered(t *orchestrator.Transfer) bool { return t.Answered }

// result is one exchange.
type result struct {
	status int
	header http.Header
	body   []byte
}

// transfer is the part of a Transfer representation the cases look at.
type transfer struct {
	ID             string `json:"id"`
	State          string `json:"state"`
	TargetAnswered bool   `json:"target_answered"`
	Outcome        *struct {
		Reason         string `json:"reason"`
		CallerRestored bool   `json:"caller_restored"`
		Verified       bool   `json:"verified"`
		Final          bool   `json:"final"`
	} `json:"outcome"`
	Steps []struct {
		Name      string `json:"name"`
		ErrorKind string `json:"error_kind"`
	} `json:"steps"`
}

type problem struct {
	Type   string `json:"type"`
	Status int    `json:"status"`
	Errors []struct {
		Field string `json:"field"`
	} `json:"errors"`
	TransferID string `json:"transfer_id"`
	State      string `json:"state"`
}

func (r *result) transfer(t *testing.T) transfer {
	t.Helper()
	var tr transfer
	if err := json.Unmarshal(r.body, &tr); err != nil {
		t.Fatalf("decode transfer: %v\n%s", err, r.body)
	}
	return tr
}

func (r *result) problem(t *testing.T) problem {
	t.Helper()
	var p problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("decode problem: %v\n%s", err, r.body)
	}
	return p
}

// exchange is one request of a contract case.
type exchange struct {
	method string
	path   string // "<role>" is replaced by the id of a transfer created earlier
	header map[string]string
	body   string
}

// do sends x to the server, checks the request against the contract
// (specRejects says whether the contract must refuse it), and checks that
// the response is one the contract documents for the operation.
func (e *env) do(t *testing.T, x exchange, specRejects bool) *result {
	t.Helper()
	path := x.path
	for role, id := range e.ids {
		path = strings.ReplaceAll(path, "<"+role+">", id)
	}
	if strings.Contains(path, "<") {
		t.Fatalf("path %q names a transfer no earlier case created", path)
	}
	ctx := context.Background()
	req, err := http.NewRequestWithContext(ctx, x.method, e.srv.URL+path, strings.NewReader(x.body))
	if err != nil {
		t.Fatal(err)
	}
	if x.body == "" {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	// Every case authenticates with the default tenant's write key unless
	// it says otherwise; an empty Authorization sends none.
	req.Header.Set("Authorization", "Bearer "+writeKey)
	for k, v := range x.header {
		req.Header.Set(k, v)
		if k == "Authorization" && v == "" {
			req.Header.Del(k)
		}
	}

	// The request, against the contract.
	vreq := req.Clone(ctx)
	vreq.Body = io.NopCloser(strings.NewReader(x.body))
	route, params, err := e.c.router.FindRoute(vreq)
	if err != nil {
		t.Fatalf("%s %s: no operation in openapi.yaml: %v", x.method, path, err)
	}
	in := &openapi3filter.RequestValidationInput{
		Request: vreq, PathParams: params, Route: route,
		// Which keys exist is the server's business; the contract only
		// says a bearer token is sent.
		Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	reqErr := openapi3filter.ValidateRequest(ctx, in)
	switch {
	case reqErr != nil && !specRejects:
		t.Errorf("the contract rejects a request the case sends as valid: %v", reqErr)
	case reqErr == nil && specRejects:
		t.Errorf("the contract accepts a request the case expects it to reject")
	}

	// The exchange.
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", x.method, path, err)
	}
	body, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	r := &result{status: res.StatusCode, header: res.Header, body: body}

	// The response, against the contract.
	rin := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 r.status,
		Header:                 r.header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(ctx, rin); err != nil {
		t.Errorf("%s %s: the response drifts from openapi.yaml (operation %s): %v\nstatus %d\n%s",
			x.method, path, route.Operation.OperationID, err, r.status, body)
	}
	if err := undeclaredHeaders(route.Operation, r.status, r.header); err != nil {
		t.Errorf("%s %s: the response drifts from openapi.yaml (operation %s): %v", x.method, path, route.Operation.OperationID, err)
	}
	return r
}

// clientHeaders are the response headers a client acts on (follows,
// waits for, retries after, reads as a replay). kin-openapi checks the
// headers a response declares and ignores any other, so a header the
// server sends where openapi.yaml does not declare it (a Retry-After on an
// answer the contract says carries none) would pass unnoticed: the
// generated clients, and integrators reading the contract, never look for
// it. Content-Type is the media type's business, which kin-openapi checks.
var clientHeaders = []string{"Location", "Retry-After", "Preference-Applied", "Idempotent-Replayed",
	"WWW-Authenticate", "Allow", "Cache-Control", "Accept-Encoding", "X-Request-Id"}

// undeclaredHeaders reports the clientHeaders h carries that op does not
// declare for status.
func undeclaredHeaders(op *openapi3.Operation, status int, h http.Header) error {
	resp := op.Responses.Status(status)
	if resp == nil {
		resp = op.Responses.Value(fmt.Sprintf("%dXX", status/100))
	}
	if resp == nil {
		resp = op.Responses.Default()
	}
	if resp == nil || resp.Value == nil {
		return fmt.Errorf("no response %d", status)
	}
	var missing []string
	for _, name := range clientHeaders {
		if h.Get(name) == "" {
			continue
		}
		declared := false
		for k := range resp.Value.Headers {
			declared = declared || strings.EqualFold(k, name)
		}
		if !declared {
			missing = append(missing, name+": "+h.Get(name))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("response %d carries headers openapi.yaml does not declare for it: %s", status, strings.Join(missing, ", "))
	}
	return nil
}

// contractCase is one row of the contract table.
type contractCase struct {
	name string
	exchange
	// specRejects: the request breaks the contract and the server must
	// refuse it too. Requests the contract accepts may still be refused
	// for reasons only the server knows (unknown provider, state).
	specRejects bool
	// before prepares the fake or the engine.
	before func(t *testing.T, e *env)
	status int
	// problem is the slug of the expected problem type, fields the
	// expected errors[].field, in order.
	problem string
	fields  []string
	// after checks the result and records what later cases need.
	after func(t *testing.T, e *env, r *result)
}

const jsonCT = "application/json"

func jsonHeader(extra ...string) map[string]string {
	h := map[string]string{"Content-Type": jsonCT}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return h
}

// createBody is a valid request for the fake provider; user must differ
// between transfers that overlap (one active transfer per call).
func createBody(user, completion string) string {
	return `{"provider":"netsapiens","mode":"attended","call":{"domain":"acme.example","user":"` + user +
		`"},"target":"1010","completion":"` + completion + `","consult_timeout":"30s"}`
}

// wantTransfer checks the state and Location of a transfer response and
// remembers its id under role.
func wantTransfer(role, state string) func(t *testing.T, e *env, r *result) {
	return func(t *testing.T, e *env, r *result) {
		t.Helper()
		tr := r.transfer(t)
		if tr.State != state {
			t.Errorf("state = %q, want %q", tr.State, state)
		}
		if loc := r.header.Get("Location"); (r.status == http.StatusCreated || r.status == http.StatusAccepted) && loc != "/v1/transfers/"+tr.ID {
			t.Errorf("Location = %q, want /v1/transfers/%s", loc, tr.ID)
		}
		if role != "" {
			e.ids[role] = tr.ID
		}
	}
}

func wantPreferenceApplied(v string) func(t *testing.T, r *result) {
	return func(t *testing.T, r *result) {
		t.Helper()
		if got := r.header.Get("Preference-Applied"); got != v {
			t.Errorf("Preference-Applied = %q, want %q", got, v)
		}
	}
}

func all(fs ...func(t *testing.T, e *env, r *result)) func(t *testing.T, e *env, r *result) {
	return func(t *testing.T, e *env, r *result) {
		t.Helper()
		for _, f := range fs {
			f(t, e, r)
		}
	}
}

func header(f func(t *testing.T, r *result)) func(t *testing.T, e *env, r *result) {
	return func(t *testing.T, _ *env, r *result) { t.Helper(); f(t, r) }
}

// waitRole sequences the next cases on the engine, never on the clock.
func waitRole(role string, until func(*orchestrator.Transfer) bool) func(t *testing.T, e *env, r *result) {
	return func(t *testing.T, e *env, _ *result) { t.Helper(); e.wait(t, e.ids[role], until) }
}

func TestContract(t *testing.T) {
	e := newEnv(t)
	const missing = "tr_01M7Z6DTQ5JMRNV7E9Z0C1HT0H" // well-formed, never created
	padding := strings.Repeat(" ", 70<<10)
	var gate *orchestratortest.Gate

	cases := []contractCase{
		// --- create ---
		{
			name:     "create auto, Prefer wait: 201 completed",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Prefer", "wait=60"), body: createBody("1000", "auto")},
			status:   http.StatusCreated,
			after: all(wantTransfer("completed", "completed"), header(wantPreferenceApplied("wait=60")),
				func(t *testing.T, _ *env, r *result) {
					if o := r.transfer(t).Outcome; o == nil || o.Reason != "transferred" || !o.Verified || !o.Final {
						t.Errorf("outcome = %+v, want reason transferred, verified, final", o)
					}
				}),
		},
		{
			name:     "create without Prefer: 202 pending",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("1001", "auto")},
			status:   http.StatusAccepted,
			after: all(wantTransfer("accepted", "pending"), waitRole("accepted", terminal),
				header(wantPreferenceApplied(""))),
		},
		{
			name: "create, Prefer wait not met: 202 with Preference-Applied",
			// Locate is held, so the transfer is still pending when the
			// zero-second wait ends.
			before: func(t *testing.T, e *env) {
				gate = e.fake.Block(orchestratortest.MethodLocate)
				t.Cleanup(gate.Release) // also when the case fails
			},
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Prefer", "wait=0"), body: createBody("1002", "auto")},
			status:   http.StatusAccepted,
			after: all(wantTransfer("blocked", "pending"), header(wantPreferenceApplied("wait=0")),
				func(t *testing.T, e *env, _ *result) { gate.Release() }, waitRole("blocked", terminal)),
		},
		{
			name: "create manual with a ringing target, Prefer wait: 201 consulting",
			before: func(t *testing.T, e *env) {
				e.fake.SetTarget(orchestratortest.TargetRings)
			},
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Prefer", "wait=60"), body: createBody("1003", "manual")},
			status:   http.StatusCreated,
			after: all(wantTransfer("ringing", "consulting"), func(t *testing.T, _ *env, r *result) {
				if r.transfer(t).TargetAnswered {
					t.Error("target_answered = true for a ringing target")
				}
			}),
		},
		{
			// A failed step carries the kind of its error (error_kind),
			// which the Step schema must allow: strict clients reject what
			// it does not declare.
			name: "create whose locate fails: 201 failed, the step's error_kind",
			before: func(t *testing.T, e *env) {
				// Every look (a call not found is looked for again for
				// the visibility window: it may be listed late).
				e.fake.FailOn(orchestratortest.MethodLocate,
					orchestrator.E("fake.Locate", orchestrator.KindCallNotFound, errors.New("no such call")), -1)
			},
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Prefer", "wait=60"), body: createBody("1099", "auto")},
			status:   http.StatusCreated,
			after: all(wantTransfer("notfound", "failed"), func(t *testing.T, _ *env, r *result) {
				steps := r.transfer(t).Steps
				if len(steps) == 0 || steps[0].ErrorKind != "call_not_found" {
					t.Errorf("steps = %+v, want the failed locate's error_kind call_not_found", steps)
				}
			}, func(_ *testing.T, e *env, _ *result) { e.fake.ClearFaults() }),
		},
		{
			// The join is accepted and the provider cannot be read after
			// it: the transfer ends unverified, its cleanup obligation
			// still open, so the outcome is not final.
			name: "create whose join cannot be read: 201 failed, outcome unverified, not final",
			before: func(t *testing.T, e *env) {
				e.fake.SetTarget(orchestratortest.TargetAnswers)
				var joined atomic.Value // the transfer whose join was sent
				// The join lands only once a reading of its transfer has
				// begun since it was sent (and was made to fail): a
				// reading whose hook ran before the join was sent, and so
				// is not made to fail, is then wholly before the join.
				// Otherwise the join could land between that reading's
				// hook and its observation, which would truly show the
				// caller with the target: completed, verified.
				seen, seenClosed := make(chan struct{}), atomic.Bool{}
				e.fake.Before(orchestratortest.MethodComplete, func(r orchestratortest.Record) {
					if !joined.CompareAndSwap(nil, r.TransferID) {
						return
					}
					select {
					case <-seen:
					case <-time.After(10 * time.Second):
						t.Error("no reading began after the join was sent")
					}
				})
				e.fake.Before(orchestratortest.MethodObserve, func(r orchestratortest.Record) {
					if joined.Load() == r.TransferID {
						// Queued for this very reading: faults are taken after the hooks.
						e.fake.FailOn(orchestratortest.MethodObserve, orchestrator.E("fake.Observe",
							orchestrator.KindProviderUnavailable, errors.New("HTTP 503")), 1)
						if seenClosed.CompareAndSwap(false, true) {
							close(seen)
						}
					}
				})
			},
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Prefer", "wait=60"), body: createBody("1098", "auto")},
			status:   http.StatusCreated,
			after: all(wantTransfer("unread", "failed"), func(t *testing.T, _ *env, r *result) {
				if o := r.transfer(t).Outcome; o == nil || o.Verified || o.Final {
					t.Errorf("outcome = %+v, want unverified and not final", o)
				}
			}, func(t *testing.T, e *env, _ *result) { e.fake.SetTarget(orchestratortest.TargetRings) }),
		},
		{
			name:     "create for a call with an active transfer: 409 active-transfer",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("1003", "auto")},
			status:   http.StatusConflict, problem: "active-transfer",
			after: func(t *testing.T, e *env, r *result) {
				if p := r.problem(t); p.TransferID != e.ids["ringing"] {
					t.Errorf("transfer_id = %q, want %q", p.TransferID, e.ids["ringing"])
				}
			},
		},
		{
			name:        "create with the empty object: 400 naming every missing field",
			exchange:    exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: `{}`},
			specRejects: true, status: http.StatusBadRequest, problem: "validation-error", fields: []string{"call", "provider", "target"},
		},
		{
			name:        "create with missing fields: 400 naming each",
			exchange:    exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: `{"call":{}}`},
			specRejects: true, status: http.StatusBadRequest, problem: "validation-error", fields: []string{"provider", "target"},
		},
		{
			name:        "create with malformed JSON: 400 malformed-request",
			exchange:    exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: `{"provider":"netsapiens",}`},
			specRejects: true, status: http.StatusBadRequest, problem: "malformed-request",
		},
		{
			name:        "create with an empty body: 400 malformed-request",
			exchange:    exchange{method: "POST", path: "/v1/transfers", header: jsonHeader()},
			specRejects: true, status: http.StatusBadRequest, problem: "malformed-request",
		},
		{
			name:     "create with data after the object: 400 malformed-request",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("1004", "auto") + ` {}`},
			// kin-openapi reads only the first JSON value of a body, so it
			// cannot see what the spec's "one object" rules out.
			specRejects: false, status: http.StatusBadRequest, problem: "malformed-request",
		},
		{
			name: "create with an unknown field: 400 naming it",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
				body: `{"provider":"netsapiens","call":{"domain":"acme.example","user":"1004"},"target":"1010","colour":"blue"}`},
			specRejects: true, status: http.StatusBadRequest, problem: "validation-error", fields: []string{"colour"},
		},
		{
			name: "create with an unknown nested field: 400 naming it",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
				body: `{"provider":"netsapiens","call":{"domain":"acme.example","user":"1004"},"target":"1010","whisper":{"text":"hi"}}`},
			// The problem names the field by its full JSON path.
			specRejects: true, status: http.StatusBadRequest, problem: "validation-error", fields: []string{"whisper", "whisper.text"},
		},
		{
			name: "create with a wrong JSON type: 400 naming the field",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
				body: `{"provider":"netsapiens","call":{"domain":"acme.example","user":"1004"},"target":1010}`},
			specRejects: true, status: http.StatusBadRequest, problem: "validation-error", fields: []string{"target"},
		},
		{
			name: "create with several unknown and mistyped fields: 400 naming every one",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
				body: `{"provider":"netsapiens","call":{"domain":"acme.example","user":1004,"line":2},"target":1010,"colour":"blue","consult_timeout":"0s"}`},
			specRejects: true, status: http.StatusBadRequest, problem: "validation-error",
			fields: []string{"call.line", "call.user", "colour", "consult_timeout", "target"},
		},
		{
			name: "create with a zero duration: 400 naming consult_timeout, not the default",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
				body: `{"provider":"netsapiens","call":{"domain":"acme.example","user":"1004"},"target":"1010","consult_timeout":"0s"}`},
			status: http.StatusBadRequest, problem: "validation-error", fields: []string{"consult_timeout"},
		},
		{
			name: "create with a signed duration: 400 naming consult_timeout",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
				body: `{"provider":"netsapiens","call":{"domain":"acme.example","user":"1004"},"target":"1010","consult_timeout":"+30s"}`},
			specRejects: true, status: http.StatusBadRequest, problem: "validation-error", fields: []string{"consult_timeout"},
		},
		{
			name: "create with a bare number as duration: 400 naming consult_timeout",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
				body: `{"provider":"netsapiens","call":{"domain":"acme.example","user":"1004"},"target":"1010","consult_timeout":"0"}`},
			specRejects: true, status: http.StatusBadRequest, problem: "validation-error", fields: []string{"consult_timeout"},
		},
		{
			name: "create with a bad duration: 400 naming consult_timeout",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
				body: `{"provider":"netsapiens","call":{"domain":"acme.example","user":"1004"},"target":"1010","consult_timeout":"soon"}`},
			specRejects: true, status: http.StatusBadRequest, problem: "validation-error", fields: []string{"consult_timeout"},
		},
		{
			name: "create with a duration out of range: 400 naming consult_timeout",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
				body: `{"provider":"netsapiens","call":{"domain":"acme.example","user":"1004"},"target":"1010","consult_timeout":"1h"}`},
			status: http.StatusBadRequest, problem: "validation-error", fields: []string{"consult_timeout"},
		},
		{
			name: "create with an unknown provider: 400 naming provider",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
				body: `{"provider":"nope","call":{"domain":"acme.example","user":"1004"},"target":"1010"}`},
			specRejects: true, status: http.StatusBadRequest, problem: "validation-error", fields: []string{"provider"},
		},
		{
			name: "create announced with manual completion: 400 naming completion",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
				body: `{"provider":"netsapiens","mode":"announced","call":{"call_id":"c-1"},"target":"+15553330000","completion":"manual"}`},
			// A call id alone is not a NetSapiens call: the contract refuses it too.
			specRejects: true, status: http.StatusBadRequest, problem: "validation-error", fields: []string{"completion"},
		},
		{
			name: "create with options the provider lacks: 422 naming each",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
				body: `{"provider":"netsapiens","mode":"announced","call":{"call_id":"c-1"},"target":"+15553330000","caller_id":"private",` +
					`"whisper":{"sentence":"Incoming transfer","gender":"female","locale":"en_US","voice":"susan"}}`},
			// The contract's NetSapiens request has no such options.
			specRejects: true, status: http.StatusUnprocessableEntity, problem: "unsupported-option", fields: []string{"caller_id", "whisper"},
		},
		{
			name: "create with an oversize body: 413",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
				body: `{"provider":"netsapiens",` + padding + `"call":{"domain":"acme.example","user":"1004"},"target":"1010"}`},
			status: http.StatusRequestEntityTooLarge, problem: "body-too-large",
		},
		{
			name:        "create with a non-JSON content type: 415",
			exchange:    exchange{method: "POST", path: "/v1/transfers", header: map[string]string{"Content-Type": "text/plain"}, body: createBody("1004", "auto")},
			specRejects: true, status: http.StatusUnsupportedMediaType, problem: "unsupported-media-type",
		},

		// --- get ---
		{
			name:     "get: 200",
			exchange: exchange{method: "GET", path: "/v1/transfers/<completed>"},
			status:   http.StatusOK,
			after:    wantTransfer("", "completed"),
		},
		{
			name:     "get a terminal transfer with Prefer wait: 200 at once, Preference-Applied wait=0",
			exchange: exchange{method: "GET", path: "/v1/transfers/<completed>", header: map[string]string{"Prefer": "wait=60"}},
			status:   http.StatusOK,
			after:    all(wantTransfer("", "completed"), header(wantPreferenceApplied("wait=0"))),
		},
		{
			name:     "get a running transfer with Prefer wait: 200 with Preference-Applied",
			exchange: exchange{method: "GET", path: "/v1/transfers/<ringing>", header: map[string]string{"Prefer": "wait=0"}},
			status:   http.StatusOK,
			after:    all(wantTransfer("", "consulting"), header(wantPreferenceApplied("wait=0"))),
		},
		{
			name:     "get an unknown id: 404",
			exchange: exchange{method: "GET", path: "/v1/transfers/" + missing},
			status:   http.StatusNotFound, problem: "not-found",
		},
		{
			name:        "get a malformed id: 404",
			exchange:    exchange{method: "GET", path: "/v1/transfers/nope"},
			specRejects: true, status: http.StatusNotFound, problem: "not-found",
		},

		// --- complete ---
		{
			name:     "complete before the target answered: 409 state-conflict",
			exchange: exchange{method: "POST", path: "/v1/transfers/<ringing>/complete"},
			status:   http.StatusConflict, problem: "state-conflict",
			after: func(t *testing.T, e *env, r *result) {
				if p := r.problem(t); p.TransferID != e.ids["ringing"] || p.State != "consulting" {
					t.Errorf("transfer_id, state = %q, %q; want %q, consulting", p.TransferID, p.State, e.ids["ringing"])
				}
			},
		},
		{
			name:     "complete an automatic transfer: 409 state-conflict",
			exchange: exchange{method: "POST", path: "/v1/transfers/<completed>/complete"},
			status:   http.StatusConflict, problem: "state-conflict",
			after: func(t *testing.T, e *env, r *result) {
				if p := r.problem(t); p.State != "completed" {
					t.Errorf("state = %q, want completed", p.State)
				}
			},
		},
		{
			name: "complete a manual transfer whose target answered: 202",
			before: func(t *testing.T, e *env) {
				if n := e.fake.Answer(e.ids["ringing"]); n != 1 {
					t.Fatalf("Answer: %d targets answered, want 1", n)
				}
				e.wait(t, e.ids["ringing"], answered)
			},
			exchange: exchange{method: "POST", path: "/v1/transfers/<ringing>/complete", header: jsonHeader(), body: `{}`},
			status:   http.StatusAccepted,
			after:    all(wantTransfer("", "consulting"), waitRole("ringing", terminal)),
		},
		{
			name: "create manual with an answering target: 201 consulting",
			before: func(t *testing.T, e *env) {
				e.fake.SetTarget(orchestratortest.TargetAnswers)
			},
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Prefer", "wait=60"), body: createBody("1005", "manual")},
			status:   http.StatusCreated,
			after:    all(wantTransfer("manual", "consulting"), waitRole("manual", answered)),
		},
		{
			name:     "complete with Prefer wait: 200 completed",
			exchange: exchange{method: "POST", path: "/v1/transfers/<manual>/complete", header: map[string]string{"Prefer": "wait=60"}},
			status:   http.StatusOK,
			after:    all(wantTransfer("", "completed"), header(wantPreferenceApplied("wait=60"))),
		},
		{
			name:     "complete an unknown transfer: 404",
			exchange: exchange{method: "POST", path: "/v1/transfers/" + missing + "/complete"},
			status:   http.StatusNotFound, problem: "not-found",
		},
		{
			name:     "complete with a body field: 400",
			exchange: exchange{method: "POST", path: "/v1/transfers/" + missing + "/complete", header: jsonHeader(), body: `{"force":true}`},
			status:   http.StatusBadRequest, problem: "validation-error", fields: []string{"force"},
		},
		{
			name:     "complete with a non-JSON body: 415",
			exchange: exchange{method: "POST", path: "/v1/transfers/" + missing + "/complete", header: map[string]string{"Content-Type": "text/plain"}, body: "now"},
			status:   http.StatusUnsupportedMediaType, problem: "unsupported-media-type",
		},

		// --- cancel ---
		{
			name:     "create manual, ringing, to cancel: 201 consulting",
			before:   func(t *testing.T, e *env) { e.fake.SetTarget(orchestratortest.TargetRings) },
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Prefer", "wait=60"), body: createBody("1006", "manual")},
			status:   http.StatusCreated,
			after:    wantTransfer("cancel-wait", "consulting"),
		},
		{
			name:     "cancel with Prefer wait: 200 cancelled",
			exchange: exchange{method: "POST", path: "/v1/transfers/<cancel-wait>/cancel", header: map[string]string{"Prefer": "wait=60"}},
			status:   http.StatusOK,
			after: all(wantTransfer("", "cancelled"), header(wantPreferenceApplied("wait=60")),
				func(t *testing.T, _ *env, r *result) {
					if o := r.transfer(t).Outcome; o == nil || o.Reason != "cancelled" || !o.CallerRestored {
						t.Errorf("outcome = %+v, want cancelled with the caller restored", o)
					}
				}),
		},
		{
			name:     "create manual, ringing, to cancel without waiting: 201 consulting",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Prefer", "wait=60"), body: createBody("1007", "manual")},
			status:   http.StatusCreated,
			after:    wantTransfer("cancel", "consulting"),
		},
		{
			name:     "cancel: 202",
			exchange: exchange{method: "POST", path: "/v1/transfers/<cancel>/cancel", header: jsonHeader(), body: `{}`},
			status:   http.StatusAccepted,
			after:    all(wantTransfer("", "consulting"), waitRole("cancel", terminal)),
		},
		{
			name:     "cancel an ended transfer: 409 state-conflict",
			exchange: exchange{method: "POST", path: "/v1/transfers/<cancel>/cancel"},
			status:   http.StatusConflict, problem: "state-conflict",
			after: func(t *testing.T, e *env, r *result) {
				if p := r.problem(t); p.State != "cancelled" || p.TransferID != e.ids["cancel"] {
					t.Errorf("transfer_id, state = %q, %q; want %q, cancelled", p.TransferID, p.State, e.ids["cancel"])
				}
			},
		},
		{
			name:     "cancel an unknown transfer: 404",
			exchange: exchange{method: "POST", path: "/v1/transfers/" + missing + "/cancel"},
			status:   http.StatusNotFound, problem: "not-found",
		},
		{
			name:     "cancel with an oversize body: 413",
			exchange: exchange{method: "POST", path: "/v1/transfers/" + missing + "/cancel", header: jsonHeader(), body: "{" + padding + "}"},
			status:   http.StatusRequestEntityTooLarge, problem: "body-too-large",
		},
		{
			name:     "cancel with malformed JSON: 400",
			exchange: exchange{method: "POST", path: "/v1/transfers/" + missing + "/cancel", header: jsonHeader(), body: "{"},
			status:   http.StatusBadRequest, problem: "malformed-request",
		},

		// --- list ---
		{
			name:     "list: 200",
			exchange: exchange{method: "GET", path: "/v1/transfers"},
			status:   http.StatusOK,
			after:    wantList(9, false),
		},
		{
			name:     "list with filters: 200, first page",
			exchange: exchange{method: "GET", path: "/v1/transfers?state=completed,cancelled&provider=netsapiens&limit=2"},
			status:   http.StatusOK,
			after: all(wantList(2, true), func(t *testing.T, e *env, r *result) {
				var l struct {
					NextCursor string `json:"next_cursor"`
				}
				_ = json.Unmarshal(r.body, &l)
				e.ids["cursor"] = l.NextCursor
			}),
		},
		{
			name:     "list with a cursor: 200, next page",
			exchange: exchange{method: "GET", path: "/v1/transfers?state=completed,cancelled&provider=netsapiens&limit=2&cursor=<cursor>"},
			status:   http.StatusOK,
			after:    wantList(2, true),
		},
		{
			name:     "list a provider not configured: 400 naming provider",
			exchange: exchange{method: "GET", path: "/v1/transfers?provider=bandwidth"},
			status:   http.StatusBadRequest, problem: "validation-error", fields: []string{"provider"},
		},
		{
			name:        "list with an unknown state: 400",
			exchange:    exchange{method: "GET", path: "/v1/transfers?state=done"},
			specRejects: true, status: http.StatusBadRequest, problem: "validation-error", fields: []string{"state"},
		},
		{
			name:        "list with a bad limit and cursor: 400 naming both",
			exchange:    exchange{method: "GET", path: "/v1/transfers?limit=0&cursor=abc"},
			specRejects: true, status: http.StatusBadRequest, problem: "validation-error", fields: []string{"cursor", "limit"},
		},
		{
			name:        "list with an empty filter: 400 naming it, not every transfer",
			exchange:    exchange{method: "GET", path: "/v1/transfers?call_id=&provider=netsapiens"},
			specRejects: true, status: http.StatusBadRequest, problem: "validation-error", fields: []string{"call_id"},
		},
		{
			name:     "list created before the zero time: 400 naming created_before",
			exchange: exchange{method: "GET", path: "/v1/transfers?created_before=0001-01-01T00:00:00Z"},
			status:   http.StatusBadRequest, problem: "validation-error", fields: []string{"created_before"},
		},
		{
			name:     "list with an unknown query parameter: 400",
			exchange: exchange{method: "GET", path: "/v1/transfers?sort=asc"},
			status:   http.StatusBadRequest, problem: "validation-error", fields: []string{"sort"},
		},
		{
			// Only the first would count; the second would be ignored.
			name:     "list with a parameter given twice: 400",
			exchange: exchange{method: "GET", path: "/v1/transfers?limit=5&limit=500"},
			status:   http.StatusBadRequest, problem: "validation-error", fields: []string{"limit"},
		},
		{
			name:        "list by an external_id no transfer can carry: 400",
			exchange:    exchange{method: "GET", path: "/v1/transfers?external_id=" + strings.Repeat("x", 129)},
			specRejects: true, status: http.StatusBadRequest, problem: "validation-error", fields: []string{"external_id"},
		},

		// --- Idempotency-Key ---
		{
			name: "create with an Idempotency-Key: 202",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Idempotency-Key", "contract-key"),
				body: createBody("1090", "manual")},
			status: http.StatusAccepted,
		},
		{
			name: "the same key and body again: the first response replayed",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Idempotency-Key", "contract-key"),
				body: createBody("1090", "manual")},
			status: http.StatusAccepted,
		},
		{
			name: "the same key with another body: 422",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Idempotency-Key", "contract-key"),
				body: createBody("1091", "manual")},
			status: http.StatusUnprocessableEntity, problem: "idempotency-key-reused",
		},

		// --- provider callbacks ---
		{
			name: "callback: 204",
			exchange: exchange{method: "POST", path: callbackPath("netsapiens", "default", "tr_01M7Z6DTQ5JMRNV7E9Z0C1HT0H"), header: jsonHeader("Authorization", ""),
				body: `{"eventType":"hangup","callId":"c-1","cause":"USER_BUSY"}`},
			status: http.StatusNoContent,
		},
		{
			name: "callback with a malformed event: 400 naming the field",
			exchange: exchange{method: "POST", path: callbackPath("netsapiens", "default", "tr_01M7Z6DTQ5JMRNV7E9Z0C1HT0H"), header: jsonHeader("Authorization", ""),
				body: `{"callId":"c-1"}`},
			specRejects: true, status: http.StatusBadRequest, problem: "validation-error", fields: []string{"eventType"},
		},
		{
			name: "callback with another transfer's token: 404",
			exchange: exchange{method: "POST", path: "/callbacks/netsapiens/tr_01M7Z6DTQ5JMRNV7E9Z0C1HT0H/" + testCallbackToken("default", "tr_01M7Z6DTQ5JMRNV7E9Z0C1HT0J"),
				header: jsonHeader("Authorization", ""), body: `{"eventType":"answer"}`},
			status: http.StatusNotFound, problem: "not-found",
		},
		{
			name: "callback for an unknown provider: 404",
			exchange: exchange{method: "POST", path: callbackPath("acme", "default", "tr_01M7Z6DTQ5JMRNV7E9Z0C1HT0H"), header: jsonHeader("Authorization", ""),
				body: `{"eventType":"answer"}`},
			status: http.StatusNotFound, problem: "not-found",
		},

		// --- operations ---
		{
			name:     "healthz: 200",
			exchange: exchange{method: "GET", path: "/healthz"},
			status:   http.StatusOK,
		},
		{
			name:     "readyz: 200",
			exchange: exchange{method: "GET", path: "/readyz"},
			status:   http.StatusOK,
		},
		{
			name:     "openapi.yaml: 200, the embedded contract",
			exchange: exchange{method: "GET", path: "/openapi.yaml"},
			status:   http.StatusOK,
			after: func(t *testing.T, _ *env, r *result) {
				if !bytes.Equal(r.body, transferd.OpenAPI) {
					t.Error("/openapi.yaml does not serve the embedded openapi.yaml")
				}
			},
		},
		{
			name:     "metrics: 200 text exposition",
			exchange: exchange{method: "GET", path: "/metrics"},
			status:   http.StatusOK,
			after: func(t *testing.T, _ *env, r *result) {
				if !bytes.Contains(r.body, []byte(`transferd_http_requests_total{code="201",method="POST",route="/v1/transfers"}`)) {
					t.Errorf("/metrics lacks the HTTP request counter:\n%.2000s", r.body)
				}
			},
		},
	}

	for _, tc := range cases {
		// Cases run in order: later ones use transfers made by earlier ones.
		ok := t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before(t, e)
			}
			r := e.do(t, tc.exchange, tc.specRejects)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d\n%s", r.status, tc.status, r.body)
			}
			if got := r.header.Get("X-Request-Id"); got == "" {
				t.Error("no X-Request-Id")
			}
			if tc.problem != "" {
				p := r.problem(t)
				if want := api.ProblemBase + tc.problem; p.Type != want || p.Status != tc.status {
					t.Errorf("problem = %s %d, want %s %d", p.Type, p.Status, want, tc.status)
				}
				var fields []string
				for _, fe := range p.Errors {
					fields = append(fields, fe.Field)
				}
				if !slices.Equal(fields, tc.fields) {
					t.Errorf("errors fields = %q, want %q\n%s", fields, tc.fields, r.body)
				}
			}
			if tc.after != nil {
				tc.after(t, e, r)
			}
		})
		if !ok && tc.after != nil {
			t.Fatalf("stopping: later cases depend on %q", tc.name)
		}
	}
}

// wantList checks the number of items of a page and whether it links to a
// next one.
func wantList(n int, more bool) func(t *testing.T, e *env, r *result) {
	return func(t *testing.T, _ *env, r *result) {
		t.Helper()
		var l struct {
			Items      []transfer `json:"items"`
			NextCursor *string    `json:"next_cursor"`
		}
		if err := json.Unmarshal(r.body, &l); err != nil {
			t.Fatalf("decode list: %v", err)
		}
		if len(l.Items) != n || (l.NextCursor != nil) != more {
			t.Errorf("items, next_cursor = %d, %v; want %d, %v\n%.1000s", len(l.Items), l.NextCursor != nil, n, more, r.body)
		}
		if more && *l.NextCursor != l.Items[len(l.Items)-1].ID {
			t.Errorf("next_cursor = %s, want the last item's id", *l.NextCursor)
		}
	}
}

// TestContractUnavailable covers the 503s, which need an engine that is
// shutting down.
func TestContractUnavailable(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.eng.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []contractCase{
		{
			name:     "create while shutting down: 503",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("1000", "auto")},
			status:   http.StatusServiceUnavailable, problem: "unavailable",
		},
		{
			name:     "readyz while shutting down: 503",
			exchange: exchange{method: "GET", path: "/readyz"},
			status:   http.StatusServiceUnavailable, problem: "unavailable",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(t, tc.exchange, tc.specRejects)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d\n%s", r.status, tc.status, r.body)
			}
			if p := r.problem(t); p.Type != api.ProblemBase+tc.problem {
				t.Errorf("type = %s, want %s", p.Type, api.ProblemBase+tc.problem)
			}
		})
	}
}

// TestContractStoreFaults: what a store that fails a write answers is in
// the contract too. A create whose save the store left unknown, and a
// POST whose Idempotency-Key the store could not record, are 503s (they
// were bare 500s), on every operation that takes a key.
func TestContractStoreFaults(t *testing.T) {
	store := &refusedReservation{Store: memory.New()}
	store.refused.Store(true) // refuses only when a case asks
	signals := &lostSignal{Store: store}
	lost := &orchestratortest.LostCreate{Store: signals, OnGet: orchestratortest.FailFirstGets(1)}
	e := newEnvStore(t, zerolog.Nop(), testSigner(t), lost)
	const id = "tr_01M7Z6NZRM4TFF59TDWH9EDD1R"
	keyed := func(key string) map[string]string { return jsonHeader("Idempotency-Key", key) }
	for _, tc := range []struct {
		contractCase
		refuseKey bool
	}{
		{contractCase: contractCase{
			name:     "create whose save is unknown: 503",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: keyed("lost"), body: createBody("1000", "manual")},
			status:   http.StatusServiceUnavailable, problem: "unavailable",
		}},
		{contractCase: contractCase{
			name:     "create whose key is not recorded: 503",
			exchange: exchange{method: "POST", path: "/v1/transfers", header: keyed("refused"), body: createBody("1001", "manual")},
			status:   http.StatusServiceUnavailable, problem: "unavailable",
		}, refuseKey: true},
		{contractCase: contractCase{
			name:     "complete whose key is not recorded: 503",
			exchange: exchange{method: "POST", path: "/v1/transfers/" + id + "/complete", header: keyed("refused")},
			status:   http.StatusServiceUnavailable, problem: "unavailable",
		}, refuseKey: true},
		{contractCase: contractCase{
			name:     "cancel whose key is not recorded: 503",
			exchange: exchange{method: "POST", path: "/v1/transfers/" + id + "/cancel", header: keyed("refused")},
			status:   http.StatusServiceUnavailable, problem: "unavailable",
		}, refuseKey: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store.refused.Store(!tc.refuseKey)
			r := e.do(t, tc.exchange, tc.specRejects)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d\n%s", r.status, tc.status, r.body)
			}
			if p := r.problem(t); p.Type != api.ProblemBase+tc.problem {
				t.Errorf("type = %s, want %s", p.Type, api.ProblemBase+tc.problem)
			}
		})
	}
	t.Run("complete whose signal is unknown: 503, then accepted again", func(t *testing.T) {
		store.refused.Store(true)
		created := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("1002", "manual")}, false)
		if created.status != http.StatusAccepted {
			t.Fatalf("create: %d %s", created.status, created.body)
		}
		id := created.transfer(t).ID
		e.wait(t, id, answered)
		signals.lose.Store(true)
		r := e.do(t, exchange{method: "POST", path: "/v1/transfers/" + id + "/complete"}, false)
		if p := r.problem(t); r.status != http.StatusServiceUnavailable || p.Type != api.ProblemBase+"unavailable" ||
			!strings.Contains(string(r.body), "whether the action was recorded is not known") {
			t.Fatalf("the complete whose answer was lost: %d %s; want 503 unavailable saying so", r.status, r.body)
		}
		again := e.do(t, exchange{method: "POST", path: "/v1/transfers/" + id + "/complete"}, false)
		if again.status != http.StatusAccepted {
			t.Fatalf("the complete made again: %d %s; want 202", again.status, again.body)
		}
		if end := e.wait(t, id, terminal); end.State != orchestrator.StateCompleted {
			t.Fatalf("the transfer ended %s; want completed", end.State)
		}
	})
}

// lostSignal fails one PutSignal, once lose is set, as a store whose
// answer was lost before the signal was saved.
type lostSignal struct {
	orchestrator.Store
	lose atomic.Bool
}

func (s *lostSignal) PutSignal(ctx context.Context, id string, sig orchestrator.Signal, version int64) error {
	if s.lose.Swap(false) {
		return orchestrator.E("test.PutSignal", orchestrator.KindInternal, errors.New("connection reset"))
	}
	return s.Store.PutSignal(ctx, id, sig, version)
}

// TestContractCatchesDrift proves that the checks above have teeth: each
// response here differs from a real one in one way the contract forbids.
func TestContractCatchesDrift(t *testing.T) {
	c := loadContract(t)
	const id = "tr_01M7Z6NZRM4TFF59TDWH9EDD1R"
	good := `{"id":"` + id + `","provider":"netsapiens","mode":"attended","state":"pending","call":{"user":"1000"},` +
		`"target":"1010","completion":"auto","consult_timeout":"30s","target_answered":false,` +
		`"legs":{"caller":{},"agent":{},"consult":{}},"steps":[],` +
		`"created_at":"2026-11-21T14:03:07.412Z","updated_at":"2026-11-21T14:03:07.412Z"}`
	okHeader := func() http.Header {
		return http.Header{"Content-Type": {jsonCT}, "X-Request-Id": {"d4fi0k2q2v8c73a1b2c0"}, "Location": {"/v1/transfers/" + id}}
	}
	validate := func(status int, h http.Header, body string) error {
		req := httptest.NewRequest("POST", "/v1/transfers", strings.NewReader(createBody("1000", "auto")))
		req.Header.Set("Content-Type", jsonCT)
		route, params, err := c.router.FindRoute(req)
		if err != nil {
			t.Fatal(err)
		}
		if err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
			Status:                 status, Header: h, Body: io.NopCloser(strings.NewReader(body)),
			Options: &openapi3filter.Options{IncludeResponseStatus: true},
		}); err != nil {
			return err
		}
		return undeclaredHeaders(route.Operation, status, h)
	}
	if err := validate(http.StatusAccepted, okHeader(), good); err != nil {
		t.Fatalf("the baseline response is not valid: %v", err)
	}
	for name, tc := range map[string]struct {
		status int
		header func(http.Header)
		body   string
	}{
		"an undocumented field":                    {body: strings.Replace(good, `"steps":[]`, `"steps":[],"options":{}`, 1)},
		"an undocumented field in a nested object": {body: strings.Replace(good, `"caller":{}`, `"caller":{"leg":"a"}`, 1)},
		"a missing field":                          {body: strings.Replace(good, `"target_answered":false,`, ``, 1)},
		"an undocumented state":                    {body: strings.Replace(good, `"pending"`, `"queued"`, 1)},
		"an undocumented status":                   {status: http.StatusOK},
		"a missing Location":                       {header: func(h http.Header) { h.Del("Location") }},
		"a missing X-Request-Id":                   {header: func(h http.Header) { h.Del("X-Request-Id") }},
		"an undocumented Retry-After":              {header: func(h http.Header) { h.Set("Retry-After", "1") }},
		"an undocumented Allow":                    {header: func(h http.Header) { h.Set("Allow", "GET") }},
		"an undocumented media type":               {header: func(h http.Header) { h.Set("Content-Type", "text/html") }},
		"an undocumented problem type": {status: http.StatusConflict, header: func(h http.Header) {
			h.Set("Content-Type", "application/problem+json")
			h.Set("Cache-Control", "no-store")
		}, body: `{"type":"` + api.ProblemBase + `teapot","title":"x","status":409,"instance":"/v1/transfers","transfer_id":"` + id + `"}`},
		"a problem whose status is a string": {status: http.StatusConflict, header: func(h http.Header) {
			h.Set("Content-Type", "application/problem+json")
			h.Set("Cache-Control", "no-store")
		}, body: `{"type":"` + api.ProblemBase + `state-conflict","title":"x","status":"409","instance":"/v1/transfers","transfer_id":"` + id + `"}`},
	} {
		t.Run(name, func(t *testing.T) {
			status, h, body := http.StatusAccepted, okHeader(), good
			if tc.status != 0 {
				status = tc.status
			}
			if tc.header != nil {
				tc.header(h)
			}
			if tc.body != "" {
				body = tc.body
			}
			if err := validate(status, h, body); err == nil {
				t.Error("the contract check accepted a drifted response")
			}
		})
	}
}

// TestContractRoutes checks that the chi router and openapi.yaml name the
// same operations.
func TestContractRoutes(t *testing.T) {
	c := loadContract(t)
	store := memory.New()
	eng, err := orchestrator.New(orchestrator.Config{}, store, []orchestrator.Provider{orchestratortest.NewFake("netsapiens")}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	h := api.NewServer(api.Config{OpenAPI: transferd.OpenAPI, Idempotency: store,
		Callbacks: map[string]api.CallbackReceiver{"netsapiens": eventReceiver{}}},
		eng, zerolog.Nop(), reg, reg)
	rs, ok := h.(chi.Routes)
	if !ok {
		t.Fatalf("api.NewServer returns %T, not a chi router", h)
	}
	var served []string
	err = chi.Walk(rs, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		served = append(served, method+" "+route)
		if method == http.MethodGet {
			// middleware.GetHead answers HEAD with the GET handler.
			served = append(served, http.MethodHead+" "+route)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for path, item := range c.doc.Paths.Map() {
		for method := range item.Operations() {
			documented = append(documented, method+" "+path)
		}
	}
	sort.Strings(served)
	sort.Strings(documented)
	for _, s := range served {
		if !slices.Contains(documented, s) {
			t.Errorf("%s is served but not documented in openapi.yaml", s)
		}
	}
	for _, d := range documented {
		if !slices.Contains(served, d) {
			t.Errorf("%s is documented in openapi.yaml but not served", d)
		}
	}
}

// TestContractProblemTypes checks that every problem type the server
// defines is listed in openapi.yaml and described in docs/problems.md
// under a heading that makes its URI fragment resolve, and the reverse.
func TestContractProblemTypes(t *testing.T) {
	c := loadContract(t)
	src, err := os.ReadFile("problem.go")
	if err != nil {
		t.Fatal(err)
	}
	var defined []string
	for _, m := range regexp.MustCompile(`ProblemBase \+ "([a-z0-9-]+)"`).FindAllSubmatch(src, -1) {
		defined = append(defined, string(m[1]))
	}
	if len(defined) == 0 {
		t.Fatal("found no problem types in problem.go")
	}
	schema := c.doc.Components.Schemas["Problem"]
	if schema == nil || schema.Value.Properties["type"] == nil {
		t.Fatal("openapi.yaml has no Problem.type")
	}
	var listed []string
	for _, v := range schema.Value.Properties["type"].Value.Enum {
		s, _ := v.(string)
		slug, ok := strings.CutPrefix(s, api.ProblemBase)
		if !ok {
			t.Errorf("Problem.type %q does not start with api.ProblemBase %q", s, api.ProblemBase)
		}
		listed = append(listed, slug)
	}
	docs, err := os.ReadFile("../../docs/problems.md")
	if err != nil {
		t.Fatal(err)
	}
	var headed []string
	for _, m := range regexp.MustCompile(`(?m)^## ([a-z0-9-]+)\s*$`).FindAllSubmatch(docs, -1) {
		headed = append(headed, string(m[1]))
	}
	for _, set := range []struct {
		name string
		have []string
	}{{"openapi.yaml Problem.type", listed}, {"docs/problems.md headings", headed}} {
		for _, d := range defined {
			if !slices.Contains(set.have, d) {
				t.Errorf("problem type %q (problem.go) is missing from %s", d, set.name)
			}
		}
		for _, h := range set.have {
			if !slices.Contains(defined, h) {
				t.Errorf("%s lists %q, which problem.go does not define", set.name, h)
			}
		}
	}
}

// eventReceiver stands in for a provider adapter's callback receiver: it
// requires an eventType, as Catapult's events carry.
type eventReceiver struct{}

func (eventReceiver) ReceiveCallback(r *http.Request, _ string) (string, error) {
	var ev struct {
		EventType string `json:"eventType"`
	}
	if r.Method == http.MethodGet {
		ev.EventType = r.URL.Query().Get("eventType")
	} else if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
		return "", &orchestrator.Error{Kind: orchestrator.KindInvalid, Err: err, Fields: map[string]string{"(body)": "is not JSON"}}
	}
	if ev.EventType == "" {
		return "", &orchestrator.Error{Kind: orchestrator.KindInvalid, Err: errors.New("no eventType"),
			Fields: map[string]string{"eventType": "is missing or malformed"}}
	}
	return "", nil
}

func (eventReceiver) ApplyCallbackNote(string, string) error { return nil }

// Every kind a failed step may carry (orchestrator.Kind) is in the
// contract's Step.error_kind enum, and the enum names no other: a strict
// client rejects a value the enum does not list.
func TestStepErrorKindsMatchTheContract(t *testing.T) {
	c := loadContract(t)
	step := c.doc.Components.Schemas["Step"]
	if step == nil || step.Value.Properties["error_kind"] == nil {
		t.Fatal("openapi.yaml has no Step.error_kind")
	}
	var listed []string
	for _, v := range step.Value.Properties["error_kind"].Value.Enum {
		s, _ := v.(string)
		listed = append(listed, s)
	}
	var kinds []string
	for k := orchestrator.Kind(0); !strings.HasPrefix(k.String(), "kind("); k++ {
		kinds = append(kinds, k.String())
	}
	slices.Sort(listed)
	slices.Sort(kinds)
	if !slices.Equal(listed, kinds) {
		t.Errorf("Step.error_kind lists %q; the engine's kinds are %q", listed, kinds)
	}
}
