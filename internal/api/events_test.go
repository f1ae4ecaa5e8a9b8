package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
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
	"github.com/transferd/transferd/internal/webhooks"
)

// eventsEnv is a server with the event routes, an engine over the fake,
// and a webhook dispatcher whose only endpoint always fails (so that its
// deliveries become dead letters at once); tests drain it.
type eventsEnv struct {
	srv  *httptest.Server
	eng  *orchestrator.Engine
	disp *webhooks.Dispatcher
	dels *memory.Deliveries // the dispatcher's store
}

func newEventsEnv(t *testing.T) *eventsEnv {
	t.Helper()
	return newEventsEnvFor(t, "default")
}

// newEventsEnvFor is newEventsEnv with the failing endpoint declared for
// each of tenants.
func newEventsEnvFor(t *testing.T, tenants ...string) *eventsEnv {
	t.Helper()
	store := memory.New()
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(refuse.Close)
	secret := "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	reg := prometheus.NewRegistry()
	endpoints := webhooks.Static{}
	for _, tenant := range tenants {
		endpoints[tenant] = []webhooks.Endpoint{{ID: "crm", URL: refuse.URL, Secrets: []string{secret}}}
	}
	dels := memory.NewDeliveries(store)
	disp := webhooks.New(webhooks.Config{ScanInterval: 5 * time.Millisecond, MaxAge: time.Nanosecond},
		dels, endpoints, api.EventPayload, zerolog.Nop(), reg)
	e := eventsServer(t, store, reg, api.Config{Idempotency: store, Deliveries: disp})
	e.disp, e.dels = disp, dels
	return e
}

// eventsServer is a server with the event routes and cfg over an engine on
// store, whose fake provider answers at once. The engine's saves notify
// cfg.EventsSaved, as cmd/transferd wires them, unless an option says
// otherwise.
func eventsServer(t *testing.T, store orchestrator.Store, reg *prometheus.Registry, cfg api.Config, opts ...func(*orchestrator.Config)) *eventsEnv {
	t.Helper()
	ecfg := orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		VerifyTimeout: 200 * time.Millisecond, VisibilityWindow: 20 * time.Millisecond}
	if cfg.EventsSaved != nil {
		ecfg.EventsSaved = cfg.EventsSaved.Notify
	}
	for _, o := range opts {
		o(&ecfg)
	}
	eng, err := orchestrator.New(ecfg, store, []orchestrator.Provider{orchestratortest.NewFake("netsapiens")}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.OpenAPI, cfg.Keys, cfg.CallbackSigner = transferd.OpenAPI, testKeys(t), testSigner(t)
	srv := httptest.NewServer(api.NewServer(cfg, eng, zerolog.Nop(), reg, reg))
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := eng.Shutdown(ctx); err != nil {
			t.Errorf("engine shutdown: %v", err)
		}
	})
	return &eventsEnv{srv: srv, eng: eng}
}

func (e *eventsEnv) req(t *testing.T, method, path, key, body string, hdr ...string) *http.Response {
	t.Helper()
	return e.reqContext(t, context.Background(), method, path, key, body, hdr...)
}

// reqContext is req whose request ends with ctx.
func (e *eventsEnv) reqContext(t *testing.T, ctx context.Context, method, path, key, body string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1]) // a header named twice is sent twice
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func decodeBody[T any](t *testing.T, res *http.Response, status int) T {
	t.Helper()
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", res.StatusCode, status, body)
	}
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode: %v: %s", err, body)
	}
	return v
}

type eventBody struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	TransferID string `json:"transfer_id"`
	Seq        int64  `json:"seq"`
	Data       struct {
		ID         string            `json:"id"`
		State      string            `json:"state"`
		ExternalID string            `json:"external_id"`
		Metadata   map[string]string `json:"metadata"`
	} `json:"data"`
}

// start creates a transfer that completes (the fake answers) and waits
// for its end.
func (e *eventsEnv) start(t *testing.T, key, user string) string {
	t.Helper()
	tr := decodeBody[struct{ ID string }](t, e.req(t, "POST", "/v1/transfers", key,
		`{"provider":"netsapiens","call":{"domain":"acme.example","user":"`+user+`"},"target":"1010",`+
			`"external_id":"crm-call-`+user+`","metadata":{"ticket":"T-`+user+`"}}`), http.StatusAccepted)
	ctx := orchestrator.WithTenant(context.Background(), map[string]string{writeKey: "default", otherWriteKey: otherTenant}[key])
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if got, err := e.eng.Wait(ctx, tr.ID, func(*orchestrator.Transfer) bool { return false }); err != nil || !got.State.Terminal() {
		t.Fatalf("transfer %s did not end: %v", tr.ID, err)
	}
	return tr.ID
}

