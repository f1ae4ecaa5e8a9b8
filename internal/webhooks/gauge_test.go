package webhooks_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// countedBacklog counts the store's backlog reads.
type countedBacklog struct {
	webhooks.Store
	reads atomic.Int32
}

func (c *countedBacklog) DeliveryBacklog(ctx context.Context) (int, time.Time, error) {
	c.reads.Add(1)
	return c.Store.DeliveryBacklog(ctx)
}

// The backlog metrics read the store at most every five seconds, and the
// oldest pending delivery's age moves on in between. They read it after
// every scan, and a scan follows every save that wrote events: counting
// a backlog of 20,000 pending deliveries took a fifth of transferd's CPU
// (found measuring transfers with webhooks, transferbench -webhooks).
func TestBacklogMetricsReadTheStoreEveryFewSeconds(t *testing.T) {
	ctx := context.Background()
	s := memory.New()
	seed(t, s, "default", 0, 3, 1)
	st := &countedBacklog{Store: memory.NewDeliveries(s)}
	reg := prometheus.NewRegistry()
	d := webhooks.New(webhooks.Config{}, st, webhooks.Static{"default": {{ID: "crm", URL: "http://127.0.0.1:9/", Secrets: []string{secretOld}}}},
		render, zerolog.Nop(), reg)
	clock := time.Now().UTC()
	webhooks.SetClock(d, func() time.Time { return clock })
	gauge := func(name string) float64 {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatalf("no metric %s", name)
		return 0
	}
	webhooks.Gauge(ctx, d) // nothing enqueued yet
	if err := webhooks.EnqueueAll(ctx, d); err != nil {
		t.Fatal(err)
	}
	made := clock
	for i := range 5 { // scans within five seconds of the first reading
		clock = made.Add(time.Duration(i) * time.Second)
		webhooks.Gauge(ctx, d)
	}
	if n := st.reads.Load(); n != 1 {
		t.Fatalf("%d backlog reads in four seconds, want 1", n)
	}
	if got := gauge("transferd_webhook_backlog"); got != 0 {
		t.Fatalf("backlog %v before the next reading, want the first reading's 0", got)
	}
	clock = made.Add(5 * time.Second)
	webhooks.Gauge(ctx, d)
	if n, got := st.reads.Load(), gauge("transferd_webhook_backlog"); n != 2 || got != 3 {
		t.Fatalf("after five seconds: %d reads, backlog %v; want 2 reads and the 3 deliveries", n, got)
	}
	clock = made.Add(7 * time.Second)
	webhooks.Gauge(ctx, d)
	if n, age := st.reads.Load(), gauge("transferd_webhook_oldest_pending_seconds"); n != 2 || age != 7 {
		t.Fatalf("two seconds on: %d reads, oldest pending %vs; want 2 reads and 7s", n, age)
	}
}
