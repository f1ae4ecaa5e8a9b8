package webhooks_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// ctxStore is a store that refuses work under a context that is done, as
// SQLite and PostgreSQL do (the memory store ignores it).
type ctxStore struct{ webhooks.Store }

func (s ctxStore) FinishDelivery(ctx context.Context, d webhooks.Delivery) (webhooks.Delivery, bool, error) {
	if err := ctx.Err(); err != nil {
		return webhooks.Delivery{}, false, err
	}
	return s.Store.FinishDelivery(ctx, d)
}

// answerThenStop answers 204, and ends the shutdown's time (stop) as it
// does: the receiver has the event.
type answerThenStop struct{ stop context.CancelFunc }

func (a answerThenStop) RoundTrip(r *http.Request) (*http.Response, error) {
	a.stop()
	return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody, Request: r}, nil
}

// The shutdown's drain stored an attempt's result under the shutdown's
// own deadline: a receiver that answered 2xx as the deadline passed had
// its delivery left pending and leased, and another replica sent it again
// once the lease ran out. Run stores results whatever its context says,
// for that reason; the drain now does too.
func TestADrainStoresAResultItsDeadlineOutlived(t *testing.T) {
	s := memory.New()
	st := ctxStore{memory.NewDeliveries(s)}
	seed(t, s, "acme", 0, 1, 1)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	d := webhooks.New(webhooks.Config{Owner: "a", Client: &http.Client{Transport: answerThenStop{stop}}}, st,
		endpoint("http://crm.invalid/"), render, zerolog.Nop(), prometheus.NewRegistry())
	_ = d.Drain(ctx) // ends with the context's error: it was cut short
	ds, _, err := st.Deliveries(context.Background(), webhooks.DeliveryFilter{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 {
		t.Fatalf("%d deliveries, want 1", len(ds))
	}
	if dl := ds[0]; dl.Status != webhooks.StatusDelivered || dl.Owner != "" {
		t.Errorf("the delivery the receiver answered 204 is %s, owner %q, code %d: it will be sent again once its lease runs out",
			dl.Status, dl.Owner, dl.LastCode)
	}
}
