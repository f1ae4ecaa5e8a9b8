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

// enqueuesStore counts a store's enqueues, and holds the one numbered
// hold (from 1) until release is closed, after reporting it on held.
type enqueuesStore struct {
	webhooks.Store
	enqueues      atomic.Int64
	hold          int64
	held, release chan struct{}
}

func (s *enqueuesStore) EnqueueDeliveries(ctx context.Context, endpoint string, from, to int64, ds []webhooks.Delivery) error {
	if s.enqueues.Add(1) == s.hold {
		close(s.held)
		<-s.release
	}
	return s.Store.EnqueueDeliveries(ctx, endpoint, from, to, ds)
}

// TestABacklogIsEnqueuedABatchAtATime: an endpoint far behind its outbox
// is enqueued a batch at a time, and every event is delivered, by Run and
// by Drain.
func TestABacklogIsEnqueuedABatchAtATime(t *testing.T) {
	const transfers, batch = 30, 4
	for _, drain := range []bool{false, true} {
		t.Run(map[bool]string{false: "Run", true: "Drain"}[drain], func(t *testing.T) {
			s := memory.New()
			st := &enqueuesStore{Store: memory.NewDeliveries(s)}
			rc, srv := newReceiver(t)
			seed(t, s, "acme", 0, transfers, 1)
			cfg := webhooks.Config{Owner: "a", ScanInterval: time.Hour, EnqueueGap: time.Millisecond, Batch: batch}
			if drain {
				d := webhooks.New(cfg, st, endpoint(srv.URL), render, zerolog.Nop(), prometheus.NewRegistry())
				if err := d.Drain(context.Background()); err != nil {
					t.Fatal(err)
				}
			} else {
				newDispatcher(t, st, endpoint(srv.URL), cfg)
			}
			rc.waitN(t, transfers)
			checkOrder(t, rc.hits(), transfers, 1)
			if n := st.enqueues.Load(); n < transfers/batch {
				t.Fatalf("%d enqueues of %d events in batches of %d", n, transfers, batch)
			}
		})
	}
}

// TestResultsDoNotWaitForAnEnqueue: while an enqueue of the outbox is
// under way (a large one reads and renders a batch of events), an attempt
// that ends has its result stored, and the next delivery of its transfer
// claimed and sent.
func TestResultsDoNotWaitForAnEnqueue(t *testing.T) {
	s := memory.New()
	st := &enqueuesStore{Store: memory.NewDeliveries(s), hold: 2, held: make(chan struct{}), release: make(chan struct{})}
	defer close(st.release)
	srv, entered, answer, _ := holdFirst(t)
	seed(t, s, "acme", 0, 1, 3) // one transfer, three events: the first enqueue
	d, w := newDispatcher(t, st, endpoint(srv.URL), webhooks.Config{Owner: "a", ScanInterval: time.Hour, EnqueueGap: time.Millisecond})
	<-entered // the first delivery's attempt is under way
	seed(t, s, "acme", 1, 1, 1)
	d.Nudge()
	<-st.held // the second enqueue is held
	close(answer)
	for i := range 3 {
		select {
		case dl := <-w.ch:
			if dl.Status != webhooks.StatusDelivered {
				t.Fatalf("%s: %s", dl.ID, dl.Status)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of the transfer's 3 results stored while an enqueue was under way", i)
		}
	}
}

// TestResultsAreStoredAsAttemptsEndAtShutdown: once Run's context is
// done, an attempt that ends has its result stored then, while another
// endpoint's attempt is still waiting for its answer (it may outlast the
// shutdown's timeout, and the process with it).
func TestResultsAreStoredAsAttemptsEndAtShutdown(t *testing.T) {
	s := memory.New()
	st := memory.NewDeliveries(s)
	hung, hungIn, hungOut, _ := holdFirst(t)
	ok, okIn, okOut, _ := holdFirst(t)
	dir := webhooks.Static{"acme": {{ID: "hung", URL: hung.URL, Secrets: []string{secretOld}}, {ID: "ok", URL: ok.URL, Secrets: []string{secretOld}}}}
	seed(t, s, "acme", 0, 1, 1)
	d := webhooks.New(webhooks.Config{Owner: "a", ScanInterval: time.Hour, Timeout: time.Hour}, st, dir, render, zerolog.Nop(), prometheus.NewRegistry())
	finished := make(chan webhooks.Delivery, 4)
	webhooks.OnFinish(d, func(dl webhooks.Delivery) { finished <- dl })
	ctx, cancel := context.WithCancel(context.Background())
	returned := make(chan struct{})
	go func() { d.Run(ctx); close(returned) }()
	<-hungIn
	<-okIn
	cancel()
	close(okOut)
	select {
	case dl := <-finished:
		if dl.Endpoint != "ok" || dl.Status != webhooks.StatusDelivered {
			t.Fatalf("stored %s %s, want ok's delivered", dl.Endpoint, dl.Status)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the ended attempt's result waited for the one still in flight")
	}
	close(hungOut)
	<-returned
	if n, _, err := st.DeliveryBacklog(context.Background()); n != 0 || err != nil {
		t.Fatalf("%d deliveries pending after Run returned (%v)", n, err)
	}
}
