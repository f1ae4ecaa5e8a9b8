package api_test

import (
	"context"
	"fmt"
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

// stuckStore's lists wait for their context while stuck is set, as a
// database that does not answer does (PostgreSQL's driver gives up when
// the context ends), and then fail as that driver does.
type stuckStore struct {
	*memory.Store
	stuck atomic.Bool
}

func (s *stuckStore) List(ctx context.Context, f orchestrator.ListFilter) ([]*orchestrator.Transfer, bool, error) {
	if s.stuck.Load() {
		<-ctx.Done()
		return nil, false, fmt.Errorf("postgres: list transfers: %w", ctx.Err())
	}
	return s.Store.List(ctx, f)
}

// The reservation of an Idempotency-Key counts on a create reaching its
// save within a bound (startBudget): past ReservationTimeout the key is
// settled, and a create still in flight could then start a second
// transfer for one key. The create's checks before the save (here the
// in-flight limit's list of open transfers) waited on the store with no
// deadline, the client's own included (the create goes on without it).
// Now a store that does not answer in time gets a 503 that says so, not a
// 500, nothing is saved, and the key is free for the retry.
func TestCreateWhoseStoreDoesNotAnswerEndsWithinItsBudget(t *testing.T) {
	defer api.SetStartTimeout(200 * time.Millisecond)()
	store := &stuckStore{Store: memory.New()}
	eng, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond},
		store, []orchestrator.Provider{orchestratortest.NewFake("netsapiens")}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Shutdown(context.Background()) })
	reg := prometheus.NewRegistry()
	hs := httptest.NewServer(api.NewServer(api.Config{OpenAPI: transferd.OpenAPI, Idempotency: store,
		Limits: api.Limits{MaxInFlight: 10}}, eng, zerolog.Nop(), reg, reg))
	t.Cleanup(hs.Close)
	srv := hs.URL

	store.stuck.Store(true)
	r := post(t, srv+"/v1/transfers", "key-stuck", manualBody)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "did not answer within 200ms") {
		t.Fatalf("create with a stuck store: %d %s; want 503 saying the store did not answer in time", r.status, r.body)
	}
	store.stuck.Store(false)
	ts, _, err := eng.List(context.Background(), orchestrator.ListFilter{})
	if err != nil || len(ts) != 0 {
		t.Fatalf("transfers %v (%v); want none", ts, err)
	}
	if r := post(t, srv+"/v1/transfers", "key-stuck", manualBody); r.status != http.StatusAccepted || r.replayed != "" {
		t.Fatalf("retry with the same key: %d (replayed %q) %s; want 202 served afresh", r.status, r.replayed, r.body)
	}
}