// sse reads a stream's events: id and data.
type sse struct {
	res *http.Response
	sc  *bufio.Scanner
	// end ends the stream's request: next calls it once it has waited
	// failAfter for an event.
	end context.CancelFunc
}

func (e *eventsEnv) stream(t *testing.T, key, query string, hdr ...string) *sse {
	t.Helper()
	ctx, end := context.WithCancel(t.Context())
	res := e.reqContext(t, ctx, "GET", "/v1/events"+query, key, "", hdr...)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		end()
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	t.Cleanup(func() { end(); res.Body.Close() })
	return &sse{res: res, sc: bufio.NewScanner(res.Body), end: end}
}

// next returns the next event's id and body. A stream that sends none
// within failAfter (a liveness bound, not a timing assertion) fails the
// test: waited for with no deadline, a regression that silenced streams
// (one that reads no tenant's events) hung the package until its
// timeout, every test after it unrun.
func (s *sse) next(t *testing.T) (string, eventBody) {
	t.Helper()
	timer := time.AfterFunc(failAfter, s.end)
	defer timer.Stop()
	var id string
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			var ev eventBody
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev); err != nil {
				t.Fatalf("event data: %v", err)
			}
			return id, ev
		}
	}
	if !timer.Stop() {
		t.Fatalf("no event within %v: the stream sent nothing", failAfter)
	}
	t.Fatalf("stream ended: %v", s.sc.Err())
	return "", eventBody{}
}

// TestEventHistoryAndStream: a transfer's history is its events in seq
// order with the client's context in each; the stream resumes after
// Last-Event-ID; both are scoped to the caller's tenant.
func TestEventHistoryAndStream(t *testing.T) {
	e := newEventsEnv(t)
	id := e.start(t, writeKey, "1001")

	hist := decodeBody[struct{ Items []eventBody }](t, e.req(t, "GET", "/v1/transfers/"+id+"/events", readKey, ""), http.StatusOK)
	if len(hist.Items) < 3 || hist.Items[0].Type != "transfer.created" || hist.Items[len(hist.Items)-1].Type != "transfer.completed" {
		t.Fatalf("history %+v, want created … completed", hist.Items)
	}
	for i, ev := range hist.Items {
		if ev.Seq != int64(i+1) || ev.TransferID != id || ev.Data.ID != id || ev.Data.ExternalID != "crm-call-1001" || ev.Data.Metadata["ticket"] != "T-1001" {
			t.Errorf("event %d: %+v", i, ev)
		}
	}
	if res := e.req(t, "GET", "/v1/transfers/"+id+"/events", otherReadKey, ""); res.StatusCode != http.StatusNotFound {
		t.Errorf("another tenant read the history: %d", res.StatusCode)
	}

	// From the start of the outbox, then resumed after the second event.
	s := e.stream(t, readKey, "", "Last-Event-ID", "0")
	var ids []string
	for range hist.Items {
		pos, ev := s.next(t)
		ids = append(ids, pos)
		if ev.TransferID != id {
			t.Fatalf("stream sent %+v", ev)
		}
	}
	s2 := e.stream(t, readKey, "?transfer_id="+id, "Last-Event-ID", ids[1])
	if pos, ev := s2.next(t); pos != ids[2] || ev.Seq != 3 {
		t.Errorf("resumed at %s seq %d, want %s seq 3", pos, ev.Seq, ids[2])
	}

	// The other tenant's stream from the start shows its own transfer
	// first: the default tenant's earlier events are not its.
	so := e.stream(t, otherReadKey, "", "Last-Event-ID", "0")
	other := e.start(t, otherWriteKey, "2001")
	if _, ev := so.next(t); ev.TransferID != other {
		t.Errorf("the other tenant's stream sent %+v", ev)
	}
	if res := e.req(t, "GET", "/v1/events?transfer_id="+id, otherReadKey, ""); res.StatusCode != http.StatusNotFound {
		t.Errorf("another tenant streamed the transfer: %d", res.StatusCode)
	}
	if res := e.req(t, "GET", "/v1/events", readKey, "", "Last-Event-ID", "x"); res.StatusCode != http.StatusBadRequest {
		t.Errorf("a bad Last-Event-ID: %d", res.StatusCode)
	}
	// Two positions, each valid: which one would the stream resume from?
	// A proxy that kept the other would see events skipped or sent again.
	res := e.req(t, "GET", "/v1/events", readKey, "", "Last-Event-ID", "0", "Last-Event-ID", ids[1])
	if res.StatusCode != http.StatusBadRequest {
		_ = res.Body.Close() // a stream: reading it would wait for ever
		t.Fatalf("two Last-Event-IDs: %d, want 400", res.StatusCode)
	}
	if p := decodeBody[struct {
		Errors []struct{ Field, Detail string } `json:"errors"`
	}](t, res, http.StatusBadRequest); len(p.Errors) != 1 || p.Errors[0].Field != "Last-Event-ID" || p.Errors[0].Detail != "is given more than once" {
		t.Errorf("two Last-Event-IDs: %+v, want one error naming Last-Event-ID as given more than once", p.Errors)
	}
}

