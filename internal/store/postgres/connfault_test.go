package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
)

// openFaulty opens a store in a schema of its own, closed with the test,
// whose batches' connections the returned fault fails once armed.
func openFaulty(t *testing.T) (*postgres.Store, *postgres.BatchFault) {
	t.Helper()
	url := inSchema(baseURL(t), newSchema(t, baseURL(t)))
	fault := new(postgres.BatchFault)
	s, err := postgres.OpenFaulty(context.Background(), url, fault)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, fault
}

// A create whose batch's connection fails before anything of the batch
// was written (the driver can tell: pgconn.SafeToRetry) was not saved,
// for certain: its verdict says so (ErrNotSaved, of kind unavailable),
// as for a batch that found no connection. Found by review: it was the
// connection's error, of no kind, which says the save is unknown: the
// engine looked for the transfer in the background for minutes, and its
// client was told that the store's answer was lost. A connection that
// fails once the batch was written leaves the batch unknown, as before:
// the server may have committed it.
func TestBatchWhoseConnectionFailsBeforeWritingIsNotSaved(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, fault := openFaulty(t)
	ids := batchIDs{at: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}

	fault.Arm(postgres.FaultBefore)
	tr := ids.transfer("1000")
	err := s.Create(ctx, tr)
	if !errors.Is(err, orchestrator.ErrNotSaved) || orchestrator.KindOf(err) != orchestrator.KindUnavailable {
		t.Errorf("Create whose connection failed before writing = %v (kind %v), want ErrNotSaved of kind unavailable", err, orchestrator.KindOf(err))
	}
	if _, err := s.Get(ctx, tr.ID); orchestrator.KindOf(err) != orchestrator.KindNotFound {
		t.Errorf("the create whose connection failed before writing was stored (Get: %v)", err)
	}
	// Nor does it hold the call; the next batch gets a connection of its own.
	createAll(t, s, ids.transfer("1000"))

	fault.Arm(postgres.FaultAfter)
	lost := ids.transfer("1001")
	err = s.Create(ctx, lost)
	if err == nil || errors.Is(err, orchestrator.ErrNotSaved) || !orchestrator.Uncertain(err) {
		t.Errorf("Create whose connection failed once written = %v (kind %v), want an error that leaves it unknown", err, orchestrator.KindOf(err))
	}
}

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
