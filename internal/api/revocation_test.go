package api_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
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

func authorized(t *testing.T, srv *httptest.Server, method, path, key, body string, header ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// An event stream opened with a key that is revoked afterwards sends no
// event past the revocation: it closes, and the client's reconnection is
// a 401. Found by review: the key was checked once, when the stream
// opened, and a leaked key's stream went on reading all its tenant's
// transfers (call, target, metadata) until transferd restarted.
func TestStreamClosesOnceItsKeyIsRevoked(t *testing.T) {
	srv, _ := revokedServer(t, orchestratortest.NewFake("netsapiens"), readKey, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+readKey)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("open stream: %d", res.StatusCode)
	}
	sc := bufio.NewScanner(res.Body)
	if !sc.Scan() || !strings.HasPrefix(sc.Text(), "retry:") {
		t.Fatalf("the stream did not start: %q %v", sc.Text(), sc.Err())
	}
	// The tenant goes on with its other key; the stream has an event to send.
	created := authorized(t, srv, "POST", "/v1/transfers", writeKey, createBody("4100", "manual"))
	created.Body.Close()
	if created.StatusCode != http.StatusAccepted {
		t.Fatalf("create: %d", created.StatusCode)
	}
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data:") {
			t.Fatalf("a stream whose key was revoked sent an event:\n%s", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("the stream ended with %v, want its close", err)
	}
	again := authorized(t, srv, "GET", "/v1/events", readKey, "")
	again.Body.Close()
	if again.StatusCode != http.StatusUnauthorized {
		t.Fatalf("reconnection with the revoked key: %d, want 401", again.StatusCode)
	}
}

// A long poll whose key is revoked while it waits answers 401, not the
// transfer it waited for.
func TestLongPollWhoseKeyIsRevokedAnswers401(t *testing.T) {
	srv, eng := revokedServer(t, orchestratortest.NewFake("netsapiens").SetTarget(orchestratortest.TargetRings), readKey, 1)
	created := authorized(t, srv, "POST", "/v1/transfers", writeKey, createBody("4200", "manual"))
	b, _ := io.ReadAll(created.Body)
	created.Body.Close()
	if created.StatusCode != http.StatusAccepted {
		t.Fatalf("create: %d %s", created.StatusCode, b)
	}
	id := location(t, created)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := eng.Wait(ctx, id, func(x *orchestrator.Transfer) bool { return x.State == orchestrator.StateConsulting }); err != nil {
		t.Fatal(err)
	}
	// wait=0: the poll's time is up at once, with the transfer running,
	// and the key was revoked since the request was authenticated.
	res := authorized(t, srv, "GET", "/v1/transfers/"+id, readKey, "", "Prefer", "wait=0")
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") == "" || strings.Contains(string(b), `"target"`) {
		t.Fatalf("a long poll whose key was revoked while it waited: %d WWW-Authenticate %q %s, want 401 without the transfer",
			res.StatusCode, res.Header.Get("WWW-Authenticate"), b)
	}
}

// location is the transfer id a create's Location names.
func location(t *testing.T, res *http.Response) string {
	t.Helper()
	loc := res.Header.Get("Location")
	id := loc[strings.LastIndex(loc, "/")+1:]
	if !orchestrator.ValidID(id) {
		t.Fatalf("Location %q", loc)
	}
	return id
}

// revokedAfterUses authenticates key for its first uses requests, then
// never again (a tenants-file reload that withdrew it).
type revokedAfterUses struct {
	ks   *api.KeySet
	key  string
	uses int
	mu   sync.Mutex
}

func (a *revokedAfterUses) Authenticate(presented string) (api.Key, bool) {
	if presented == a.key {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.uses == 0 {
			return api.Key{}, false
		}
		a.uses--
	}
	return a.ks.Authenticate(presented)
}

func revokedServer(t *testing.T, fake *orchestratortest.Fake, key string, uses int) (*httptest.Server, *orchestrator.Engine) {
	t.Helper()
	return revokedServerOn(t, memory.New(), nil, fake, key, uses)
}

// revokedServerOn is revokedServer on store, with idem (when not nil) as
// the idempotency store.
func revokedServerOn(t *testing.T, store *memory.Store, idem api.IdempotencyStore, fake *orchestratortest.Fake, key string, uses int) (*httptest.Server, *orchestrator.Engine) {
	t.Helper()
	return keyedServerOn(t, store, idem, fake, &revokedAfterUses{ks: testKeys(t), key: key, uses: uses})
}

