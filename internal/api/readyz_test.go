package api_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd"
	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// brokenStore fails every update as SQLite does on a bad disk, with an
// error that names the transfer and the database file. retried is closed
// at the second update: the engine tries a save again only after it has
// recorded the first failure.
type brokenStore struct {
	*memory.Store
	calls   atomic.Int32
	retried chan struct{}
}

func (s *brokenStore) Update(_ context.Context, t *orchestrator.Transfer) error {
	if s.calls.Add(1) == 2 {
		close(s.retried)
	}
	return orchestrator.E("sqlite: update "+t.ID, orchestrator.KindUnavailable,
		errors.New("disk I/O error: /var/lib/transferd/transferd.db"))
}

// /readyz needs no credentials: while the store cannot save, it says so,
// and nothing of the store's own error (another tenant's transfer id, a
// file path), which goes to the log instead.
func TestReadyzDetailNamesNoTransferNorFile(t *testing.T) {
	store := &brokenStore{Store: memory.New(), retried: make(chan struct{})}
	reg := prometheus.NewRegistry()
	fake := orchestratortest.NewFake("netsapiens")
	eng, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond},
		store, []orchestrator.Provider{fake}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Nothing can be saved: do not wait out the shutdown's patience.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = eng.Shutdown(ctx)
	})
	var logs strings.Builder
	srv := httptest.NewServer(api.NewServer(api.Config{OpenAPI: transferd.OpenAPI, Idempotency: store},
		eng, zerolog.New(&logs), reg, reg))
	t.Cleanup(srv.Close)

	tr, err := eng.Start(context.Background(), orchestrator.Request{Provider: "netsapiens",
		Call: orchestrator.CallRef{Domain: "acme.example", User: "1000"}, Target: "1010"}, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-store.retried:
	case <-time.After(10 * time.Second):
		t.Fatal("the engine never tried a failed save again")
	}
	res, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "the store cannot save transfers") {
		t.Fatalf("/readyz: %d %s; want 503 saying the store cannot save", res.StatusCode, body)
	}
	for _, leak := range []string{tr.ID, "/var/lib", "disk I/O"} {
		if strings.Contains(string(body), leak) {
			t.Errorf("/readyz answers %s, which names %q", body, leak)
		}
	}
	if !strings.Contains(logs.String(), "disk I/O error") {
		t.Errorf("the log does not keep the store's error: %s", logs.String())
	}
}
