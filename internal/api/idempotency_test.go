package api_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
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

// instance is one transferd process: an engine and its HTTP server.
type instance struct {
	eng *orchestrator.Engine
	srv *httptest.Server
}

func newInstance(t *testing.T, store orchestrator.Store, fake *orchestratortest.Fake) *instance {
	t.Helper()
	eng, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		VisibilityWindow: 20 * time.Millisecond},
		store, []orchestrator.Provider{fake}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(api.NewServer(api.Config{OpenAPI: transferd.OpenAPI, Idempotency: store}, eng, zerolog.Nop(), reg, reg))
	t.Cleanup(func() {
		srv.Close()
		_ = eng.Shutdown(context.Background())
	})
	return &instance{eng: eng, srv: srv}
}

type reply struct {
	status   int
	location string
	replayed string
	body     string
}

func post(t *testing.T, url, key, body string, header ...string) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("Idempotent-Replayed"), string(b)}
}

const manualBody = `{"provider":"netsapiens","call":{"domain":"TEST","user":"1000"},"target":"1010","completion":"manual"}`

func TestIdempotentCreateReplaysAcrossRestarts(t *testing.T) {
	store := memory.New()
	fake := orchestratortest.NewFake("netsapiens")
	first := newInstance(t, store, fake)
	a := post(t, first.srv.URL+"/v1/transfers", "key-1", manualBody)
	if a.status != http.StatusAccepted || a.location == "" {
		t.Fatalf("first: %+v", a)
	}
	b := post(t, first.srv.URL+"/v1/transfers", "key-1", manualBody)
	if b.status != a.status || b.location != a.location || b.body != a.body || b.replayed != "true" {
		t.Fatalf("repeat differs:\n%+v\n%+v", a, b)
	}
	// Another process on the same store: the key still holds.
	second := newInstance(t, store, fake)
	c := post(t, second.srv.URL+"/v1/transfers", "key-1", manualBody)
	if c.location != a.location || c.body != a.body {
		t.Fatalf("after a restart: %+v", c)
	}
	d := post(t, second.srv.URL+"/v1/transfers", "key-1", strings.Replace(manualBody, "1010", "1011", 1))
	if d.status != http.StatusUnprocessableEntity || !strings.Contains(d.body, "idempotency-key-reused") {
		t.Fatalf("same key, other body: %+v", d)
	}
	ts, _, _ := store.List(context.Background(), orchestrator.ListFilter{Limit: 10})
	if len(ts) != 1 {
		t.Fatalf("%d transfers, want 1", len(ts))
	}
}

func TestConcurrentDuplicatesCreateOneTransfer(t *testing.T) {
	store := memory.New()
	fake := orchestratortest.NewFake("netsapiens")
	gate := fake.Block(orchestratortest.MethodLocate) // keep the first request's wait going
	inst := newInstance(t, store, fake)
	const n = 8
	replies := make([]reply, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = post(t, inst.srv.URL+"/v1/transfers", "dup", manualBody, "Prefer", "wait=5")
		}()
	}
	<-gate.Entered()
	gate.Release()
	wg.Wait()
	for i, r := range replies {
		if r.location == "" || r.location != replies[0].location {
			t.Fatalf("reply %d: %+v, want the transfer at %s", i, r, replies[0].location)
		}
	}
	ts, _, _ := store.List(context.Background(), orchestrator.ListFilter{Limit: 10})
	if len(ts) != 1 {
		t.Fatalf("%d transfers created, want 1", len(ts))
	}
}

func TestIdempotentCancel(t *testing.T) {
	store := memory.New()
	fake := orchestratortest.NewFake("netsapiens")
	inst := newInstance(t, store, fake)
	created := post(t, inst.srv.URL+"/v1/transfers", "", manualBody, "Prefer", "wait=5")
	if created.status != http.StatusCreated {
		t.Fatalf("create: %+v", created)
	}
	url := inst.srv.URL + created.location + "/cancel"
	a := post(t, url, "cancel-1", "", "Prefer", "wait=5")
	b := post(t, url, "cancel-1", "", "Prefer", "wait=5")
	if a.status != http.StatusOK || b.status != a.status || b.body != a.body || b.replayed != "true" {
		t.Fatalf("cancel then its repeat:\n%+v\n%+v", a, b)
	}
	// Without the key, a second cancel is a conflict: the transfer ended.
	if c := post(t, url, "", ""); c.status != http.StatusConflict {
		t.Fatalf("unkeyed repeat: %+v", c)
	}
}