// The stream's ids are not the outbox positions, which all tenants'
// events share (a tenant would tell from the gaps how many events the
// others made): they are opaque, and another tenant's stream refuses
// them, as it does an id cut short or a signed number.
func TestStreamIDsAreTheTenantsOwn(t *testing.T) {
	e := newEventsEnv(t)
	e.start(t, writeKey, "1001")
	e.start(t, otherWriteKey, "2001")
	id := e.start(t, writeKey, "1002")
	s := e.stream(t, readKey, "?transfer_id="+id, "Last-Event-ID", "0")
	first, _ := s.next(t)
	second, _ := s.next(t)
	for _, x := range []string{first, second} {
		if _, err := strconv.ParseInt(x, 10, 64); err == nil {
			t.Fatalf("the stream sent id %s, a number", x)
		}
	}
	if pos, ev := e.stream(t, readKey, "?transfer_id="+id, "Last-Event-ID", first).next(t); pos != second || ev.TransferID != id || ev.Seq != 2 {
		t.Errorf("resumed after %s: %s (%s seq %d), want %s (%s seq 2)", first, pos, ev.TransferID, ev.Seq, second, id)
	}
	for _, c := range []struct{ key, id string }{{otherReadKey, first}, {readKey, "+3"}, {readKey, first[:21]}} {
		res := e.req(t, "GET", "/v1/events", c.key, "", "Last-Event-ID", c.id)
		if res.StatusCode != http.StatusBadRequest {
			res.Body.Close() // a stream: not read, it would not end
			t.Errorf("Last-Event-ID %q: %d, want 400", c.id, res.StatusCode)
			continue
		}
		bad := decodeBody[struct{ Errors []struct{ Field string } }](t, res, http.StatusBadRequest)
		if len(bad.Errors) != 1 || bad.Errors[0].Field != "Last-Event-ID" {
			t.Errorf("Last-Event-ID %q: %+v, want a problem naming it", c.id, bad.Errors)
		}
	}
}