// keyedServerOn is revokedServerOn with keys authenticating.
func keyedServerOn(t *testing.T, store *memory.Store, idem api.IdempotencyStore, fake *orchestratortest.Fake, keys api.Authenticator) (*httptest.Server, *orchestrator.Engine) {
	t.Helper()
	if idem == nil {
		idem = store
	}
	reg := prometheus.NewRegistry()
	eng, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		VerifyTimeout: 200 * time.Millisecond, VisibilityWindow: 20 * time.Millisecond}, store, []orchestrator.Provider{fake}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.NewServer(api.Config{OpenAPI: transferd.OpenAPI, Idempotency: idem, Keys: keys, CallbackSigner: testSigner(t)},
		eng, zerolog.Nop(), reg, reg))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = eng.Shutdown(ctx)
	})
	return srv, eng
}

// A create with Prefer: wait whose key is revoked while it waits answers
// with the transfer as it made it (202, pending), not what the wait
// brought, and applies no wait: the create happened, and its answer says
// so, while the revoked key reads nothing of what came after. Found by
// review: only a GET long poll checked the key again.
func TestCreateLongPollWhoseKeyIsRevokedAnswersTheTransferAsMade(t *testing.T) {
	srv, _ := revokedServer(t, orchestratortest.NewFake("netsapiens").SetTarget(orchestratortest.TargetRings), writeKey, 1)
	res := authorized(t, srv, "POST", "/v1/transfers", writeKey, createBody("4300", "manual"), "Prefer", "wait=5")
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted || res.Header.Get("Preference-Applied") != "" || !strings.Contains(string(b), `"state":"pending"`) {
		t.Errorf("a create long poll whose key was revoked while it waited: %d Preference-Applied %q %s,\n"+
			"want 202 with the transfer as made (pending) and no wait applied",
			res.StatusCode, res.Header.Get("Preference-Applied"), b)
	}
}

// The same for a cancel with Prefer: wait: accepted (202), with the
// transfer as the cancel found it, not its end.
func TestCancelLongPollWhoseKeyIsRevokedAnswersAccepted(t *testing.T) {
	srv, _ := revokedServer(t, orchestratortest.NewFake("netsapiens").SetTarget(orchestratortest.TargetRings), writeKey, 2)
	created := authorized(t, srv, "POST", "/v1/transfers", writeKey, createBody("4400", "manual"))
	b, _ := io.ReadAll(created.Body)
	created.Body.Close()
	if created.StatusCode != http.StatusAccepted {
		t.Fatalf("create: %d %s", created.StatusCode, b)
	}
	id := location(t, created)
	res := authorized(t, srv, "POST", "/v1/transfers/"+id+"/cancel", writeKey, "{}", "Prefer", "wait=5")
	b, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted || res.Header.Get("Preference-Applied") != "" || strings.Contains(string(b), `"outcome"`) {
		t.Errorf("a cancel long poll whose key was revoked while it waited: %d Preference-Applied %q ended=%v,\n"+
			"want 202 with the transfer as the cancel found it, not its end",
			res.StatusCode, res.Header.Get("Preference-Applied"), strings.Contains(string(b), `"outcome"`))
	}
}

// waitSeen is an idempotency store that says when a repeat finds its
// key still reserved (it then waits for the first request).
type waitSeen struct {
	*memory.Store
	once    sync.Once
	waiting chan struct{}
}

func (s *waitSeen) ReserveIdempotency(ctx context.Context, rec orchestrator.IdempotencyRecord) (orchestrator.IdempotencyRecord, bool, error) {
	cur, mine, err := s.Store.ReserveIdempotency(ctx, rec)
	if err == nil && !mine && cur.Response == nil {
		s.once.Do(func() { close(s.waiting) })
	}
	return cur, mine, err
}

