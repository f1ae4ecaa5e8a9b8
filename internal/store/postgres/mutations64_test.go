package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
	"github.com/transferd/transferd/internal/store/storetest"
)

// A create whose batch was written whole and whose answer then timed out
// may have been committed: its verdict leaves it unknown, never
// ErrNotSaved. Only a failure before anything was sent (pgconn.SafeToRetry)
// proves nothing was saved; a timeout proves nothing of the kind, and a
// create answered "not saved" that the server committed would leave a
// transfer holding its call, and possibly its caller, that its client was
// told never existed. Found by mutation (sixty-fourth pass): taking
// pgconn.Timeout for "sent nothing" failed no test, FaultAfter closing the
// connection (an EOF, not a timeout).
func TestBatchWhoseAnswerTimesOutIsUnknown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, fault := openFaulty(t)
	ids := batchIDs{at: time.Date(2026, 12, 7, 11, 0, 0, 0, time.UTC)}

	fault.Arm(postgres.FaultAfterTimeout)
	lost := ids.transfer("1000")
	err := s.Create(ctx, lost)
	if !pgconn.Timeout(err) {
		t.Fatalf("Create whose answer timed out = %v; want the timeout (the fault did not act as meant)", err)
	}
	if err == nil || errors.Is(err, orchestrator.ErrNotSaved) || !orchestrator.Uncertain(err) {
		t.Errorf("Create whose answer timed out = %v (kind %v), want an error that leaves it unknown", err, orchestrator.KindOf(err))
	}
	// The store goes on: the next batch gets a connection of its own.
	createAll(t, s, ids.transfer("1001"))
}

func TestSupersededOnceTheTakerStopped(t *testing.T) {
	baseURL(t)
	storetest.RunSupersededOnceTheTakerStopped(t, func(t *testing.T) orchestrator.Store { return open(t) })
}

func TestPurgeTakesTheKeyOfAKeptEndedTransfer(t *testing.T) {
	baseURL(t)
	storetest.RunPurgeTakesTheKeyOfAKeptEndedTransfer(t, func(t *testing.T) orchestrator.Store { return open(t) })
}
