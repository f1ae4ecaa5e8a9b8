package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// notSavedStore fails its first Create as a store does that knows it
// saved nothing (ErrNotSaved: the SQLite store, once the create's writes
// were taken back and its batch committed), and counts the reads of each
// transfer.
type notSavedStore struct {
	*memory.Store
	failed atomic.Bool
	gets   atomic.Int32
}

func (s *notSavedStore) Create(ctx context.Context, t *orchestrator.Transfer) error {
	if !s.failed.Swap(true) {
		return orchestrator.E("test.Create", orchestrator.KindUnavailable,
			fmt.Errorf("%w: %w", orchestrator.ErrNotSaved, errors.New("database or disk is full")))
	}
	return s.Store.Create(ctx, t)
}

func (s *notSavedStore) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	s.gets.Add(1)
	return s.Store.Get(ctx, id)
}

// A create the store failed to save, and knows it did not, answers 503
// saying so and frees its key; the engine does not read the transfer back
// as it does after a failure that leaves the save unknown (which answered
// a 500, and looked for the transfer for two minutes).
func TestCreateNotSavedAnswers503(t *testing.T) {
	store := &notSavedStore{Store: memory.New()}
	inst := newInstance(t, store, orchestratortest.NewFake("netsapiens"))
	url := inst.srv.URL + "/v1/transfers"
	r := post(t, url, "key-full", manualBody)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "nothing was saved") {
		t.Fatalf("the failed create: %d %s; want 503 saying nothing was saved", r.status, r.body)
	}
	if n := store.gets.Load(); n != 0 {
		t.Errorf("%d reads of a transfer after a create known not saved; want none", n)
	}
	retry := post(t, url, "key-full", manualBody)
	if retry.status != http.StatusAccepted || retry.replayed != "" {
		t.Errorf("the retry: %d (replayed %q) %s; want 202 served afresh", retry.status, retry.replayed, retry.body)
	}
}