// A repeat with an Idempotency-Key waits for the first request, holding a
// wait slot as a long poll does; its key revoked meanwhile, it answers 401
// instead of replaying the first request's answer (the repeat itself did
// nothing). Found by review.
func TestIdempotentRepeatWhoseKeyIsRevokedAnswers401(t *testing.T) {
	store := memory.New()
	idem := &waitSeen{Store: store, waiting: make(chan struct{})}
	fake := orchestratortest.NewFake("netsapiens")
	gate := fake.Block(orchestratortest.MethodLocate) // keeps the first request going
	srv, _ := revokedServerOn(t, store, idem, fake, writeKey, 2)
	first := make(chan int, 1)
	go func() {
		res := authorized(t, srv, "POST", "/v1/transfers", writeKey, createBody("4500", "manual"), "Prefer", "wait=5", "Idempotency-Key", "revoked-repeat")
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		first <- res.StatusCode
	}()
	<-gate.Entered()
	repeat := make(chan *http.Response, 1)
	go func() {
		repeat <- authorized(t, srv, "POST", "/v1/transfers", writeKey, createBody("4500", "manual"), "Prefer", "wait=5", "Idempotency-Key", "revoked-repeat")
	}()
	<-idem.waiting // the repeat (the key's last authenticated use) waits
	gate.Release()
	<-first
	res := <-repeat
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("a repeat whose key was revoked while it waited: %d replayed=%q %.120s…,\nwant 401 (as a GET long poll answers)",
			res.StatusCode, res.Header.Get("Idempotent-Replayed"), b)
	}
}

// reserveSeen is a memory idempotency store that says when the first
// request has reserved its key and when a repeat finds it still reserved
// (it then waits), and that runs a hook before a reservation is released.
type reserveSeen struct {
	*memory.Store
	once, onceMine sync.Once
	waiting, mine  chan struct{}
	mu             sync.Mutex
	onDelete       func()
}

func (s *reserveSeen) ReserveIdempotency(ctx context.Context, rec orchestrator.IdempotencyRecord) (orchestrator.IdempotencyRecord, bool, error) {
	cur, mine, err := s.Store.ReserveIdempotency(ctx, rec)
	switch {
	case err == nil && mine:
		s.onceMine.Do(func() { close(s.mine) })
	case err == nil && cur.Response == nil:
		s.once.Do(func() { close(s.waiting) })
	}
	return cur, mine, err
}

func (s *reserveSeen) DeleteIdempotency(ctx context.Context, scope, key string, createdAt time.Time) error {
	s.mu.Lock()
	f := s.onDelete
	s.onDelete = nil
	s.mu.Unlock()
	if f != nil {
		f()
	}
	return s.Store.DeleteIdempotency(ctx, scope, key, createdAt)
}

// repeatAfterARefusedFirst makes the call of user busy with a blocking
// transfer, sends a create with idemKey that is refused (409, not
// remembered) and its repeat, which waits for it; while the repeat waits
// the blocking transfer ends (the client cancelled it through another
// key, say). It returns the repeat's answer and body, and the tenant's
// transfers after it.
func repeatAfterARefusedFirst(t *testing.T, srv *httptest.Server, eng *orchestrator.Engine, idem *reserveSeen, user, idemKey string) (*http.Response, []byte, []*orchestrator.Transfer) {
	t.Helper()
	tctx := orchestrator.WithTenant(context.Background(), "default")

	blocking := authorized(t, srv, "POST", "/v1/transfers", writeKey, createBody(user, "manual"))
	io.Copy(io.Discard, blocking.Body)
	blocking.Body.Close()
	if blocking.StatusCode != http.StatusAccepted {
		t.Fatalf("blocking create: %d", blocking.StatusCode)
	}
	blockingID := location(t, blocking)
	ctx, cancel := context.WithTimeout(tctx, 20*time.Second)
	defer cancel()
	if _, err := eng.Wait(ctx, blockingID, func(x *orchestrator.Transfer) bool { return x.State == orchestrator.StateConsulting }); err != nil {
		t.Fatal(err)
	}

	// The first request is refused (409, not remembered); before its
	// reservation is released the repeat waits, and the blocking transfer
	// ends (the client cancelled it through another key, say).
	idem.mu.Lock()
	idem.onDelete = func() {
		<-idem.waiting
		if _, err := eng.Cancel(tctx, blockingID); err != nil {
			t.Errorf("cancel the blocking transfer: %v", err)
		}
		if _, err := eng.Wait(ctx, blockingID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() }); err != nil {
			t.Errorf("wait for the blocking transfer: %v", err)
		}
	}
	idem.mu.Unlock()
	first := make(chan int, 1)
	go func() {
		res := authorized(t, srv, "POST", "/v1/transfers", writeKey, createBody(user, "manual"), "Idempotency-Key", idemKey)
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		first <- res.StatusCode
	}()
	<-idem.mine // the first request holds the key: the other is its repeat
	repeat := make(chan *http.Response, 1)
	go func() {
		repeat <- authorized(t, srv, "POST", "/v1/transfers", writeKey, createBody(user, "manual"), "Idempotency-Key", idemKey)
	}()
	if got := <-first; got != http.StatusConflict {
		t.Fatalf("the first request: %d, want 409 (the call has an active transfer)", got)
	}
	res := <-repeat
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	list, _, err := eng.List(tctx, orchestrator.ListFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	return res, b, list
}