// TestStreamReconnectLastEventIDWinsOverAfter: a client that cannot set
// headers opens the stream with ?after=; EventSource reconnects to the
// same URL with Last-Event-ID, the id of the last event it saw, which
// wins: the stream resumes after it instead of replaying what the client
// had. ?after= alone still resumes, and a bad one is named in the problem.
func TestStreamReconnectLastEventIDWinsOverAfter(t *testing.T) {
	e := newEventsEnv(t)
	id := e.start(t, writeKey, "1001")
	hist := decodeBody[struct{ Items []eventBody }](t, e.req(t, "GET", "/v1/transfers/"+id+"/events", readKey, ""), http.StatusOK)
	if len(hist.Items) < 3 {
		t.Fatalf("history %+v, want at least 3 events", hist.Items)
	}
	first := e.stream(t, readKey, "?after=0")
	var ids []string
	for range hist.Items {
		pos, _ := first.next(t)
		ids = append(ids, pos)
	}
	first.res.Body.Close()
	again := e.stream(t, readKey, "?after=0", "Last-Event-ID", ids[1])
	if pos, ev := again.next(t); pos != ids[2] || ev.Seq != 3 {
		t.Errorf("reconnected to ?after=0 with Last-Event-ID %s: first event %s (seq %d), want %s (seq 3)", ids[1], pos, ev.Seq, ids[2])
	}
	if pos, ev := e.stream(t, readKey, "?after="+ids[0]).next(t); pos != ids[1] || ev.Seq != 2 {
		t.Errorf("?after=%s alone: first event %s (seq %d), want %s (seq 2)", ids[0], pos, ev.Seq, ids[1])
	}
	bad := decodeBody[struct{ Errors []struct{ Field string } }](t, e.req(t, "GET", "/v1/events?after=x", readKey, "",
		"Last-Event-ID", ids[1]), http.StatusBadRequest)
	if len(bad.Errors) != 1 || bad.Errors[0].Field != "after" {
		t.Errorf("a bad ?after= with a good Last-Event-ID: %+v, want the problem to name after", bad.Errors)
	}
	// Given twice, only one ?after= would count.
	bad = decodeBody[struct{ Errors []struct{ Field string } }](t, e.req(t, "GET", "/v1/events?after="+ids[0]+"&after="+ids[1], readKey, ""),
		http.StatusBadRequest)
	if len(bad.Errors) != 1 || bad.Errors[0].Field != "after" {
		t.Errorf("?after= given twice: %+v, want the problem to name after", bad.Errors)
	}
}

type deliveryBody struct {
	ID       string `json:"id"`
	EventID  string `json:"event_id"`
	Status   string `json:"status"`
	LastCode int    `json:"last_code"`
}

// TestDeliveriesListAndRedeliver: failed deliveries are listed for the
// tenant that owns them, and an operator redelivers one.
func TestDeliveriesListAndRedeliver(t *testing.T) {
	e := newEventsEnv(t)
	id := e.start(t, writeKey, "1002")
	hist := decodeBody[struct{ Items []eventBody }](t, e.req(t, "GET", "/v1/transfers/"+id+"/events", readKey, ""), http.StatusOK)
	if err := e.disp.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	dead := decodeBody[struct{ Items []deliveryBody }](t,
		e.req(t, "GET", "/v1/webhook-deliveries?status=dead&transfer_id="+id, readKey, ""), http.StatusOK).Items
	if len(dead) != len(hist.Items) {
		t.Fatalf("%d dead letters, want one per event (%d)", len(dead), len(hist.Items))
	}
	for _, d := range dead {
		if d.Status != "dead" || d.LastCode != http.StatusInternalServerError {
			t.Errorf("delivery %+v", d)
		}
	}
	if got := decodeBody[struct{ Items []deliveryBody }](t, e.req(t, "GET", "/v1/webhook-deliveries", otherReadKey, ""), http.StatusOK); len(got.Items) != 0 {
		t.Errorf("another tenant sees %d deliveries", len(got.Items))
	}
	if res := e.req(t, "POST", "/v1/webhook-deliveries/"+dead[0].ID+"/redeliver", otherWriteKey, ""); res.StatusCode != http.StatusNotFound {
		t.Errorf("another tenant redelivered: %d", res.StatusCode)
	}
	if res := e.req(t, "POST", "/v1/webhook-deliveries/"+dead[0].ID+"/redeliver", readKey, ""); res.StatusCode != http.StatusForbidden {
		t.Errorf("a read key redelivered: %d", res.StatusCode)
	}
	got := decodeBody[deliveryBody](t, e.req(t, "POST", "/v1/webhook-deliveries/"+dead[0].ID+"/redeliver", writeKey, ""), http.StatusAccepted)
	if got.Status != "pending" || got.EventID != dead[0].EventID {
		t.Errorf("redelivered %+v", got)
	}
	if res := e.req(t, "GET", "/v1/webhook-deliveries?status=lost", readKey, ""); res.StatusCode != http.StatusBadRequest {
		t.Errorf("an unknown status: %d", res.StatusCode)
	}
}

