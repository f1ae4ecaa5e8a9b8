package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
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

// TestARepeatWaitingAtShutdownIsToldToRetry: a repeat with an
// Idempotency-Key that waits for the request it repeats (served on
// another replica, or still waiting here) is told to retry (409
// idempotency-in-progress, Retry-After) as the replica's shutdown begins
// (Config.Stopping), as a long poll on another replica's transfer
// answers then. It waited on, up to 65 s for the first's answer: the
// servers' Shutdown waited for it for the whole TRANSFERD_SHUTDOWN_TIMEOUT
// and then cut it, with no answer, and a retry of a create, /complete or
// /cancel was left not knowing what became of its request. Told to
// retry, its client's next try reaches a replica that serves on.
func TestARepeatWaitingAtShutdownIsToldToRetry(t *testing.T) {
	store := &heldStore{Store: memory.New(), recording: make(chan struct{}), release: make(chan struct{}), refused: make(chan time.Time, 64)}
	fake := orchestratortest.NewFake("netsapiens")
	eng, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		VisibilityWindow: 20 * time.Millisecond}, store, []orchestrator.Provider{fake}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	stopping, closing := make(chan struct{}), make(chan struct{})
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(api.NewServer(api.Config{OpenAPI: transferd.OpenAPI, Idempotency: store,
		Stopping: stopping, Closing: closing}, eng, zerolog.Nop(), reg, reg))
	released := false
	t.Cleanup(func() {
		if !released {
			close(store.release)
		}
		srv.CloseClientConnections()
		srv.Close()
		_ = eng.Shutdown(context.Background())
	})
	send := func() <-chan keyedAnswer { return sendKeyed(srv.URL+"/v1/transfers", "dup-at-stop") }

	// The first request is served; the recording of its answer is held,
	// so that its key stays reserved: still being served.
	first := send()
	select {
	case <-store.recording:
	case a := <-first:
		t.Fatalf("the first request ended before its answer was recorded: %+v", a)
	}
	dup := send()
	<-store.refused // the repeat waits for it
	close(stopping)
	var a keyedAnswer
	select {
	case a = <-dup:
	case <-time.After(20 * time.Second): // a guard: the repeat waits 65 s
		t.Fatal("the repeat still waits after the shutdown began")
	}
	if a.err != nil {
		t.Fatalf("the repeat got no answer: %v", a.err)
	}
	var p struct{ Type string }
	_ = json.Unmarshal([]byte(a.body), &p)
	if a.res.StatusCode != http.StatusConflict || !strings.HasSuffix(p.Type, "#idempotency-in-progress") || a.res.Header.Get("Retry-After") == "" {
		t.Errorf("the repeat: %d, Retry-After %q, %s; want 409 idempotency-in-progress with Retry-After",
			a.res.StatusCode, a.res.Header.Get("Retry-After"), a.body)
	}
	// The first is answered as it would have been.
	close(store.release)
	released = true
	if f := <-first; f.err != nil || f.res.StatusCode != http.StatusAccepted {
		t.Errorf("the first request: %+v; want its 202", f)
	}
}