// A repeat with an Idempotency-Key whose key is revoked while it waits
// for the first request does not act with the revoked key. Found by
// review: when the first request ended with an answer that is not
// remembered (here a 409: the call had an active transfer), the waiting
// repeat took the key over and was served as a fresh request, making a
// transfer for a key that no longer authenticated.
func TestIdempotentRepeatWhoseKeyIsRevokedDoesNotAct(t *testing.T) {
	store := memory.New()
	idem := &reserveSeen{Store: store, waiting: make(chan struct{}), mine: make(chan struct{})}
	fake := orchestratortest.NewFake("netsapiens").SetTarget(orchestratortest.TargetRings)
	// Three authenticated uses: the blocking transfer, the first request,
	// the repeat. Every later look at the key finds it revoked.
	srv, eng := revokedServerOn(t, store, idem, fake, writeKey, 3)
	res, b, list := repeatAfterARefusedFirst(t, srv, eng, idem, "4700", "revoked-first-refused")
	if res.StatusCode != http.StatusUnauthorized || len(list) != 1 {
		t.Errorf("a repeat whose key was revoked while it waited: %d %.160s…; the tenant has %d transfers (want 401 and only the blocking one):\n"+
			"the revoked key started a transfer", res.StatusCode, b, len(list))
	}
}

// readAfterUses authenticates key as testKeys does for its first uses
// requests, then with read scope only (a tenants-file reload that made a
// writer's key a reader's).
type readAfterUses struct {
	ks   *api.KeySet
	key  string
	uses int
	mu   sync.Mutex
}

func (a *readAfterUses) Authenticate(presented string) (api.Key, bool) {
	k, ok := a.ks.Authenticate(presented)
	if presented == a.key && ok {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.uses == 0 {
			k.Scope = api.ScopeRead
		} else {
			a.uses--
		}
	}
	return k, ok
}

// A repeat with an Idempotency-Key whose key loses its write scope while
// it waits for the first request does not act either: the key still
// authenticates, for the same tenant, but may no longer write. Found by
// review (sixty-second pass): the check made after the wait asked only
// whether the key still authenticated for its tenant, so the repeat,
// handed the key once the first request was refused (a 409, not
// remembered), started a transfer with a key that could only read.
func TestIdempotentRepeatWhoseKeyMayNoLongerWriteDoesNotAct(t *testing.T) {
	store := memory.New()
	idem := &reserveSeen{Store: store, waiting: make(chan struct{}), mine: make(chan struct{})}
	fake := orchestratortest.NewFake("netsapiens").SetTarget(orchestratortest.TargetRings)
	// Three uses with write scope: the blocking transfer, the first
	// request, the repeat. Every later look finds a reader's key.
	srv, eng := keyedServerOn(t, store, idem, fake, &readAfterUses{ks: testKeys(t), key: writeKey, uses: 3})
	res, b, list := repeatAfterARefusedFirst(t, srv, eng, idem, "4800", "read-only-first-refused")
	if res.StatusCode != http.StatusForbidden || len(list) != 1 {
		t.Errorf("a repeat whose key lost its write scope while it waited: %d %.160s…; the tenant has %d transfers (want 403 and only the blocking one):\n"+
			"a key that may only read started a transfer", res.StatusCode, b, len(list))
	}
	if keyHeld(t, store, "default POST /v1/transfers", "read-only-first-refused") {
		t.Error("the repeat that did not act keeps the Idempotency-Key")
	}
}