// TestClientContextAndListFilters: external_id and metadata are bounded,
// returned, and the list filters by them, by call, target and time.
func TestClientContextAndListFilters(t *testing.T) {
	e := newEventsEnv(t)
	before := time.Now().UTC().Add(-time.Second).Format(time.RFC3339Nano)
	a := e.start(t, writeKey, "1003")
	b := e.start(t, writeKey, "1004")
	list := func(q string) []string {
		page := decodeBody[struct{ Items []struct{ ID string } }](t, e.req(t, "GET", "/v1/transfers?"+q, readKey, ""), http.StatusOK)
		var ids []string
		for _, it := range page.Items {
			ids = append(ids, it.ID)
		}
		return ids
	}
	for q, want := range map[string][]string{
		"external_id=crm-call-1003":                         {a},
		"domain=acme.example&user=1004":                     {b},
		"target=1010":                                       {b, a},
		"target=1099":                                       nil,
		"created_after=" + before:                           {b, a},
		"created_before=" + before:                          nil,
		"external_id=crm-call-1004&created_after=" + before: {b},
	} {
		if got := list(q); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("?%s listed %v, want %v", q, got, want)
		}
	}
	if got := list("external_id=crm-call-1003"); len(got) == 1 {
		if got := decodeBody[eventBody](t, e.req(t, "GET", "/v1/transfers/"+a, readKey, ""), http.StatusOK); got.ID != a {
			t.Errorf("get %+v", got)
		}
	}
	if res := e.req(t, "GET", "/v1/transfers?created_after=yesterday", readKey, ""); res.StatusCode != http.StatusBadRequest {
		t.Errorf("a bad created_after: %d", res.StatusCode)
	}
	long := strings.Repeat("x", 300)
	p := decodeBody[problem](t, e.req(t, "POST", "/v1/transfers", writeKey,
		`{"provider":"netsapiens","call":{"domain":"acme.example","user":"1005"},"target":"1010","external_id":"`+long+
			`","metadata":{"bad key":"v","ok":"`+long+`"}}`), http.StatusBadRequest)
	var fields []string
	for _, f := range p.Errors {
		fields = append(fields, f.Field)
	}
	for _, want := range []string{"external_id", "metadata.bad key", "metadata.ok"} {
		if !strings.Contains(strings.Join(fields, "|"), want) {
			t.Errorf("problem fields %v lack %s", fields, want)
		}
	}
}

// eventReads is a store that notes the outbox positions the stream reads
// after.
type eventReads struct {
	*memory.Store
	mu    sync.Mutex
	after []int64
}

func (s *eventReads) Events(ctx context.Context, f orchestrator.EventFilter) ([]orchestrator.Event, error) {
	s.mu.Lock()
	s.after = append(s.after, f.After)
	s.mu.Unlock()
	return s.Store.Events(ctx, f)
}

func (s *eventReads) lowest() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Min(s.after)
}

// A stream opened with neither Last-Event-ID nor ?after= starts at the end
// of the outbox without reading the history before it: the tenant's whole
// history was read, page by page with every snapshot decoded, at every
// open (0.7 s with 100,000 events), and a client that reopened streams
// kept the CPU busy for every tenant. It sends what comes next.
func TestStreamFromNowReadsNoHistory(t *testing.T) {
	store := &eventReads{Store: memory.New()}
	e := eventsServer(t, store, prometheus.NewRegistry(), api.Config{Idempotency: store})
	old := e.start(t, writeKey, "1001")
	e.start(t, otherWriteKey, "2001")
	hist := decodeBody[struct{ Items []eventBody }](t, e.req(t, "GET", "/v1/transfers/"+old+"/events", readKey, ""), http.StatusOK)
	if len(hist.Items) < 3 {
		t.Fatalf("history %+v, want at least 3 events", hist.Items)
	}
	ctx := orchestrator.WithTenant(context.Background(), "default")
	end, err := e.eng.LastEventPos(ctx, "")
	if err != nil || end == 0 {
		t.Fatalf("LastEventPos = %d, %v", end, err)
	}
	store.mu.Lock()
	store.after = nil
	store.mu.Unlock()

	tenant := e.stream(t, readKey, "")
	id := e.start(t, writeKey, "1002")
	if _, ev := tenant.next(t); ev.TransferID != id || ev.Seq != 1 {
		t.Errorf("the stream from now sent %s seq %d first, want %s seq 1", ev.TransferID, ev.Seq, id)
	}
	if low := store.lowest(); low < end {
		t.Errorf("a stream from now read the outbox after position %d, before its end (%d)", low, end)
	}
}
