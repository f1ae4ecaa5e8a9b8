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

// revokedAfterUse is an Authenticator whose key revoked authenticates
// once and never again, as if a tenants-file reload withdrew it (the
// answer to a leaked key) right after a request of it began.
type revokedAfterUse struct {
	ks      *api.KeySet
	revoked string
	mu      sync.Mutex
	used    bool
}

func (a *revokedAfterUse) Authenticate(presented string) (api.Key, bool) {
	if presented == a.revoked {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.used {
			return api.Key{}, false
		}
		a.used = true
	}
	return a.ks.Authenticate(presented)
}

// newRevocationServer serves the API with readKey revoked after its first
// use.
func newRevocationServer(t *testing.T, fake *orchestratortest.Fake) (*httptest.Server, *orchestrator.Engine) {
	t.Helper()
	reg := prometheus.NewRegistry()
	store := memory.New()
	eng, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		VerifyTimeout: 200 * time.Millisecond, VisibilityWindow: 20 * time.Millisecond}, store, []orchestrator.Provider{fake}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	keys := &revokedAfterUse{ks: testKeys(t), revoked: readKey}
	srv := httptest.NewServer(api.NewServer(api.Config{OpenAPI: transferd.OpenAPI, Idempotency: store, Keys: keys, CallbackSigner: testSigner(t)},
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
	srv, _ := newRevocationServer(t, orchestratortest.NewFake("netsapiens"))
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
	srv, eng := newRevocationServer(t, orchestratortest.NewFake("netsapiens").SetTarget(orchestratortest.TargetRings))
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
