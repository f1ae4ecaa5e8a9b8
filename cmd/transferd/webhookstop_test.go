package main

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// TestWebhookStopBoundedByShutdownContext: runWebhooks' stop is
// documented as "bounded by ctx (the shutdown timeout)". With an attempt
// in flight to an endpoint that never answers, stop(ctx) with a context
// that is already done must return at once. It waited instead for the
// attempt's own Timeout (10 s by default, here a minute), so the process
// overran TRANSFERD_SHUTDOWN_TIMEOUT by up to the attempt timeout, close
// to the pod's grace period.
func TestWebhookStopBoundedByShutdownContext(t *testing.T) {
	entered := make(chan struct{}, 4)
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	}))
	defer hung.Close()
	defer close(release)

	s := memory.New()
	tr := &orchestrator.Transfer{ID: "tr_0000000000000000000000000001", Tenant: orchestrator.DefaultTenant,
		State: orchestrator.StatePending, CreatedAt: time.Now(), UpdatedAt: time.Now(),
		Request: orchestrator.Request{Provider: "fake", Call: orchestrator.CallRef{Domain: "d", User: "1"}}}
	tr.Outbox = []orchestrator.Event{{ID: "evt_1_1", Tenant: tr.Tenant, TransferID: tr.ID, Seq: 1,
		Type: orchestrator.EventCreated, At: time.Now()}}
	if err := s.Create(context.Background(), tr); err != nil {
		t.Fatal(err)
	}
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("old-secret-of-thirty-two-bytes!!"))
	dir := webhooks.Static{orchestrator.DefaultTenant: {{ID: "default", URL: hung.URL, Secrets: []string{secret}}}}
	d := webhooks.New(webhooks.Config{Timeout: time.Minute, ScanInterval: time.Millisecond}, memory.NewDeliveries(s), dir,
		func(orchestrator.Event) ([]byte, error) { return []byte(`{}`), nil }, zerolog.Nop(), prometheus.NewRegistry())
	stop := runWebhooks(d, zerolog.Nop())
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the attempt never reached the endpoint")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the shutdown timeout has already run out
	returned := make(chan struct{})
	go func() { stop(ctx); close(returned) }()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Fatal("stop(ctx) with a done ctx is still waiting for the in-flight attempt after 10 s: " +
			"the shutdown timeout does not bound it")
	}
}
