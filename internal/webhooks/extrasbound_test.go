package webhooks_test

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// Receivers that start hanging together, more of them than the slots and
// the extras: each endpoint with nothing in flight got an extra, so that
// a process had as many attempts in flight (a goroutine and a connection
// each, for a Timeout) as endpoints configured, thousands for a host
// serving thousands of tenants, and made as many claims one after
// another, each skipping every endpoint busy so far. Extras are now
// bounded by Config.Extras (Concurrency by default): with two slots,
// eight receivers hold two slots and two extras, the other four waiting
// for one to end. Counted in the store at a scan begun once the four are
// held (at the base commit all eight were leased), not timed: no attempt
// ends until the test does.
func TestExtrasAreBoundedPerProcess(t *testing.T) {
	s := memory.New()
	st := memory.NewDeliveries(s)
	const hungs, concurrency = 8, 2
	dir := webhooks.Static{}
	for i := range hungs {
		tenant := fmt.Sprintf("h%02d", i)
		dir[tenant] = []webhooks.Endpoint{{ID: "crm", URL: "http://" + tenant + ".invalid/", Secrets: []string{secretOld}}}
		seed(t, s, tenant, i*10, 1, 1)
	}
	m := &manyHung{held: make(chan manyHungAttempt, 256), stop: make(chan struct{})}
	var scans atomic.Int64
	scanned := make(chan struct{}, 1)
	d, _ := newDispatcher(t, st, dir, webhooks.Config{Concurrency: concurrency, Timeout: time.Minute, Client: &http.Client{Transport: m}},
		func(d *webhooks.Dispatcher) {
			webhooks.OnScan(d, func() {
				scans.Add(1)
				select {
				case scanned <- struct{}{}:
				default:
				}
			})
		})
	// Before the dispatcher's own cleanup waits for its attempts.
	t.Cleanup(func() { close(m.stop) })
	deadline := time.After(30 * time.Second)
	for range 2 * concurrency {
		select {
		case <-m.held:
		case <-deadline:
			t.Fatal("the hanging receivers' first attempts never started")
		}
	}
	// A scan that begins after the four attempts were claimed has claimed
	// all it may by its end.
	for from := scans.Load(); scans.Load() < from+2; {
		d.Nudge()
		select {
		case <-scanned:
		case <-deadline:
			t.Fatal("no scan ran")
		}
	}
	leased := 0
	for i := range hungs {
		for _, dl := range deliveriesOf(t, d, fmt.Sprintf("h%02d", i)) {
			if dl.Owner != "" {
				leased++
			}
		}
	}
	if leased != 2*concurrency {
		t.Errorf("%d receivers that hang hold %d attempts, want %d (the %d slots and as many extras)", hungs, leased, 2*concurrency, concurrency)
	}
}
