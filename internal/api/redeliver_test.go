package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// TestRedeliverTakesInputAsTheActionsDo: POST
// /v1/webhook-deliveries/{id}/redeliver takes no input, as /complete and
// /cancel, yet it accepted any body in any media type, ?dry_run=1 and an
// Idempotency-Key of any shape, and a repeat with a valid key redelivered
// again instead of replaying the first answer; its 404 said "no transfer
// with this id" (found by review). Every exchange is checked against
// openapi.yaml too.
func TestRedeliverTakesInputAsTheActionsDo(t *testing.T) {
	ev := newEventsEnv(t)
	id := ev.start(t, writeKey, "1005")
	if err := ev.disp.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	dead := decodeBody[struct{ Items []deliveryBody }](t,
		ev.req(t, "GET", "/v1/webhook-deliveries?status=dead&transfer_id="+id, readKey, ""), http.StatusOK).Items
	if len(dead) == 0 {
		t.Fatal("no dead letter to redeliver")
	}
	e := &env{c: loadContract(t), srv: ev.srv, eng: ev.eng, ids: map[string]string{"d": dead[0].ID}}
	const path = "/v1/webhook-deliveries/<d>/redeliver"

	for _, c := range []struct {
		name string
		x    exchange
		// specRejects: the contract refuses the request too.
		specRejects bool
		status      int
		problem     string
		field       string
	}{
		{"a body", exchange{method: "POST", path: path, header: jsonHeader(), body: `{"force":true}`}, false,
			http.StatusBadRequest, "validation-error", "force"},
		{"a body that is not JSON", exchange{method: "POST", path: path, header: map[string]string{"Content-Type": "text/plain"}, body: "again"}, false,
			http.StatusUnsupportedMediaType, "unsupported-media-type", ""},
		{"a query parameter", exchange{method: "POST", path: path + "?dry_run=1"}, false,
			http.StatusBadRequest, "validation-error", "dry_run"},
		{"an invalid Idempotency-Key", exchange{method: "POST", path: path, header: map[string]string{"Idempotency-Key": "has spaces in it"}}, true,
			http.StatusBadRequest, "validation-error", "Idempotency-Key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(t, c.x, c.specRejects)
			if r.status != c.status {
				t.Fatalf("answered %d, want %d %s naming %q:\n%s", r.status, c.status, c.problem, c.field, r.body)
			}
			if p := r.problem(t); !strings.HasSuffix(p.Type, "#"+c.problem) || c.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != c.field) {
				t.Errorf("answered %s, want %s naming %q:\n%s", p.Type, c.problem, c.field, r.body)
			}
		})
	}
	// Nothing refused was redelivered: the dead letter is still dead.
	still := decodeBody[struct{ Items []deliveryBody }](t,
		ev.req(t, "GET", "/v1/webhook-deliveries?status=dead&transfer_id="+id, readKey, ""), http.StatusOK).Items
	if len(still) != len(dead) {
		t.Fatalf("%d dead letters after the refused redeliveries, want %d: one was redelivered", len(still), len(dead))
	}

	keyed := exchange{method: "POST", path: path, header: map[string]string{"Idempotency-Key": "redeliver-1"}}
	first := e.do(t, keyed, false)
	if first.status != http.StatusAccepted || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("a redelivery with a key: %d, Idempotent-Replayed %q, want 202 served:\n%s",
			first.status, first.header.Get("Idempotent-Replayed"), first.body)
	}
	again := e.do(t, keyed, false)
	if again.status != http.StatusAccepted || again.header.Get("Idempotent-Replayed") != "true" || string(again.body) != string(first.body) {
		t.Errorf("its repeat: %d, Idempotent-Replayed %q, want the first answer replayed:\n%s\n%s",
			again.status, again.header.Get("Idempotent-Replayed"), first.body, again.body)
	}
	if r := e.do(t, exchange{method: "POST", path: path, header: jsonHeader(), body: `{}`}, false); r.status != http.StatusAccepted {
		t.Errorf("a redelivery with the empty object, which the actions tolerate: %d\n%s", r.status, r.body)
	}

	missing := e.do(t, exchange{method: "POST", path: "/v1/webhook-deliveries/dlv_0123456789abcdef01234567/redeliver"}, false)
	if missing.status != http.StatusNotFound || !strings.Contains(string(missing.body), "no webhook delivery with this id") {
		t.Errorf("an unknown delivery: %d, want 404 saying no webhook delivery has the id:\n%s", missing.status, missing.body)
	}
}

