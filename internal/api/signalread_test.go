package api_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// failNextGet fails the next Get once armed, as a store whose connection
// the database ended (a restart, a failover): an error of no kind.
type failNextGet struct {
	*memory.Store
	armed atomic.Bool
}

func (s *failNextGet) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	if s.armed.Swap(false) {
		return nil, errors.New("postgres: get " + id + ": FATAL: terminating connection due to administrator command (SQLSTATE 57P01)")
	}
	return s.Store.Get(ctx, id)
}

// A /complete sent, during a failover of the database, to a replica that
// does not drive the transfer was a 500 "internal error" when its read
// of the transfer failed: nothing was recorded, and nothing told the
// client to retry. It is a 503 saying the action was not recorded, and
// the retry with the same Idempotency-Key is recorded.
func TestACompleteWhoseTransferCouldNotBeReadAnswers503(t *testing.T) {
	ctx := context.Background()
	store := &failNextGet{Store: memory.New()}
	inst := newInstance(t, store, orchestratortest.NewFake("netsapiens"))
	now := time.Now()
	if _, err := store.Heartbeat(ctx, "elsewhere", "", now, time.Hour, false); err != nil {
		t.Fatal(err)
	}
	tr := &orchestrator.Transfer{ID: orchestrator.NewID(now), Tenant: orchestrator.DefaultTenant,
		Request: orchestrator.Request{Provider: "netsapiens", Mode: orchestrator.ModeAttended, Completion: orchestrator.CompletionManual,
			Call: orchestrator.CallRef{Domain: "example", User: "1000"}, Target: "1010"},
		State: orchestrator.StateConsulting, Answered: true, Owner: "elsewhere", CreatedAt: now, UpdatedAt: now}
	if err := store.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	url := inst.srv.URL + "/v1/transfers/" + tr.ID + "/complete"

	store.armed.Store(true)
	first := post(t, url, "key-complete", "")
	wantProblem(t, "the complete", first, http.StatusServiceUnavailable, "unavailable", "the action was not recorded")
	if sig, err := store.PeekSignal(ctx, tr.ID); err != nil || sig != orchestrator.SignalNone {
		t.Fatalf("pending signal %q (%v) after the failed complete; want none", sig, err)
	}
	retry := post(t, url, "key-complete", "")
	if retry.status != http.StatusAccepted || retry.replayed != "" {
		t.Fatalf("the retry: %d (replayed %q) %s; want 202 served", retry.status, retry.replayed, retry.body)
	}
	if sig, err := store.PeekSignal(ctx, tr.ID); err != nil || sig != orchestrator.SignalComplete {
		t.Fatalf("pending signal %q (%v) after the retry; want complete", sig, err)
	}
}
