package webhooks_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// callsStore counts a store's enqueues, numbers its claims in the order
// they start, and reports each claim's number when it returns.
type callsStore struct {
	webhooks.Store
	enqueues, claims atomic.Int64
	claimed          chan int64
}

func (s *callsStore) EnqueueDeliveries(ctx context.Context, endpoint string, from, to int64, ds []webhooks.Delivery) error {
	s.enqueues.Add(1)
	return s.Store.EnqueueDeliveries(ctx, endpoint, from, to, ds)
}

func (s *callsStore) ClaimDeliveries(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Delivery, error) {
	n := s.claims.Add(1)
	ds, err := s.Store.ClaimDeliveries(ctx, owner, now, lease, limit, skip)
	s.claimed <- n
	return ds, err
}

// wake nudges d and returns once a claim that started after the nudge has
// returned. Every scan claims once here (nothing is due beyond what one
// claim takes), and a scan that started before the nudge leaves it for
// the next.
func (s *callsStore) wake(t *testing.T, d *webhooks.Dispatcher) {
	t.Helper()
	base := s.claims.Load()
	d.Nudge()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case n := <-s.claimed:
			if n > base {
				return
			}
		case <-timeout:
			t.Fatal("no claim after the nudge")
		}
	}
}

// TestEnqueueWaitsForItsGap: a wake within EnqueueGap of the last read of
// the outbox (here a nudge, as every save with events sends) claims what
// is due but leaves the outbox alone; the first wake after the gap
// enqueues what came meanwhile. The gap's clock is the test's.
func TestEnqueueWaitsForItsGap(t *testing.T) {
	s := memory.New()
	st := &callsStore{Store: memory.NewDeliveries(s), claimed: make(chan int64, 1<<10)}
	rc, srv := newReceiver(t)
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	seed(t, s, "acme", 0, 1, 1)
	d, _ := newDispatcher(t, st, endpoint(srv.URL), webhooks.Config{Owner: "a", ScanInterval: time.Hour, EnqueueGap: time.Minute},
		func(d *webhooks.Dispatcher) { webhooks.SetGapClock(d, now) })
	rc.waitN(t, 1) // the first scan enqueued it
	if n := st.enqueues.Load(); n != 1 {
		t.Fatalf("%d enqueues for the first scan, want 1", n)
	}
	// Within the gap: scans that started after the event was saved
	// claim, and no enqueue is made since the first. (The first wake may
	// come from a scan that began before the save; the second's began
	// after the first's claim returned.)
	seed(t, s, "acme", 1, 1, 1)
	st.wake(t, d)
	st.wake(t, d)
	if n := st.enqueues.Load(); n != 1 {
		t.Fatalf("%d enqueues within the gap, want 1", n)
	}
	if got := len(rc.hits()); got != 1 {
		t.Fatalf("%d deliveries within the gap, want 1", got)
	}
	// After it: the next wake enqueues, and the event goes out.
	mu.Lock()
	clock = clock.Add(time.Minute)
	mu.Unlock()
	st.wake(t, d)
	rc.waitN(t, 2)
	if n := st.enqueues.Load(); n != 2 {
		t.Fatalf("%d enqueues after the gap, want 2", n)
	}
}
