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

// A write of results that failed, nothing of it made (a store that
// could not be reached for a moment), dropped them: each delivery stayed
// leased to this replica until its lease ran out, and was then sent
// again, a delivered one included, although the store was back at the
// next scan. Such results are now kept and written with the next scan's
// claim. The clock stands still, so that no lease runs out: only this
// replica's own write can settle the delivery.
func TestResultsAFailedWriteDidNotMakeAreWrittenAtTheNextScan(t *testing.T) {
	s := memory.New()
	st := &losingStore{Store: memory.NewDeliveries(s), commit: false, readable: true}
	deliveredOnceAfterAFailedWrite(t, s, st, st.Store, &st.failed, "failed")
}

// deliveredOnceAfterAFailedWrite runs a dispatcher over st (a wrapper of
// s's deliveries whose first write of results fails, setting failed) with
// its clock standing still, so that no lease runs out, and checks that
// four scans after that write the one delivery the receiver took is
// settled as delivered, counted once and sent once: only this replica's
// own writes can have settled it. read is st's store without its
// faults; what names the failed write.
func deliveredOnceAfterAFailedWrite(t *testing.T, s *memory.Store, st, read webhooks.Store, failed *atomic.Bool, what string) {
	t.Helper()
	rc, srv := newReceiver(t)
	seed(t, s, "acme", 0, 1, 1)
	reg := prometheus.NewRegistry()
	d := webhooks.New(webhooks.Config{Owner: "a", ScanInterval: time.Millisecond}, st, endpoint(srv.URL), render, zerolog.Nop(), reg)
	at := time.Now().UTC()
	webhooks.SetClock(d, func() time.Time { return at })
	// Scans counted from the one whose write failed.
	after := make(chan int, 1<<10)
	var scans atomic.Int64
	webhooks.OnScan(d, func() {
		if failed.Load() {
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
			t.Fatal("no scan after the " + what + " write")
		}
	}
	ds, _, err := read.Deliveries(context.Background(), webhooks.DeliveryFilter{Tenant: "acme"})
	if err != nil || len(ds) != 1 {
		t.Fatalf("stored %+v (%v): set-up wants one delivery", ds, err)
	}
	if ds[0].Status != webhooks.StatusDelivered || ds[0].Owner != "" {
		t.Errorf("four scans after the %s write, the delivery the receiver took is %s, owner %q: it is sent again once its lease runs out",
			what, ds[0].Status, ds[0].Owner)
	}
	if got := attempts(t, reg, "delivered"); got != 1 {
		t.Errorf("transferd_webhook_deliveries_total{result=\"delivered\"} = %v, want 1", got)
	}
	if got := len(rc.hits()); got != 1 {
		t.Errorf("the receiver got %d attempts, want 1", got)
	}
}
