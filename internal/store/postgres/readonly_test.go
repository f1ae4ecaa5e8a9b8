package postgres_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
)

// TestReadOnlyServerIsNotKept: a connection made to a read-only server (a
// hot standby: the demoted primary a host name still points at during a
// failover, or the first of several hosts in the URL) is refused, so that
// the pool connects again, and reaches the primary once the name does.
// Found by review: the pool kept such a connection like any other, and
// every save on it failed (read-only transaction, 25006) until the pool
// retired it, up to pool_max_conn_lifetime (an hour) later; the
// replica's heartbeat ran out meanwhile, and it made no provider request.
func TestReadOnlyServerIsNotKept(t *testing.T) {
	url := inSchema(baseURL(t), newSchema(t, baseURL(t)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var readOnly atomic.Bool
	s, err := postgres.OpenReadOnlyAfter(ctx, url, &readOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ids := batchIDs{at: time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)}
	tr := ids.transfer("1000")
	if err := s.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	tr.Outbox = nil

	// The failover: every connection ends, and the next reaches a standby.
	readOnly.Store(true)
	postgres.ResetPool(s)
	tr.State = orchestrator.StateHolding
	if err := s.Update(ctx, tr); err == nil {
		t.Fatal("a save on a read-only server succeeded")
	}
	// The name points at the new primary: the next save reaches it.
	readOnly.Store(false)
	if err := s.Update(ctx, tr); err != nil {
		t.Fatalf("a save once the primary can be reached again: %v (the pool kept its read-only connection)", err)
	}
	if _, err := s.Heartbeat(ctx, "r1", "token-r1", time.Now(), time.Minute, false); err != nil {
		t.Fatalf("a heartbeat once the primary can be reached again: %v", err)
	}
}

// TestOpenWaitsForAReadOnlyServer: a replica that starts while its
// database's host name points at a standby (a failover) is told that
// waiting may cure it (Unavailable), as it is for a server starting up,
// and tries again; it used to fail at its migrations' first write
// ("cannot execute … in a read-only transaction"), which ended the start
// at once.
func TestOpenWaitsForAReadOnlyServer(t *testing.T) {
	url := withParam(inSchema(baseURL(t), newSchema(t, baseURL(t))), "default_transaction_read_only", "on")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, url)
	if err == nil {
		s.Close()
		t.Fatal("Open of a read-only server succeeded")
	}
	if !postgres.Unavailable(err) {
		t.Errorf("Open of a read-only server: %v; want an error Unavailable reports (waiting may cure it)", err)
	}
}

// A create whose batch found no connection to write it on (the server
// cannot be reached, or refuses every session: a failover) sent nothing,
// so its verdict says that nothing was saved (ErrNotSaved, of kind
// unavailable), as SQLite's for a batch whose transaction could not begin.
// Found by review: it was the connection's error, of no kind, which says
// the save is unknown; through a database restart or a failover every
// create was then looked for in the background for minutes, and its
// client told that the store's answer was lost.
func TestCreateWithoutAConnectionIsNotSaved(t *testing.T) {
	url := inSchema(baseURL(t), newSchema(t, baseURL(t)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var readOnly atomic.Bool
	s, err := postgres.OpenReadOnlyAfter(ctx, url, &readOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ids := batchIDs{at: time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)}
	readOnly.Store(true)
	postgres.ResetPool(s) // every session the batch can get is refused
	tr := ids.transfer("1000")
	err = s.Create(ctx, tr)
	if !errors.Is(err, orchestrator.ErrNotSaved) || orchestrator.KindOf(err) != orchestrator.KindUnavailable {
		t.Errorf("Create without a connection = %v (kind %v), want ErrNotSaved of kind unavailable", err, orchestrator.KindOf(err))
	}
	readOnly.Store(false)
	if _, err := s.Get(ctx, tr.ID); orchestrator.KindOf(err) != orchestrator.KindNotFound {
		t.Errorf("the create without a connection was stored (Get: %v)", err)
	}
}
