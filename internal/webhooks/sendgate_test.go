package webhooks_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// stoppedInClaim is a store whose first claim that takes a delivery
// returns after the process's clock moved by stall: the replica stopped
// in the claim's round trip to the store (SIGSTOP, a VM paused), its
// lease running meanwhile.
type stoppedInClaim struct {
	webhooks.Store
	stall time.Duration
	once  atomic.Bool
	mu    sync.Mutex
	clock time.Time
}

func (s *stoppedInClaim) now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clock
}

func (s *stoppedInClaim) stop(ds []webhooks.Delivery) {
	if len(ds) > 0 && s.once.CompareAndSwap(false, true) {
		s.mu.Lock()
		s.clock = s.clock.Add(s.stall)
		s.mu.Unlock()
	}
}

func (s *stoppedInClaim) SettleDeliveries(ctx context.Context, results []webhooks.Delivery, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Finished, []webhooks.Delivery, error) {
	vs, ds, err := s.Store.SettleDeliveries(ctx, results, owner, now, lease, limit, skip)
	s.stop(ds)
	return vs, ds, err
}

func (s *stoppedInClaim) ClaimDeliveries(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Delivery, error) {
	ds, err := s.Store.ClaimDeliveries(ctx, owner, now, lease, limit, skip)
	s.stop(ds)
	return ds, err
}

// TestAnAttemptIsNotSentOnceItsClaimRanOut: a replica that stopped
// between claiming a delivery and sending it, until its lease had all
// but run out, sends nothing of it when it wakes: another replica may
// have sent it and the transfer's later events meanwhile, and it would
// arrive again after them. The attempt is recorded as failed and made
// again (sent, this time). One that woke just within its claim sends.
// Both through Run (a claim that stores results) and through Drain (the
// shutdown's claims).
func TestAnAttemptIsNotSentOnceItsClaimRanOut(t *testing.T) {
	const timeout = 2 * time.Second
	sendable := timeout + timeout/2 // the lease but its last second
	for _, c := range []struct {
		name  string
		drain bool
		stall time.Duration
		sent  bool
	}{
		{"run, woke within the claim", false, sendable - time.Millisecond, true},
		{"run, woke after it", false, sendable, false},
		{"drain, woke within the claim", true, sendable - time.Millisecond, true},
		{"drain, woke after it", true, sendable, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := memory.New()
			st := &stoppedInClaim{Store: memory.NewDeliveries(s), stall: c.stall, clock: time.Now()}
			rc, srv := newReceiver(t)
			seed(t, s, "acme", 0, 1, 1)
			cfg := webhooks.Config{Owner: "a", Timeout: timeout, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
			if c.drain {
				// Drain claims until nothing is due: a retry due at
				// once would be made in the same Drain.
				cfg.MinBackoff, cfg.MaxBackoff = time.Hour, time.Hour
			}
			var first webhooks.Delivery
			if c.drain {
				d := webhooks.New(cfg, st, endpoint(srv.URL), render, zerolog.Nop(), prometheus.NewRegistry())
				webhooks.SetMonoClock(d, st.now)
				var once sync.Once
				webhooks.OnFinish(d, func(dl webhooks.Delivery) { once.Do(func() { first = dl }) })
				if err := d.Drain(context.Background()); err != nil {
					t.Fatal(err)
				}
			} else {
				_, w := newDispatcher(t, st, endpoint(srv.URL), cfg, func(d *webhooks.Dispatcher) { webhooks.SetMonoClock(d, st.now) })
				first = <-w.ch
			}
			reached := 0
			rc.mu.Lock()
			for _, n := range rc.seen {
				reached += n
			}
			rc.mu.Unlock()
			if c.sent {
				if first.Status != webhooks.StatusDelivered || reached != 1 {
					t.Fatalf("the attempt is %s (%q) and %d reached the endpoint, want it delivered", first.Status, first.LastError, reached)
				}
				return
			}
			if first.Status != webhooks.StatusPending || !strings.Contains(first.LastError, "not sent") {
				t.Fatalf("the stale attempt is recorded %s (%q), want pending: not sent", first.Status, first.LastError)
			}
			if c.drain {
				// Drain made no more attempt: its retry is not due for
				// an hour.
				if reached != 0 {
					t.Fatalf("%d attempts reached the endpoint, want none", reached)
				}
				return
			}
			// Run makes it again once its back-off has passed: the
			// first attempt to reach the endpoint is that one.
			rc.waitN(t, 1)
			rc.mu.Lock()
			defer rc.mu.Unlock()
			if n := rc.seen[first.EventID]; n != 1 {
				t.Errorf("the endpoint got the delivery %d times, want once: the stale attempt sent nothing", n)
			}
		})
	}
}
