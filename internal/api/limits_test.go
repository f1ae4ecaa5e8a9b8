package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	transferd "github.com/transferd/transferd"
	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// newLimitedEnv is newEnv with cfg's limits and body deadline.
func newLimitedEnv(t *testing.T, fake *orchestratortest.Fake, cfg api.Config) *env {
	t.Helper()
	return newLimitedEnvStore(t, fake, cfg, memory.New())
}

// newLimitedEnvStore is newLimitedEnv on store.
func newLimitedEnvStore(t *testing.T, fake *orchestratortest.Fake, cfg api.Config, store orchestrator.Store) *env {
	t.Helper()
	reg := prometheus.NewRegistry()
	eng, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		VerifyTimeout: 200 * time.Millisecond, VisibilityWindow: 20 * time.Millisecond}, store, []orchestrator.Provider{fake}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.OpenAPI, cfg.Idempotency, cfg.Keys = transferd.OpenAPI, store, testKeys(t)
	h := api.NewServer(cfg, eng, zerolog.Nop(), reg, reg)
	e := &env{c: loadContract(t), eng: eng, fake: fake, h: h, ids: map[string]string{}}
	e.srv = httptest.NewServer(h)
	t.Cleanup(func() {
		e.srv.CloseClientConnections()
		e.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = eng.Shutdown(ctx)
	})
	return e
}

// openStream opens GET /v1/events with key and returns once the stream
// has begun (its retry: line read), that is once the server holds one of
// the tenant's wait slots for it; close ends it.
func openStream(t *testing.T, e *env, key string) (close func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := e.srv.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		cancel()
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		t.Fatalf("stream: %d %s", res.StatusCode, b)
	}
	line, err := bufio.NewReader(res.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "retry:") {
		t.Fatalf("stream began with %q, %v", line, err)
	}
	return func() { cancel(); res.Body.Close() }
}