// TestARedeliveryNeverAttemptedIsSentUnderA410Gone: an operator's
// redelivery of a delivery listed with no attempt yet (waiting behind its
// transfer's failing head) is sent, once it is the head, even though the
// endpoint answered 410 Gone meanwhile, as the README promises of a
// redelivery: it was given up unsent, a dead letter with no code, as if
// it had never been redelivered.
func TestARedeliveryNeverAttemptedIsSentUnderA410Gone(t *testing.T) {
	var code, got atomic.Int64
	code.Store(http.StatusServiceUnavailable)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		got.Add(1)
		w.WriteHeader(int(code.Load()))
	}))
	t.Cleanup(rcv.Close)
	store := memory.New()
	reg := prometheus.NewRegistry()
	// The clock stands still: a failing head's back-off never passes.
	start := time.Now().UTC()
	disp := webhooks.New(webhooks.Config{Clock: func() time.Time { return start }}, memory.NewDeliveries(store),
		webhooks.Static{"default": {{ID: "crm", URL: rcv.URL, Secrets: []string{"whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}}}},
		api.EventPayload, zerolog.Nop(), reg)
	e := eventsServer(t, store, reg, api.Config{Idempotency: store, Deliveries: disp})
	type delivery struct {
		ID        string `json:"id"`
		Seq       int64  `json:"seq"`
		Status    string `json:"status"`
		Attempts  int    `json:"attempts"`
		LastCode  int    `json:"last_code"`
		LastError string `json:"last_error"`
	}
	list := func(id string) []delivery {
		t.Helper()
		ds := decodeBody[struct{ Items []delivery }](t, e.req(t, "GET", "/v1/webhook-deliveries?status=pending,dead&transfer_id="+id, readKey, ""),
			http.StatusOK).Items
		slices.Reverse(ds) // oldest first
		return ds
	}
	drain := func() {
		t.Helper()
		if err := disp.Drain(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	first := e.start(t, writeKey, "1001")
	drain()
	ds := list(first)
	if len(ds) < 2 || ds[0].Attempts != 1 || ds[1].Attempts != 0 || ds[1].Status != "pending" {
		t.Fatalf("the first transfer's deliveries: %+v; want its head failing, the next never attempted", ds)
	}
	// Another transfer's delivery is answered 410 Gone.
	code.Store(http.StatusGone)
	e.start(t, writeKey, "1002")
	drain()
	before := got.Load()
	for _, d := range []delivery{ds[1], ds[0]} {
		decodeBody[delivery](t, e.req(t, "POST", "/v1/webhook-deliveries/"+d.ID+"/redeliver", writeKey, ""), http.StatusAccepted)
	}
	drain()
	if n := got.Load() - before; n != 2 {
		t.Errorf("%d redeliveries reached the endpoint, want 2", n)
	}
	for _, d := range list(first)[:2] {
		if d.Status != "dead" || d.LastCode != http.StatusGone {
			t.Errorf("redelivered delivery %d: %+v; want sent, answered 410", d.Seq, d)
		}
	}
}

// switchable is a directory whose endpoints a test replaces, as a
// reloaded tenants file does.
type switchable struct {
	mu  sync.Mutex
	eps webhooks.Static
}

func (s *switchable) set(eps webhooks.Static) { s.mu.Lock(); s.eps = eps; s.mu.Unlock() }

func (s *switchable) Tenants() []string { s.mu.Lock(); defer s.mu.Unlock(); return s.eps.Tenants() }

func (s *switchable) Endpoints(tenant string) []webhooks.Endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.eps.Endpoints(tenant)
}

// TestARedeliveryToARemovedEndpointIsAConflict: a redelivery of a
// delivery whose endpoint was removed from the configuration was
// accepted (202), to be retried to no URL until its maximum age; it is
// refused, 409 endpoint-not-configured, nothing redelivered, and the
// exchange is the contract's.
func TestARedeliveryToARemovedEndpointIsAConflict(t *testing.T) {
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(rcv.Close)
	store := memory.New()
	reg := prometheus.NewRegistry()
	start := time.Now().UTC()
	dir := &switchable{eps: webhooks.Static{"default": {{ID: "crm", URL: rcv.URL, Secrets: []string{"whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}}}}}
	disp := webhooks.New(webhooks.Config{Clock: func() time.Time { return start }}, memory.NewDeliveries(store), dir,
		api.EventPayload, zerolog.Nop(), reg)
	ev := eventsServer(t, store, reg, api.Config{Idempotency: store, Deliveries: disp})
	id := ev.start(t, writeKey, "1001")
	if err := disp.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	failing := decodeBody[struct{ Items []deliveryBody }](t,
		ev.req(t, "GET", "/v1/webhook-deliveries?status=failing&transfer_id="+id, readKey, ""), http.StatusOK).Items
	if len(failing) != 1 {
		t.Fatalf("%d failing deliveries, want 1", len(failing))
	}
	dir.set(webhooks.Static{})
	e := &env{c: loadContract(t), srv: ev.srv, eng: ev.eng, ids: map[string]string{"d": failing[0].ID}}
	r := e.do(t, exchange{method: "POST", path: "/v1/webhook-deliveries/<d>/redeliver", header: map[string]string{"Idempotency-Key": "again-1"}}, false)
	if p := r.problem(t); r.status != http.StatusConflict || !strings.HasSuffix(p.Type, "#endpoint-not-configured") {
		t.Fatalf("a redelivery to a removed endpoint: %d %s, want 409 endpoint-not-configured:\n%s", r.status, p.Type, r.body)
	}
	// Configured again, the same key redelivers: the refusal was not
	// remembered.
	dir.set(webhooks.Static{"default": {{ID: "crm", URL: rcv.URL, Secrets: []string{"whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}}}})
	if r := e.do(t, exchange{method: "POST", path: "/v1/webhook-deliveries/<d>/redeliver", header: map[string]string{"Idempotency-Key": "again-1"}}, false); r.status != http.StatusAccepted {
		t.Fatalf("the redelivery once the endpoint is back: %d, want 202:\n%s", r.status, r.body)
	}
}
