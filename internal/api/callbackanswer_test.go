package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// elsewhereStore is a store holding, beside its own, a transfer another
// replica drives (elsewhere), whose record never holds a callback's
// note; failing makes every read fail (the database down).
type elsewhereStore struct {
	*stoppingStore
	elsewhere string
	failing   atomic.Bool
}

func (s *elsewhereStore) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	if s.failing.Load() {
		return nil, errors.New("the database is down")
	}
	if id == s.elsewhere {
		return &orchestrator.Transfer{ID: id, State: orchestrator.StateConsulting}, nil
	}
	return s.stoppingStore.Get(ctx, id)
}

// keepEnv is a server whose callbacks' receiver keeps its notes in the
// record (keepingFake), over an engine whose saves a test can hold.
type keepEnv struct {
	srv      *httptest.Server
	signer   *api.CallbackSigner
	store    *elsewhereStore
	stopping chan struct{}
	eng      *orchestrator.Engine
}

func newKeepEnv(t *testing.T, keep time.Duration) *keepEnv {
	t.Helper()
	f := keepingFake{&receivingFake{Fake: orchestratortest.NewFake("bandwidth")}}
	mem := memory.New()
	e := &keepEnv{store: &elsewhereStore{stoppingStore: &stoppingStore{Store: mem}, elsewhere: orchestrator.NewID(time.Now())},
		stopping: make(chan struct{})}
	reg := prometheus.NewRegistry()
	eng, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		VerifyTimeout: 200 * time.Millisecond, VisibilityWindow: 20 * time.Millisecond}, e.store, []orchestrator.Provider{f}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	e.eng = eng
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = eng.Shutdown(ctx)
	})
	e.signer = mustSigner(t, newSecret)
	e.srv = httptest.NewServer(api.NewServer(api.Config{Idempotency: mem, CallbackSigner: e.signer,
		Callbacks: map[string]api.CallbackReceiver{"bandwidth": f}, CallbackKeepTimeout: keep, Stopping: e.stopping},
		eng, zerolog.Nop(), reg, reg))
	t.Cleanup(e.srv.Close)
	return e
}

// post posts a callback about transfer id; the answer's status and its
// Retry-After.
func (e *keepEnv) post(t *testing.T, id, body string) (int, string) {
	t.Helper()
	code, retry, err := e.send(id, body)
	if err != nil {
		t.Fatal(err)
	}
	return code, retry
}

func (e *keepEnv) send(id, body string) (int, string, error) {
	// Bounds a wait that would not end (the test's failure), not a time
	// the answer must come within.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		e.srv.URL+"/callbacks/bandwidth/"+id+"/"+e.signer.Token(api.TokenTransfer, orchestrator.DefaultTenant, id), strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := e.srv.Client().Do(req)
	if err != nil {
		return 0, "", err
	}
	res.Body.Close()
	return res.StatusCode, res.Header.Get("Retry-After"), nil
}

// consulting starts a transfer this replica drives and waits until it
// consults.
func (e *keepEnv) consulting(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := e.eng.Start(ctx, orchestrator.Request{Provider: "bandwidth", Call: orchestrator.CallRef{CallID: "c-caller"},
		Target: "+15550100", Completion: orchestrator.CompletionManual}, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e.eng.Wait(ctx, tr.ID, func(x *orchestrator.Transfer) bool { return x.State == orchestrator.StateConsulting }); err != nil ||
		got.State != orchestrator.StateConsulting {
		t.Fatalf("the transfer is not consulting: %v", err)
	}
	return tr.ID
}

// A callback that tells nothing to keep is answered 204 without waiting
// for a save: one naming no call, even while the saves are held, and one
// about a transfer no store holds. One whose transfer cannot be read
// (the store down) is answered 503 with a Retry-After, for the provider
// to send it again.
func TestACallbackWithNothingToKeepIsAnsweredAtOnce(t *testing.T) {
	e := newKeepEnv(t, 50*time.Millisecond)
	id := e.consulting(t)
	release := e.store.hold()
	t.Cleanup(release)
	if code, _ := e.post(t, id, ""); code != http.StatusNoContent {
		t.Errorf("a callback naming no call, the saves held: %d, want 204", code)
	}
	release()
	if code, _ := e.post(t, orchestrator.NewID(time.Now()), "c-target"); code != http.StatusNoContent {
		t.Errorf("a callback about a transfer no store holds: %d, want 204", code)
	}
	e.store.failing.Store(true)
	if code, retry := e.post(t, orchestrator.NewID(time.Now()), "c-target"); code != http.StatusServiceUnavailable || retry == "" {
		t.Errorf("a callback whose transfer cannot be read: %d, Retry-After %q; want 503 with a Retry-After", code, retry)
	}
}

// A callback's wait ends with the shutdown as a long poll's does: on a
// transfer another replica drives, as the shutdown begins (Stopping),
// answered 503 then, not after its whole wait; on one this replica
// drives, not then (its engine's shutdown saves it), but once the save
// holding the note comes.
func TestACallbacksWaitEndsWithTheShutdown(t *testing.T) {
	// Longer than the test's bound on a post: a wait the shutdown does not
	// end fails the test.
	e := newKeepEnv(t, 10*time.Minute)
	id := e.consulting(t)
	release := e.store.hold()
	t.Cleanup(release)
	close(e.stopping)
	if code, _ := e.post(t, e.store.elsewhere, "c-target"); code != http.StatusServiceUnavailable {
		t.Errorf("a callback about another replica's transfer, the shutdown begun: %d, want 503", code)
	}
	type answer struct {
		code int
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		code, _, err := e.send(id, "c-target")
		answered <- answer{code, err}
	}()
	release()
	if a := <-answered; a.err != nil || a.code != http.StatusNoContent {
		t.Errorf("a callback about a transfer driven here, the shutdown begun: %d %v, want 204 once its note is saved", a.code, a.err)
	}
}
