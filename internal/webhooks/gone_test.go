package webhooks_test

import (
	"context"
	"fmt"
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

// goneEndpoint answers 410 Gone while gone is set, 204 otherwise, and
// counts the attempts it got.
func goneEndpoint(t *testing.T) (srv *httptest.Server, gone *atomic.Bool, got *atomic.Int64) {
	gone, got = new(atomic.Bool), new(atomic.Int64)
	gone.Store(true)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		if gone.Load() {
			w.WriteHeader(http.StatusGone)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv, gone, got
}

// deliveriesOf lists the tenant's deliveries, oldest first.
func deliveriesOf(t *testing.T, d *webhooks.Dispatcher, tenant string) []webhooks.Delivery {
	t.Helper()
	dls, _, err := d.Deliveries(context.Background(), webhooks.DeliveryFilter{Tenant: tenant, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(dls)-1; i < j; i, j = i+1, j-1 {
		dls[i], dls[j] = dls[j], dls[i]
	}
	return dls
}

// A receiver that answers 410 Gone asks never to be sent the webhook
// again (Standard Webhooks: the sender disables the endpoint). The
// delivery was retried like any failure, for TRANSFERD_WEBHOOK_MAX_AGE
// (a day): it is a dead letter at once, its last code 410, counted as
// one.
func TestA410GoneDeliveryIsDeadAtOnce(t *testing.T) {
	srv, _, got := goneEndpoint(t)
	s := memory.New()
	seed(t, s, "acme", 0, 1, 1)
	reg := prometheus.NewRegistry()
	d := webhooks.New(webhooks.Config{}, memory.NewDeliveries(s), endpoint(srv.URL), render, zerolog.Nop(), reg)
	if err := d.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	dls := deliveriesOf(t, d, "acme")
	if len(dls) != 1 {
		t.Fatalf("%d deliveries, want 1", len(dls))
	}
	if dl := dls[0]; dl.Status != webhooks.StatusDead || dl.LastCode != http.StatusGone {
		t.Fatalf("the delivery is %s, its last code %d; want dead, 410", dl.Status, dl.LastCode)
	}
	if n := got.Load(); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
	if n := counter(t, reg, "transferd_webhook_dead_letters_total"); n != 1 {
		t.Errorf("dead letters counted: %v, want 1", n)
	}
}

// An endpoint that answered 410 Gone is not sent the deliveries that
// follow either (Standard Webhooks: the sender stops sending to it): each
// was sent to be told the same, one request per event. They are dead
// letters at once, unsent, saying why; the mark holds MaxBackoff, and the
// first delivery after it is sent, as is a redelivery meanwhile, and once
// the endpoint accepts one, or the tenant configures another URL, the
// endpoint is sent to as before.
func TestAnEndpointThatAnswered410GoneIsNotSentTheNextDeliveries(t *testing.T) {
	srv, gone, got := goneEndpoint(t)
	s := memory.New()
	var mu sync.Mutex
	mono := time.Now()
	dir := endpoint(srv.URL)
	logs := make(lines, 1000)
	d := webhooks.New(webhooks.Config{MaxBackoff: 10 * time.Minute}, memory.NewDeliveries(s), dir, render,
		zerolog.New(logs).Level(zerolog.WarnLevel), prometheus.NewRegistry())
	webhooks.SetMonoClock(d, func() time.Time { mu.Lock(); defer mu.Unlock(); return mono })
	ctx := context.Background()
	drain := func(wantAttempts int64) []webhooks.Delivery {
		t.Helper()
		if err := d.Drain(ctx); err != nil {
			t.Fatal(err)
		}
		if n := got.Load(); n != wantAttempts {
			t.Fatalf("%d attempts reached the endpoint, want %d", n, wantAttempts)
		}
		return deliveriesOf(t, d, "acme")
	}
	state := func(dl webhooks.Delivery) string {
		return fmt.Sprintf("%s %d %q", dl.Status, dl.LastCode, dl.LastError)
	}

	// One transfer's four events go one at a time, in seq order: the
	// first is sent and gets 410, the other three are not sent.
	seed(t, s, "acme", 0, 1, 4)
	dls := drain(1)
	if len(dls) != 4 || dls[0].Status != webhooks.StatusDead || dls[0].LastCode != http.StatusGone {
		t.Fatalf("first delivery %s; want dead, 410", state(dls[0]))
	}
	for _, dl := range dls[1:] {
		if dl.Status != webhooks.StatusDead || dl.LastCode != 0 || !strings.Contains(dl.LastError, "410 Gone") {
			t.Fatalf("delivery %d: %s; want dead, unsent, saying the endpoint answered 410 Gone", dl.Seq, state(dl))
		}
	}
	// The operator is told once, with a warning naming the endpoint
	// (each dead letter is a warning of its own too).
	marked := 0
	for len(logs) > 0 {
		if l := <-logs; strings.Contains(l, "answered 410 Gone: its deliveries are given up") {
			if !strings.Contains(l, `"endpoint":"crm"`) || !strings.Contains(l, `"tenant":"acme"`) {
				t.Errorf("the warning names no endpoint: %s", l)
			}
			marked++
		}
	}
	if marked != 1 {
		t.Errorf("%d warnings that the endpoint answered 410 Gone, want 1", marked)
	}
	// Another transfer's, meanwhile: not sent.
	seed(t, s, "acme", 1, 1, 1)
	if dls := drain(1); dls[4].Status != webhooks.StatusDead {
		t.Fatalf("a later transfer's delivery: %s; want dead, unsent", state(dls[4]))
	}

	// A redelivery is sent all the same: the receiver is back and
	// accepts it, and the next deliveries are sent again.
	gone.Store(false)
	if _, err := d.Redeliver(ctx, "acme", dls[3].ID); err != nil {
		t.Fatal(err)
	}
	if dls := drain(2); dls[3].Status != webhooks.StatusDelivered {
		t.Fatalf("the redelivery: %s; want delivered", state(dls[3]))
	}
	seed(t, s, "acme", 2, 1, 1)
	if dls := drain(3); dls[5].Status != webhooks.StatusDelivered {
		t.Fatalf("after the endpoint accepted a redelivery: %s; want delivered", state(dls[5]))
	}

	// Gone again: the mark holds MaxBackoff, then the next delivery is
	// sent (gone still: dead, 410, and marked again).
	gone.Store(true)
	seed(t, s, "acme", 3, 1, 1)
	drain(4)
	seed(t, s, "acme", 4, 1, 1)
	drain(4)
	mu.Lock()
	mono = mono.Add(10*time.Minute + time.Second)
	mu.Unlock()
	seed(t, s, "acme", 5, 1, 1)
	if dls := drain(5); dls[8].LastCode != http.StatusGone {
		t.Fatalf("the first delivery after the mark: %s; want sent, 410", state(dls[8]))
	}

	// Another URL configured for the endpoint is sent to at once.
	other, _, otherGot := goneEndpoint(t)
	dir["acme"][0].URL = other.URL
	seed(t, s, "acme", 6, 1, 1)
	drain(5)
	if n := otherGot.Load(); n != 1 {
		t.Fatalf("%d attempts reached the endpoint's new URL, want 1", n)
	}
}