func TestIdempotencyKeyIsValidated(t *testing.T) {
	inst := newInstance(t, memory.New(), orchestratortest.NewFake("netsapiens"))
	r := post(t, inst.srv.URL+"/v1/transfers", strings.Repeat("k", 256), manualBody)
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "Idempotency-Key") {
		t.Fatalf("%+v", r)
	}
}

// An Idempotency-Key header sent empty (curl -H 'Idempotency-Key;') is a
// key the client lost, not a request without one: openapi.yaml requires 1
// to 255 characters. It was served unkeyed, so its retry would start a
// second transfer (found by review).
func TestAnEmptyIdempotencyKeyIsRefused(t *testing.T) {
	e := newEnv(t)
	r := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Idempotency-Key", ""), body: createBody("1000", "auto")}, true)
	if r.status != http.StatusBadRequest || len(r.problem(t).Errors) != 1 || r.problem(t).Errors[0].Field != "Idempotency-Key" {
		t.Fatalf("a create with an empty Idempotency-Key answered %d, want 400 naming Idempotency-Key:\n%s", r.status, r.body)
	}
	if calls := e.fake.Calls(); len(calls) != 0 {
		t.Fatalf("the refused create reached the provider: %v", calls)
	}
}

// unrecordedStore is a memory store whose first CompleteIdempotency fails,
// as a store does on a transient error (a dropped connection). Its
// SettleIdempotency reports each round on rounds (to a test waiting for
// one) and moves the cutoff of the caller's own reservations on by
// advance: the round a live replica runs once that much more time has
// passed (its heartbeat renewed meanwhile). It keeps each heartbeat for
// heartbeatKept, not the engine's lease of 40 ms (short for settle rounds
// every 10 ms): a heartbeat that load held back 30 ms lapsed the lease,
// and a round settled the reservation of a replica it took for stopped,
// young as it was. The replica stays alive, as the test says.
type unrecordedStore struct {
	*memory.Store
	failed  atomic.Bool
	advance atomic.Int64 // a time.Duration
	rounds  chan time.Duration
}

// heartbeatKept is how long unrecordedStore keeps a replica's heartbeat:
// longer than the test lasts.
const heartbeatKept = time.Minute

func (s *unrecordedStore) Heartbeat(ctx context.Context, owner, token string, now time.Time, _ time.Duration, take bool) (bool, error) {
	return s.Store.Heartbeat(ctx, owner, token, now, heartbeatKept, take)
}

func (s *unrecordedStore) CompleteIdempotency(ctx context.Context, scope, key string, createdAt time.Time, resp orchestrator.IdempotentResponse) error {
	if s.failed.CompareAndSwap(false, true) {
		return errors.New("postgres: complete idempotency key: conn closed")
	}
	return s.Store.CompleteIdempotency(ctx, scope, key, createdAt, resp)
}

func (s *unrecordedStore) SettleIdempotency(ctx context.Context, owner string, now, ownBefore time.Time) (int, error) {
	advance := time.Duration(s.advance.Load())
	n, err := s.Store.SettleIdempotency(ctx, owner, now, ownBefore.Add(advance))
	select {
	case s.rounds <- advance:
	default:
	}
	return n, err
}

// settleRound waits for a settle round of the maintenance loop that began
// after the call, with the store's current advance: the second of two, as
// the first may have begun before.
func (s *unrecordedStore) settleRound(t *testing.T) {
	t.Helper()
	want := time.Duration(s.advance.Load())
	timeout := time.After(10 * time.Second)
	for seen := 0; seen < 2; {
		select {
		case got := <-s.rounds:
			if got == want {
				seen++
			}
		case <-timeout:
			t.Fatal("no settle round of the maintenance loop")
		}
	}
}

