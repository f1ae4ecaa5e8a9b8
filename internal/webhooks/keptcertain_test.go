package webhooks_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// unavailableStore refuses the first write of results with an error that
// says nothing was written (KindUnavailable: not read back).
type unavailableStore struct {
	webhooks.Store
	failed atomic.Bool
}

func (s *unavailableStore) SettleDeliveries(ctx context.Context, results []webhooks.Delivery, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Finished, []webhooks.Delivery, error) {
	if len(results) == 0 || s.failed.Swap(true) {
		return s.Store.SettleDeliveries(ctx, results, owner, now, lease, limit, skip)
	}
	return nil, nil, orchestrator.E("test.SettleDeliveries", orchestrator.KindUnavailable, nil)
}

// A write of results the store refused saying nothing was made (not
// uncertain, so not read back) keeps them for the next scan too, as one
// whose answer was lost and that the read back does not find: the
// delivery the receiver took is not sent again after its lease.
func TestResultsAWriteRefusedOutrightAreWrittenAtTheNextScan(t *testing.T) {
	s := memory.New()
	st := &unavailableStore{Store: memory.NewDeliveries(s)}
	rc, srv := newReceiver(t)
	seed(t, s, "acme", 0, 1, 1)
	reg := prometheus.NewRegistry()
	d := webhooks.New(webhooks.Config{Owner: "a", ScanInterval: time.Millisecond}, st, endpoint(srv.URL), render, zerolog.Nop(), reg)
	at := time.Now().UTC()
	webhooks.SetClock(d, func() time.Time { return at }) // no lease runs out
	after := make(chan int, 1<<10)
	var scans atomic.Int64
	webhooks.OnScan(d, func() {
		if st.failed.Load() {
			after <- int(scans.Add(1))
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for n := 0; n < 5; {
		select {
		case n = <-after:
		case <-time.After(30 * time.Second):
			t.Fatal("no scan after the refused write")
		}
	}
	ds, _, err := st.Store.Deliveries(context.Background(), webhooks.DeliveryFilter{Tenant: "acme"})
	if err != nil || len(ds) != 1 {
		t.Fatalf("stored %+v (%v): set-up wants one delivery", ds, err)
	}
	if ds[0].Status != webhooks.StatusDelivered || ds[0].Owner != "" {
		t.Errorf("four scans after the refused write, the delivery the receiver took is %s, owner %q", ds[0].Status, ds[0].Owner)
	}
	if got := attempts(t, reg, "delivered"); got != 1 {
		t.Errorf("transferd_webhook_deliveries_total{result=\"delivered\"} = %v, want 1", got)
	}
	if got := len(rc.hits()); got != 1 {
		t.Errorf("the receiver got %d attempts, want 1", got)
	}
}
