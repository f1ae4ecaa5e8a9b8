package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// stuckStore's creates wait for their context while stuck is set, as a
// database that does not answer does, and then fail as PostgreSQL's driver
// does.
type stuckStore struct {
	*memory.Store
	stuck atomic.Bool
}

func (s *stuckStore) Create(ctx context.Context, t *orchestrator.Transfer) error {
	if s.stuck.Load() {
		<-ctx.Done()
		return fmt.Errorf("postgres: create %s: %w", t.ID, ctx.Err())
	}
	return s.Store.Create(ctx, t)
}

// The reservation of an Idempotency-Key counts on a create saving its
// transfer within a bound (startBudget): past ReservationTimeout the key
// is settled, and a create still in flight then could start a second
// transfer for one key. The create used to wait on the store without any
// deadline. Now a store that does not answer in time gets a 503 that says
// so (not a 500), which frees the key for the retry.
func TestCreateWhoseStoreDoesNotAnswerEndsWithinItsBudget(t *testing.T) {
	defer api.SetStartTimeout(200 * time.Millisecond)()
	store := &stuckStore{Store: memory.New()}
	in := newInstance(t, store, orchestratortest.NewFake("netsapiens"))
	store.stuck.Store(true)
	r := post(t, in.srv.URL+"/v1/transfers", "key-stuck", manualBody)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "did not save the transfer within 200ms") {
		t.Fatalf("create with a stuck store: %d %s; want 503 saying the store did not save in time", r.status, r.body)
	}
	ts, _, err := in.eng.List(context.Background(), orchestrator.ListFilter{})
	if err != nil || len(ts) != 0 {
		t.Fatalf("transfers %v (%v); want none", ts, err)
	}
	store.stuck.Store(false)
	if r := post(t, in.srv.URL+"/v1/transfers", "key-stuck", manualBody); r.status != http.StatusAccepted || r.replayed != "" {
		t.Fatalf("retry with the same key: %d (replayed %q) %s; want 202 served afresh", r.status, r.replayed, r.body)
	}
}
