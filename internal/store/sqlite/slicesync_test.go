package sqlite_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/sqlite"
	"github.com/transferd/transferd/internal/webhooks"
)

// tripCtx is a context that is cancelled at a deterministic point: when
// the driver (modernc stmt.exec) starts its n-th statement, as a purge's
// context cancelled by a shutdown may be at any moment.
type tripCtx struct {
	context.Context
	mu      sync.Mutex
	execs   int
	n       int
	tripped bool
}

var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *tripCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.tripped {
		pcs := make([]uintptr, 4)
		n := runtime.Callers(2, pcs)
		frames := runtime.CallersFrames(pcs[:n])
		if f, _ := frames.Next(); strings.HasSuffix(f.Function, "sqlite.(*stmt).exec") {
			c.execs++
			c.tripped = c.execs >= c.n
		}
	}
	if c.tripped {
		return closedCh
	}
	return c.Context.Done() // never closed
}

func (c *tripCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tripped {
		return context.Canceled
	}
	return nil
}

// A purge slice whose context ends between its two pragmas (a shutdown
// cancels the purger at any moment) leaves the writer's connection at
// synchronous FULL. sliceTx set NORMAL, then wal_autocheckpoint, and
// deferred the restore only after both: returned early, the connection
// went back to the pool at NORMAL, and every later transfer save
// committed without an fsync (found by review), what synchronous=FULL
// exists to prevent: an intent lost in a power cut after its provider
// call was made. The trip point is the driver's statement execution
// (modernc's stmt.exec); the test says so if a driver upgrade moves it.
func TestPurgeCancelledBetweenItsPragmasLeavesSavesSynced(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := &tripCtx{Context: context.Background(), n: 2} // the 2nd statement: wal_autocheckpoint
	if _, err := s.PurgeDeliveries(ctx, time.Now(), 10); err == nil {
		t.Fatal("the purge whose context ended succeeded; the trip point missed")
	}
	if n, err := sqlite.WriterPragma(context.Background(), s, "synchronous"); err != nil || n != 2 {
		t.Fatalf("after a purge cancelled between its pragmas, the writer's synchronous = %d (%v), want 2 (FULL): "+
			"every later transfer save commits without an fsync", n, err)
	}
}

// The same for webhook delivery's unsynced transactions (beginUnsynced):
// whichever of their statements their context ends at, the writer's
// connection serves the next save at FULL.
func TestDeliveryWriteCancelledAnywhereLeavesSavesSynced(t *testing.T) {
	s := open(t, t.TempDir())
	now := time.Now().UTC()
	key := webhooks.EndpointKey("acme", "crm")
	for n := 1; n <= 12; n++ {
		ev := fmt.Sprint("evt_", n)
		d := webhooks.Delivery{ID: webhooks.DeliveryID(key, ev), Tenant: "acme", Endpoint: "crm", EventID: ev, TransferID: fmt.Sprint("tr_", n),
			Seq: 1, Pos: int64(n), Type: orchestrator.EventStateChanged, Payload: []byte(`{}`), Status: webhooks.StatusPending,
			NextAttempt: now, Deadline: now.Add(time.Hour), CreatedAt: now}
		cursor, err := s.DeliveryCursor(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		_ = s.EnqueueDeliveries(&tripCtx{Context: context.Background(), n: n}, key, cursor, int64(n), []webhooks.Delivery{d})
		_, _ = s.ClaimDeliveries(&tripCtx{Context: context.Background(), n: n}, "r1", now, time.Minute, 10, nil)
		if got, err := sqlite.WriterPragma(context.Background(), s, "synchronous"); err != nil || got != 2 {
			t.Fatalf("after an enqueue and a claim whose context ended at their statement %d, the writer's synchronous = %d (%v), want 2 (FULL)", n, got, err)
		}
	}
}