// A tenant at its bound of long polls and streams (max_waits) is refused
// another of either, or a repeat that would wait for a request with its
// Idempotency-Key still being served: 429 with Retry-After, while another
// tenant opens its own; the slot is free again once the wait that held it
// ends.
func TestWaitsBoundPerTenant(t *testing.T) {
	fake := orchestratortest.NewFake("netsapiens").SetTarget(orchestratortest.TargetRings)
	e := newLimitedEnv(t, fake, api.Config{Limits: api.Limits{MaxWaits: 1}})

	// A manual transfer ringing its target: a long poll of it would wait.
	r := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("6000", "manual")}, false)
	if r.status != http.StatusAccepted {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	ringing := r.transfer(t).ID
	e.wait(t, ringing, func(x *orchestrator.Transfer) bool { return x.State == orchestrator.StateConsulting })

	// The default tenant's one slot is taken by a create with Prefer:
	// wait, held at the provider's first call until the test lets it go.
	gate := fake.Block(orchestratortest.MethodLocate)
	holding := make(chan struct{})
	var once sync.Once
	fake.Before(orchestratortest.MethodLocate, func(rec orchestratortest.Record) {
		if rec.TransferID != ringing {
			once.Do(func() { close(holding) })
		}
	})
	created := make(chan *result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/transfers", strings.NewReader(createBody("6001", "manual")))
		req.Header.Set("Authorization", "Bearer "+writeKey)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Prefer", "wait=60")
		req.Header.Set("Idempotency-Key", "held-1")
		res, err := e.srv.Client().Do(req)
		if err != nil {
			created <- &result{status: -1, body: []byte(err.Error())}
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		created <- &result{status: res.StatusCode, header: res.Header, body: b}
	}()
	select {
	case <-holding:
	case r := <-created:
		t.Fatalf("the create ended before reaching the provider: %d %s", r.status, r.body)
	}

	refused := map[string]*result{
		"long poll": e.do(t, exchange{method: "GET", path: "/v1/transfers/" + ringing, header: map[string]string{"Prefer": "wait=60"}}, false),
		"stream":    e.do(t, exchange{method: "GET", path: "/v1/events"}, false),
		// A repeat of the held create would wait for it, as long as a
		// long poll: it holds a slot too.
		"waiting repeat": e.do(t, exchange{method: "POST", path: "/v1/transfers",
			header: jsonHeader("Idempotency-Key", "held-1"), body: createBody("6001", "manual")}, false),
	}
	for what, r := range refused {
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" ||
			r.header.Get("Content-Type") != "application/problem+json" || r.problem(t).Type != api.ProblemBase+"rate-limited" {
			t.Errorf("a %s past the bound: %d Retry-After %q %s, want 429 rate-limited with Retry-After", what, r.status, r.header.Get("Retry-After"), r.body)
		}
	}
	// A read of the same transfer without Prefer: wait holds no slot,
	// nor does one with wait=0, which asks for no wait at all.
	if r := e.do(t, exchange{method: "GET", path: "/v1/transfers/" + ringing}, false); r.status != http.StatusOK {
		t.Errorf("a plain get while at the bound: %d", r.status)
	}
	if r := e.do(t, exchange{method: "GET", path: "/v1/transfers/" + ringing, header: map[string]string{"Prefer": "wait=0"}}, false); r.status != http.StatusOK ||
		r.header.Get("Preference-Applied") != "wait=0" {
		t.Errorf("a get with Prefer: wait=0 while at the bound: %d Preference-Applied %q %s, want 200 wait=0", r.status, r.header.Get("Preference-Applied"), r.body)
	}
	// Nor does a create with wait=0 (its transfer waits at the held
	// provider call like the other, and is cancelled below).
	zero := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Prefer", "wait=0"), body: createBody("6002", "manual")}, false)
	if zero.status != http.StatusAccepted || zero.header.Get("Preference-Applied") != "wait=0" {
		t.Errorf("a create with Prefer: wait=0 while at the bound: %d Preference-Applied %q %s, want 202 wait=0", zero.status, zero.header.Get("Preference-Applied"), zero.body)
	} else if r := e.do(t, exchange{method: "POST", path: "/v1/transfers/" + zero.transfer(t).ID + "/cancel", header: jsonHeader("Prefer", "wait=0"), body: "{}"}, false); r.status != http.StatusAccepted {
		t.Errorf("a cancel with Prefer: wait=0 while at the bound: %d %s, want 202", r.status, r.body)
	}
	// The other tenant's slot is its own.
	closeOther := openStream(t, e, otherReadKey)
	closeOther()

	// The held create ends: consulting, a ringing target, settled.
	gate.Release()
	if r := <-created; r.status != http.StatusAccepted && r.status != http.StatusCreated || r.header.Get("Preference-Applied") == "" {
		t.Fatalf("the held create: %d %s", r.status, r.body)
	}
	// Its slot was given back before its answer was sent.
	closeMine := openStream(t, e, readKey)
	closeMine()
}

// A body that does not arrive within the body read deadline is a 408 on
// a closed connection, and nothing is created; its Idempotency-Key is not
// left reserved.
func TestSlowBodyTimesOut(t *testing.T) {
	fake := orchestratortest.NewFake("netsapiens")
	e := newLimitedEnv(t, fake, api.Config{BodyReadTimeout: 50 * time.Millisecond})
	body := createBody("7000", "auto")

	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The headers and half the body; the rest never comes.
	head := "POST /v1/transfers HTTP/1.1\r\nHost: transferd\r\nAuthorization: Bearer " + writeKey +
		"\r\nContent-Type: application/json\r\nIdempotency-Key: slow-1\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	if _, err := io.WriteString(conn, head+body[:len(body)/2]); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to a slow body: %v", err)
	}
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
	}
	if err := json.NewDecoder(res.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestTimeout || p.Type != api.ProblemBase+"request-timeout" || !res.Close {
		t.Errorf("slow body: %d %s, close %v; want 408 request-timeout and the connection closed", res.StatusCode, p.Type, res.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("the connection stayed open after a body timeout: %v", err)
	}
	if ts, _, err := e.eng.List(orchestrator.WithTenant(context.Background(), orchestrator.DefaultTenant), orchestrator.ListFilter{Limit: 10}); err != nil || len(ts) != 0 {
		t.Errorf("a slow body created %d transfers (%v)", len(ts), err)
	}
	if n := len(fake.Records()); n != 0 {
		t.Errorf("a slow body reached the provider: %v", fake.Calls())
	}
	// The same request, sent whole, is served: the key was not kept.
	r := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Idempotency-Key", "slow-1"), body: body}, false)
	if r.status != http.StatusAccepted {
		t.Errorf("the request sent whole after a body timeout: %d %s", r.status, r.body)
	}
}

// A create refused with 429 did nothing and asks for a retry after
// Retry-After; its Idempotency-Key is not kept, so that the retry with
// the key, once the limit has cleared, is served rather than answered
// with the refusal (replayed without Retry-After, for the key's whole
// retention). What the retry is answered is then kept.
func TestRateLimitedCreateLeavesItsIdempotencyKeyFree(t *testing.T) {
	fake := orchestratortest.NewFake("netsapiens").SetTarget(orchestratortest.TargetRings)
	e := newLimitedEnv(t, fake, api.Config{Limits: api.Limits{MaxInFlight: 1}})

	// The tenant's one transfer in flight.
	first := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("7000", "manual")}, false)
	if first.status != http.StatusAccepted {
		t.Fatalf("first create: %d %s", first.status, first.body)
	}
	id := first.transfer(t).ID

	x := exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Idempotency-Key", "limited-1"), body: createBody("7001", "manual")}
	if r := e.do(t, x, false); r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("over max_in_flight: %d Retry-After %q %s, want 429 with Retry-After", r.status, r.header.Get("Retry-After"), r.body)
	}
	// The limit clears: the transfer in flight ends.
	if r := e.do(t, exchange{method: "POST", path: "/v1/transfers/" + id + "/cancel"}, false); r.status != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	e.wait(t, id, terminal)

	retry := e.do(t, x, false)
	if retry.status != http.StatusAccepted || retry.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("the retry once the limit cleared: %d, Idempotent-Replayed %q, Retry-After %q %s; want 202 served afresh",
			retry.status, retry.header.Get("Idempotent-Replayed"), retry.header.Get("Retry-After"), retry.body)
	}
	again := e.do(t, x, false)
	if again.status != http.StatusAccepted || again.header.Get("Idempotent-Replayed") != "true" || again.transfer(t).ID != retry.transfer(t).ID {
		t.Errorf("a repeat of the served retry: %d, Idempotent-Replayed %q %s; want its 202 replayed", again.status, again.header.Get("Idempotent-Replayed"), again.body)
	}
}

