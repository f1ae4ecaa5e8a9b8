package webhooks_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// writesStore counts the writes a dispatcher makes of results and claims:
// each FinishDelivery and ClaimDeliveries, and each SettleDeliveries that
// stored a result or claimed a delivery.
type writesStore struct {
	webhooks.Store
	writes, results, claimed atomic.Int64
}

func (s *writesStore) ClaimDeliveries(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Delivery, error) {
	s.writes.Add(1)
	ds, err := s.Store.ClaimDeliveries(ctx, owner, now, lease, limit, skip)
	s.claimed.Add(int64(len(ds)))
	return ds, err
}

func (s *writesStore) FinishDelivery(ctx context.Context, d webhooks.Delivery) (webhooks.Delivery, bool, error) {
	s.writes.Add(1)
	s.results.Add(1)
	return s.Store.FinishDelivery(ctx, d)
}

func (s *writesStore) SettleDeliveries(ctx context.Context, results []webhooks.Delivery, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Finished, []webhooks.Delivery, error) {
	// Counted before the results are stored: a test that waits for them
	// to be stored then reads the counts whole.
	s.results.Add(int64(len(results)))
	if len(results) > 0 {
		s.writes.Add(1)
	}
	vs, ds, err := s.Store.SettleDeliveries(ctx, results, owner, now, lease, limit, skip)
	if len(results) == 0 && len(ds) > 0 {
		s.writes.Add(1)
	}
	s.claimed.Add(int64(len(ds)))
	return vs, ds, err
}

// TestResultsGoWithTheNextClaim: a transfer's events go one at a time,
// and the result of each attempt is stored in the same write as the
// claim of the next: n deliveries make n+1 writes of results and claims
// (the first claim, then each result with the next claim; the last
// result claims nothing), not a result and a claim each.
func TestResultsGoWithTheNextClaim(t *testing.T) {
	const n = 12
	s := memory.New()
	st := &writesStore{Store: memory.NewDeliveries(s)}
	rc, srv := newReceiver(t)
	seed(t, s, "acme", 0, 1, n)
	_, w := newDispatcher(t, st, endpoint(srv.URL), webhooks.Config{Owner: "a", ScanInterval: time.Hour})
	rc.waitN(t, n)
	w.idle(t)
	checkOrder(t, rc.hits(), 1, n)
	if r, c := st.results.Load(), st.claimed.Load(); r != n || c != n {
		t.Fatalf("%d results and %d claimed, want %d each", r, c, n)
	}
	if got := st.writes.Load(); got > n+1 {
		t.Fatalf("%d writes of results and claims for %d deliveries, want at most %d", got, n, n+1)
	}
}
