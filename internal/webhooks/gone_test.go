package webhooks_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

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
