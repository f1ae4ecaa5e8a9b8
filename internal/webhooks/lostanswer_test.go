package webhooks_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// errAnswerLost is a store's error that leaves open whether the write was
// made (no kind): a connection lost between the commit and its answer.
var errAnswerLost = errors.New("connection reset by peer")

// losingStore fails the first write of results (FinishDelivery, or a
// SettleDeliveries with results) with errAnswerLost, after writing it if
// commit says so; it reads back (Deliveries) only if readable says so.
type losingStore struct {
	webhooks.Store
	commit, readable bool
	failed           atomic.Bool
}

func (s *losingStore) FinishDelivery(ctx context.Context, d webhooks.Delivery) (webhooks.Delivery, bool, error) {
	if s.failed.Swap(true) {
		return s.Store.FinishDelivery(ctx, d)
	}
	if s.commit {
		if _, _, err := s.Store.FinishDelivery(ctx, d); err != nil {
			return webhooks.Delivery{}, false, err
		}
	}
	return webhooks.Delivery{}, false, errAnswerLost
}

func (s *losingStore) SettleDeliveries(ctx context.Context, results []webhooks.Delivery, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Finished, []webhooks.Delivery, error) {
	if len(results) == 0 || s.failed.Swap(true) {
		return s.Store.SettleDeliveries(ctx, results, owner, now, lease, limit, skip)
	}
	if s.commit {
		if _, _, err := s.Store.SettleDeliveries(ctx, results, owner, now, lease, limit, skip); err != nil {
			return nil, nil, err
		}
	}
	return nil, nil, errAnswerLost
}

func (s *losingStore) Deliveries(ctx context.Context, f webhooks.DeliveryFilter) ([]webhooks.Delivery, bool, error) {
	if !s.readable {
		return nil, false, errAnswerLost
	}
	return s.Store.Deliveries(ctx, f)
}

// A result whose write the store answered with an error that leaves open
// whether it was made, and made all the same, was not counted in
// transferd_webhook_deliveries_total: the dispatcher counted a result
// only with the store's answer, and a delivered one is never attempted
// again. It is now read back and counted when the store holds it (as the
// engine counts a transfer's end by the save that writes it), and not
// when the store does not, or cannot be read: a result is counted at
// most once. Both ways a result is written: Run's (with its next claim)
// and Drain's (FinishDelivery).
func TestAResultWrittenDespiteALostAnswerIsCounted(t *testing.T) {
	for _, c := range []struct {
		name             string
		commit, readable bool
		want             float64
	}{
		{"written", true, true, 1},
		{"not written", false, true, 0},
		{"written, unreadable", true, false, 0},
	} {
		for _, drain := range []bool{false, true} {
			t.Run(c.name+map[bool]string{false: ", Run", true: ", Drain"}[drain], func(t *testing.T) {
				s := memory.New()
				st := &losingStore{Store: memory.NewDeliveries(s), commit: c.commit, readable: c.readable}
				_, srv := newReceiver(t)
				seed(t, s, "acme", 0, 1, 1)
				reg := prometheus.NewRegistry()
				d := webhooks.New(webhooks.Config{Owner: "a", ScanInterval: time.Hour}, st, endpoint(srv.URL), render, zerolog.Nop(), reg)
				if drain {
					if err := d.Drain(context.Background()); err != nil {
						t.Fatal(err)
					}
				} else {
					// The scan that wrote the result ends once its read
					// back has: the next scan report after the failure.
					after := make(chan struct{})
					var reported atomic.Bool
					webhooks.OnScan(d, func() {
						if st.failed.Load() && !reported.Swap(true) {
							close(after)
						}
					})
					ctx, cancel := context.WithCancel(context.Background())
					done := make(chan struct{})
					go func() { d.Run(ctx); close(done) }()
					defer func() { cancel(); <-done }()
					select {
					case <-after:
					case <-time.After(30 * time.Second):
						t.Fatal("the result was never written")
					}
				}
				if !st.failed.Load() {
					t.Fatal("set-up wants the result's write answered with an error")
				}
				if got := attempts(t, reg, "delivered"); got != c.want {
					t.Errorf("transferd_webhook_deliveries_total{result=\"delivered\"} = %v, want %v", got, c.want)
				}
				ds, _, err := st.Store.Deliveries(context.Background(), webhooks.DeliveryFilter{Tenant: "acme"})
				if err != nil || len(ds) != 1 || (ds[0].Status == webhooks.StatusDelivered) != c.commit {
					t.Fatalf("stored %+v (%v): set-up wants one delivery, delivered %v", ds, err, c.commit)
				}
			})
		}
	}
}

// attempts is the value of transferd_webhook_deliveries_total with the
// given result in reg.
func attempts(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "transferd_webhook_deliveries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series transferd_webhook_deliveries_total{result=%q}", result)
	return 0
}
