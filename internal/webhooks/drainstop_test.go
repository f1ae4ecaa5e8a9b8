package webhooks_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

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

// noAnswerThenStop takes the request, moves the clock past every
// delivery's deadline (the attempt is a delivery's last try, as one
// claimed at its Deadline is), ends the shutdown's time (stop) and
// answers nothing: the attempt is cut by the shutdown, not failed by the
// receiver.
type noAnswerThenStop struct {
	stop    context.CancelFunc
	advance func()
}

func (a noAnswerThenStop) RoundTrip(r *http.Request) (*http.Response, error) {
	a.advance()
	a.stop()
	<-r.Context().Done()
	return nil, r.Context().Err()
}

// An attempt of the drain that the shutdown's deadline cut before any
// answer is not the receiver's failure: since the drain stores its
// results whatever the deadline says, it was stored as one, a failed
// attempt counted against the endpoint and, on a delivery's last try,
// a dead letter the receiver was never given the time to take. It is
// left leased, as it was before: another replica sends it once the
// lease has run out.
func TestADrainAttemptTheShutdownCutIsNotAFailure(t *testing.T) {
	s := memory.New()
	st := ctxStore{memory.NewDeliveries(s)}
	seed(t, s, "acme", 0, 1, 1)
	var mu sync.Mutex
	now := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func() { mu.Lock(); defer mu.Unlock(); now = now.Add(25 * time.Hour) }
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	reg := prometheus.NewRegistry()
	d := webhooks.New(webhooks.Config{Owner: "a", Clock: clock,
		Client: &http.Client{Transport: noAnswerThenStop{stop: stop, advance: advance}}}, st,
		endpoint("http://crm.invalid/"), render, zerolog.Nop(), reg)
	_ = d.Drain(ctx) // ends with the context's error: it was cut short
	ds, _, err := st.Deliveries(context.Background(), webhooks.DeliveryFilter{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 {
		t.Fatalf("%d deliveries, want 1", len(ds))
	}
	if dl := ds[0]; dl.Status != webhooks.StatusPending || dl.Owner != "a" || dl.LastError != "" {
		t.Errorf("the delivery whose attempt the shutdown cut is %s, owner %q, error %q; want pending, still leased to a, no error",
			dl.Status, dl.Owner, dl.LastError)
	}
	for _, result := range []string{"delivered", "retry", "dead"} {
		if n := attempts(t, reg, result); n != 0 {
			t.Errorf("%v attempts counted %s, want none: the receiver was not heard", n, result)
		}
	}
}