// A create is served (202, the transfer saved with its key) but its
// response cannot be recorded. Its replica stays alive: while the request
// may still be served its reservation is left alone, and once
// orchestrator.ReservationTimeout has passed the replica settles it, so
// that a retry with the key replays the transfer instead of waiting for
// 409 "still being served" for as long as the replica lives.
func TestReservationWhoseResponseWasNotRecordedIsSettledByItsLiveReplica(t *testing.T) {
	ctx := context.Background()
	store := &unrecordedStore{Store: memory.New(), rounds: make(chan time.Duration)}
	fake := orchestratortest.NewFake("netsapiens")
	eng, err := orchestrator.New(orchestrator.Config{Owner: "r1", LeaseTTL: 40 * time.Millisecond,
		PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond, VisibilityWindow: 20 * time.Millisecond},
		store, []orchestrator.Provider{fake}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(api.NewServer(api.Config{OpenAPI: transferd.OpenAPI, Idempotency: store, Replica: "r1"},
		eng, zerolog.Nop(), reg, reg))
	t.Cleanup(func() {
		srv.Close()
		_ = eng.Shutdown(context.Background())
	})
	if err := eng.Open(ctx); err != nil {
		t.Fatal(err)
	}
	a := post(t, srv.URL+"/v1/transfers", "key-1", manualBody)
	if a.status != http.StatusAccepted || !store.failed.Load() {
		t.Fatalf("create: %+v (recording failed: %t)", a, store.failed.Load())
	}
	scope := orchestrator.DefaultTenant + " POST /v1/transfers"
	pending := func() bool {
		t.Helper()
		cur, mine, err := store.ReserveIdempotency(ctx, orchestrator.IdempotencyRecord{Scope: scope, Key: "key-1",
			RequestHash: "probe", CreatedAt: time.Now(), Owner: "probe"})
		if err != nil {
			t.Fatal(err)
		}
		if mine {
			t.Fatalf("the reservation of key-1 was released, although its transfer %s was saved", a.location)
		}
		return cur.Response == nil
	}

	store.settleRound(t)
	if !pending() {
		t.Fatal("a reservation younger than ReservationTimeout was settled: its request may still be served")
	}

	store.advance.Store(int64(orchestrator.ReservationTimeout))
	store.settleRound(t)
	if pending() {
		t.Fatal("the reservation of a create answered 202 is still in progress past ReservationTimeout, its replica alive")
	}
	b := post(t, srv.URL+"/v1/transfers", "key-1", manualBody)
	if b.status != http.StatusAccepted || b.location != a.location || b.replayed != "true" {
		t.Fatalf("retry: %+v, want the transfer at %s replayed", b, a.location)
	}
	ts, _, _ := store.List(ctx, orchestrator.ListFilter{Limit: 10})
	if len(ts) != 1 {
		t.Fatalf("%d transfers, want 1", len(ts))
	}
}

// heldStore is a memory store that holds the recording of a response
// until release is closed, telling recording when it begins, and tells
// refused of every reservation refused to a duplicate that must wait.
type heldStore struct {
	*memory.Store
	recording chan struct{}
	release   chan struct{}
	refused   chan time.Time
}

func (s *heldStore) ReserveIdempotency(ctx context.Context, rec orchestrator.IdempotencyRecord) (orchestrator.IdempotencyRecord, bool, error) {
	cur, mine, err := s.Store.ReserveIdempotency(ctx, rec)
	if err == nil && !mine && cur.Response == nil {
		select {
		case s.refused <- time.Now():
		default:
		}
	}
	return cur, mine, err
}

func (s *heldStore) CompleteIdempotency(ctx context.Context, scope, key string, createdAt time.Time, resp orchestrator.IdempotentResponse) error {
	s.recording <- struct{}{}
	<-s.release
	return s.Store.CompleteIdempotency(ctx, scope, key, createdAt, resp)
}

// A repeat that arrives while the first request with its key is still
// being served waits for it, then is answered (here the first's answer
// replayed) past the server's write timeout, which counts from the
// request: its write deadline is moved by the wait, as a long poll's is,
// so that the client gets the answer, not a dropped connection.
func TestDuplicateThatWaitsPastTheWriteTimeoutIsAnswered(t *testing.T) {
	const writeTimeout = 100 * time.Millisecond
	store := &heldStore{Store: memory.New(), recording: make(chan struct{}), release: make(chan struct{}), refused: make(chan time.Time, 64)}
	fake := orchestratortest.NewFake("netsapiens")
	eng, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		VisibilityWindow: 20 * time.Millisecond}, store, []orchestrator.Provider{fake}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv := httptest.NewUnstartedServer(api.NewServer(api.Config{OpenAPI: transferd.OpenAPI, Idempotency: store, WriteTimeout: writeTimeout},
		eng, zerolog.Nop(), reg, reg))
	srv.Config.WriteTimeout = writeTimeout
	srv.Start()
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		_ = eng.Shutdown(context.Background())
	})
	send := func() <-chan keyedAnswer { return sendKeyed(srv.URL+"/v1/transfers", "dup-late") }

	// The first request is served; the recording of its answer is held,
	// so that its key stays reserved.
	first := send()
	select {
	case <-store.recording:
	case a := <-first:
		t.Fatalf("the first request ended before its answer was recorded: %+v", a)
	}
	// The repeat waits for it until its write deadline, which the server
	// set when it read the request (before the first refusal), is past.
	dup := send()
	since := <-store.refused
	for time.Since(since) <= writeTimeout {
		<-store.refused
	}
	close(store.release)
	<-first // its own answer may well be lost: the store held it past its write timeout

	a := <-dup
	if a.err != nil {
		t.Fatalf("the repeat that waited past its write timeout got no answer: %v; want the first's answer replayed", a.err)
	}
	if a.res.StatusCode != http.StatusAccepted || a.res.Header.Get("Idempotent-Replayed") != "true" || a.res.Header.Get("Location") == "" {
		t.Errorf("the repeat: %d, Idempotent-Replayed %q %s; want the first's 202 replayed", a.res.StatusCode, a.res.Header.Get("Idempotent-Replayed"), a.body)
	}
}

