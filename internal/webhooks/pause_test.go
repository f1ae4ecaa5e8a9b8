package webhooks_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// A receiver that answers 429 (or 503) with a Retry-After asks to be left
// alone for that long, not only about the delivery that got the answer:
// every other transfer's delivery to it was still sent, each to be told
// the same (found by the webhooks review, fiftieth pass). Its endpoint is
// now skipped by this replica's claims until the pause is over, while the
// tenant's other endpoint goes on; then its deliveries go again.
func TestAnEndpointThatAsksToWaitIsLeftAloneMeanwhile(t *testing.T) {
	for _, code := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			s := memory.New()
			st := memory.NewDeliveries(s)
			var busy atomic.Int32
			crm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				busy.Add(1)
				w.Header().Set("Retry-After", "60")
				w.WriteHeader(code)
			}))
			t.Cleanup(crm.Close)
			_, ops := newReceiver(t)
			dir := webhooks.Static{"acme": {
				{ID: "crm", URL: crm.URL, Secrets: []string{secretOld, secretNew}},
				{ID: "ops", URL: ops.URL, Secrets: []string{secretOld, secretNew}},
			}}
			var mu sync.Mutex
			mono := time.Now()
			d := webhooks.New(webhooks.Config{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Minute}, st, dir, render,
				zerolog.Nop(), prometheus.NewRegistry())
			webhooks.SetMonoClock(d, func() time.Time { mu.Lock(); defer mu.Unlock(); return mono })
			ctx := context.Background()
			delivered := func(endpoint string) int {
				t.Helper()
				dls, _, err := d.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme",
					Statuses: []webhooks.Status{webhooks.StatusDelivered}, Limit: 100})
				if err != nil {
					t.Fatal(err)
				}
				n := 0
				for _, dl := range dls {
					if dl.Endpoint == endpoint {
						n++
					}
				}
				return n
			}

			seed(t, s, "acme", 0, 1, 1)
			if err := d.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			if n := busy.Load(); n != 1 {
				t.Fatalf("%d attempts to the busy endpoint, want 1", n)
			}
			seed(t, s, "acme", 1, 3, 1)
			if err := d.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			if n, m := busy.Load(), delivered("ops"); n != 1 || m != 4 {
				t.Fatalf("within its Retry-After: %d attempts to the endpoint that asked to wait (want still 1), %d delivered to the other (want 4)", n, m)
			}

			mu.Lock()
			mono = mono.Add(61 * time.Second)
			mu.Unlock()
			if err := d.Drain(ctx); err != nil {
				t.Fatal(err)
			}
			// The three deliveries it had not been sent go now; the first
			// waits for its own Retry-After on the wall clock.
			if n := busy.Load(); n != 4 {
				t.Errorf("after the pause: %d attempts to the endpoint, want 4", n)
			}
		})
	}
}

// A pause is the word of the receiver at the endpoint's URL: an operator
// who points the endpoint at another receiver (the one that asked to
// wait is overloaded) had this replica send the new one nothing until
// the old one's Retry-After was over, up to 10 minutes, where a 410
// Gone's mark already ended with its URL. The delivery that got the
// answer still waits its own Retry-After (a redelivery sends it sooner).
func TestAnEndpointPausedByOneURLIsSentToItsNextURL(t *testing.T) {
	s := memory.New()
	st := memory.NewDeliveries(s)
	var busy atomic.Int32
	crm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		busy.Add(1)
		w.Header().Set("Retry-After", "600")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	t.Cleanup(crm.Close)
	rc, next := newReceiver(t)
	dir := webhooks.Static{"acme": {{ID: "crm", URL: crm.URL, Secrets: []string{secretOld, secretNew}}}}
	d := webhooks.New(webhooks.Config{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Minute}, st, dir, render,
		zerolog.Nop(), prometheus.NewRegistry())
	ctx := context.Background()

	seed(t, s, "acme", 0, 1, 1)
	if err := d.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if n := busy.Load(); n != 1 {
		t.Fatalf("%d attempts to the endpoint that asks to wait, want 1", n)
	}
	// The operator moves the endpoint (a reloaded tenants file); no
	// attempt is running, so the map is the dispatcher's to read again.
	dir["acme"][0].URL = next.URL
	seed(t, s, "acme", 1, 3, 1)
	if err := d.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if n, got := busy.Load(), len(rc.hits()); n != 1 || got != 3 {
		t.Errorf("after the endpoint moved: %d attempts to its old URL (want 1), %d delivered to its new one (want 3)", n, got)
	}
}
