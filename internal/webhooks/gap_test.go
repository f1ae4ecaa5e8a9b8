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

// callsStore counts a store's enqueues, numbers its claims (the
// dispatcher's SettleDeliveries with a limit) in the order they start,
// and reports each claim's number when it returns.
type callsStore struct {
	webhooks.Store
	enqueues, claims atomic.Int64
	claimed          chan int64
}

func (s *callsStore) EnqueueDeliveries(ctx context.Context, endpoint string, from, to int64, ds []webhooks.Delivery) error {
	s.enqueues.Add(1)
	return s.Store.EnqueueDeliveries(ctx, endpoint, from, to, ds)
}

func (s *callsStore) SettleDeliveries(ctx context.Context, results []webhooks.Delivery, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Finished, []webhooks.Delivery, error) {
	if limit == 0 {
		return s.Store.SettleDeliveries(ctx, results, owner, now, lease, limit, skip)
	}
	n := s.claims.Add(1)
	vs, ds, err := s.Store.SettleDeliveries(ctx, results, owner, now, lease, limit, skip)
	s.claimed <- n
	return vs, ds, err
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
		func(d *webhooks.Dispatcher) { webhooks.SetMonoClock(d, now) })
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

// TestNoClaimWhileEveryEndpointIsAtItsShare: while the only endpoint has
// all the attempts it may have in flight, a scan (every save nudges one)
// makes no claim, which could take nothing; once the attempt ends the
// next delivery is claimed and sent.
func TestNoClaimWhileEveryEndpointIsAtItsShare(t *testing.T) {
	s := memory.New()
	st := &callsStore{Store: memory.NewDeliveries(s), claimed: make(chan int64, 1<<10)}
	srv, entered, release, got := holdFirst(t)
	defer close(release)
	seed(t, s, "acme", 0, 2, 1) // two transfers: two deliveries due at once
	scans := make(chan int64, 1<<10)
	d, w := newDispatcher(t, st, endpoint(srv.URL), webhooks.Config{Owner: "a", ScanInterval: time.Hour, Concurrency: 4, EndpointConcurrency: 1},
		func(d *webhooks.Dispatcher) { webhooks.OnScan(d, func() { scans <- st.claims.Load() }) })
	<-entered
	// The scan after one that ended after the attempt began runs with the
	// endpoint at its share.
	scanned := func() int64 {
		t.Helper()
		d.Nudge()
		select {
		case n := <-scans:
			return n
		case <-time.After(30 * time.Second):
			t.Fatal("no scan after a nudge")
			return 0
		}
	}
	scanned()
	before := scanned()
	after := scanned()
	if after != before {
		t.Fatalf("%d claims while the only endpoint was at its share", after-before)
	}
	release <- struct{}{}
	for got.Load() < 2 {
		select {
		case <-w.ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("%d deliveries arrived, want 2", got.Load())
		}
	}
}
