package webhooks_test

import (
	"context"
	"net/http"
	"net/http/httptest"
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

// codeEndpoint answers every attempt with the code it holds, and counts
// the attempts it got.
func codeEndpoint(t *testing.T, code int) (srv *httptest.Server, answer *atomic.Int64, got *atomic.Int64) {
	answer, got = new(atomic.Int64), new(atomic.Int64)
	answer.Store(int64(code))
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(int(answer.Load()))
	}))
	t.Cleanup(srv.Close)
	return srv, answer, got
}

// A redelivery is sent all the same under an endpoint's 410 Gone mark,
// also that of a delivery never attempted yet, waiting behind its
// transfer's head: Redeliver set its Redelivered to its Attempts, 0, as
// if it had never been redelivered, and its first attempt, once it was
// the head, was given up unsent (a dead letter saying so), where the
// operator had asked for it to be sent.
func TestARedeliveryNeverAttemptedIsSentUnderA410GoneMark(t *testing.T) {
	srv, answer, got := codeEndpoint(t, http.StatusServiceUnavailable)
	s := memory.New()
	d := webhooks.New(webhooks.Config{}, memory.NewDeliveries(s), endpoint(srv.URL), render, zerolog.Nop(), prometheus.NewRegistry())
	// The clock stands still: a failed delivery's back-off never passes.
	start := time.Now().UTC()
	webhooks.SetClock(d, func() time.Time { return start })
	ctx := context.Background()
	drain := func(want int64) []webhooks.Delivery {
		t.Helper()
		if err := d.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if n := got.Load(); n != want {
			t.Fatalf("%d attempts reached the endpoint, want %d", n, want)
		}
		return deliveriesOf(t, d, "acme")
	}
	// Transfer 0's first delivery fails and waits its back-off; its second
	// waits behind it, never attempted.
	seed(t, s, "acme", 0, 1, 2)
	dls := drain(1)
	first, second := dls[0], dls[1]
	if first.Status != webhooks.StatusPending || second.Status != webhooks.StatusPending || second.Attempts != 0 {
		t.Fatalf("transfer 0's deliveries: %+v; want the first failing, the second never attempted", dls)
	}
	// Another transfer's delivery is answered 410 Gone: the endpoint's
	// next deliveries are given up unsent for a while.
	answer.Store(http.StatusGone)
	seed(t, s, "acme", 1, 1, 1)
	drain(2)
	// The operator redelivers both of transfer 0's.
	for _, dl := range []webhooks.Delivery{second, first} {
		if _, err := d.Redeliver(ctx, "acme", dl.ID); err != nil {
			t.Fatal(err)
		}
	}
	dls = drain(4)
	for _, dl := range dls[:2] {
		if dl.Status != webhooks.StatusDead || dl.LastCode != http.StatusGone || strings.Contains(dl.LastError, "not sent") {
			t.Errorf("redelivered delivery %d: %s, %d, %q; want sent (and answered 410)", dl.Seq, dl.Status, dl.LastCode, dl.LastError)
		}
	}
}

// A redelivery whose attempt was not made, its claim run out before
// anything of it was written (the replica stopped in between), is made
// at the attempt after, under an endpoint's 410 Gone mark as well: that
// attempt, the second since the redelivery by Attempts, was given up
// unsent, and the redelivery the operator asked for was never sent.
func TestARedeliveryWhoseClaimRanOutIsSentAtTheNextAttempt(t *testing.T) {
	srv, _, got := codeEndpoint(t, http.StatusGone)
	s := memory.New()
	st := &stoppedInClaim{Store: memory.NewDeliveries(s), stall: 15 * time.Second, clock: time.Now()}
	st.once.Store(true) // no stall until armed
	d := webhooks.New(webhooks.Config{Timeout: 10 * time.Second}, st, endpoint(srv.URL), render, zerolog.Nop(), prometheus.NewRegistry())
	webhooks.SetMonoClock(d, st.now)
	var mu sync.Mutex
	clock := time.Now().UTC()
	webhooks.SetClock(d, func() time.Time { mu.Lock(); defer mu.Unlock(); return clock })
	ctx := context.Background()
	drain := func(want int64) webhooks.Delivery {
		t.Helper()
		if err := d.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if n := got.Load(); n != want {
			t.Fatalf("%d attempts reached the endpoint, want %d", n, want)
		}
		return deliveriesOf(t, d, "acme")[0]
	}
	// Sent and answered 410 Gone: a dead letter, and the endpoint marked.
	seed(t, s, "acme", 0, 1, 1)
	dl := drain(1)
	if _, err := d.Redeliver(ctx, "acme", dl.ID); err != nil {
		t.Fatal(err)
	}
	// The redelivery's claim runs out before its attempt is written
	// (within the 410's mark, which lasts MaxBackoff, 10 min).
	st.once.Store(false)
	if dl = drain(1); dl.Status != webhooks.StatusPending || !strings.Contains(dl.LastError, "not sent") {
		t.Fatalf("the redelivery whose claim ran out: %s, %q; want pending, not sent", dl.Status, dl.LastError)
	}
	// Its back-off passes: the attempt after is the redelivery still.
	mu.Lock()
	clock = clock.Add(time.Hour)
	mu.Unlock()
	if dl = drain(2); dl.LastCode != http.StatusGone || strings.Contains(dl.LastError, "not sent") {
		t.Fatalf("the attempt after: %s, %d, %q; want sent (and answered 410)", dl.Status, dl.LastCode, dl.LastError)
	}
}