// keyedAnswer is what a client of sendKeyed got.
type keyedAnswer struct {
	res  *http.Response
	body string
	err  error
}

// sendKeyed POSTs a manual transfer with an Idempotency-Key and answers
// with what the client got, once it has it. Each request has a connection
// of its own: a transport retries a request with an Idempotency-Key lost
// on a reused connection, which would hide a dropped answer.
func sendKeyed(url, key string) <-chan keyedAnswer {
	done := make(chan keyedAnswer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(manualBody))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		res, err := c.Do(req)
		if err != nil {
			done <- keyedAnswer{err: err}
			return
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		done <- keyedAnswer{res: res, body: string(b), err: err}
	}()
	return done
}

// A repeat whose wait for the request with its key runs out is told to
// retry, and when: the 409 idempotency-in-progress carries Retry-After, as
// openapi.yaml's ActiveTransfer (a create's 409) requires. Without it (a mutation no test
// caught) a client had no time to wait, and one that retries at once
// while the first request is still served only meets the same 409 again.
func TestARepeatWhoseWaitRanOutIsToldWhenToRetry(t *testing.T) {
	defer api.SetRepeatWait(50 * time.Millisecond)()
	store := &heldStore{Store: memory.New(), recording: make(chan struct{}), release: make(chan struct{}), refused: make(chan time.Time, 64)}
	inst := newInstance(t, store, orchestratortest.NewFake("netsapiens"))
	url := inst.srv.URL + "/v1/transfers"
	first := sendKeyed(url, "key-held")
	<-store.recording // the first is served; its answer not recorded yet
	a := <-sendKeyed(url, "key-held")
	close(store.release)
	if f := <-first; f.err != nil || f.res.StatusCode != http.StatusAccepted {
		t.Fatalf("the first request: %+v", f)
	}
	if a.err != nil {
		t.Fatal(a.err)
	}
	if a.res.StatusCode != http.StatusConflict || !strings.Contains(a.body, "idempotency-in-progress") || a.res.Header.Get("Retry-After") != "1" {
		t.Errorf("the repeat whose wait ran out: %d, Retry-After %q, %s; want 409 idempotency-in-progress with Retry-After 1",
			a.res.StatusCode, a.res.Header.Get("Retry-After"), a.body)
	}
}