// A create refused because the call has an active transfer (409
// active-transfer) did nothing and invites a retry once that transfer
// ended: with the same Idempotency-Key, the retry is served, not answered
// with the 409 again.
func TestConflictingCreateLeavesItsIdempotencyKeyFree(t *testing.T) {
	fake := orchestratortest.NewFake("netsapiens").SetTarget(orchestratortest.TargetRings)
	e := newLimitedEnv(t, fake, api.Config{})

	first := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("7100", "manual")}, false)
	if first.status != http.StatusAccepted {
		t.Fatalf("first create: %d %s", first.status, first.body)
	}
	id := first.transfer(t).ID

	x := exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Idempotency-Key", "conflict-1"), body: createBody("7100", "manual")}
	if r := e.do(t, x, false); r.status != http.StatusConflict {
		t.Fatalf("a second transfer of the call: %d %s, want 409 active-transfer", r.status, r.body)
	}
	if r := e.do(t, exchange{method: "POST", path: "/v1/transfers/" + id + "/cancel"}, false); r.status != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	e.wait(t, id, terminal)

	retry := e.do(t, x, false)
	if retry.status != http.StatusAccepted || retry.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("the retry once the active transfer ended: %d, Idempotent-Replayed %q %s; want 202 served afresh",
			retry.status, retry.header.Get("Idempotent-Replayed"), retry.body)
	}
	if got := retry.transfer(t).ID; got == id {
		t.Errorf("the retry answered the first transfer %s", got)
	}
}

// A create that starts nothing gives its start token back: refused for
// the tenant's transfers in flight (429), or by the engine because the
// call has an active transfer (409). With a bucket of two, the retry once
// the first transfer ended is served; before, the refusal had spent the
// second token, and the retry was refused for the rate.
func TestRefusedCreateGivesItsStartTokenBack(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits api.Limits
		second string // the agent of the refused create
		status int
	}{
		{"max_in_flight", api.Limits{StartRate: 0.001, StartBurst: 2, MaxInFlight: 1}, "7201", http.StatusTooManyRequests},
		{"active transfer", api.Limits{StartRate: 0.001, StartBurst: 2}, "7200", http.StatusConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake := orchestratortest.NewFake("netsapiens").SetTarget(orchestratortest.TargetRings)
			e := newLimitedEnv(t, fake, api.Config{Limits: tc.limits})
			first := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("7200", "manual")}, false)
			if first.status != http.StatusAccepted {
				t.Fatalf("first create: %d %s", first.status, first.body)
			}
			id := first.transfer(t).ID
			x := exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody(tc.second, "manual")}
			if r := e.do(t, x, false); r.status != tc.status {
				t.Fatalf("the refused create: %d %s, want %d", r.status, r.body, tc.status)
			}
			if r := e.do(t, exchange{method: "POST", path: "/v1/transfers/" + id + "/cancel"}, false); r.status != http.StatusAccepted {
				t.Fatalf("cancel: %d %s", r.status, r.body)
			}
			e.wait(t, id, terminal)
			if r := e.do(t, x, false); r.status != http.StatusAccepted {
				t.Errorf("the retry once the first transfer ended: %d %s; want 202, the refused create's token given back", r.status, r.body)
			}
			// The bucket is empty now: the next create is refused for the rate.
			third := exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("7202", "manual")}
			if r := e.do(t, third, false); r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
				t.Errorf("a create past the burst: %d Retry-After %q %s; want 429 with Retry-After", r.status, r.header.Get("Retry-After"), r.body)
			}
		})
	}
}
