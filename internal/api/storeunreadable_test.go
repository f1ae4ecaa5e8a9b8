package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// unreadable fails every read the API makes of the store while fail is
// set, with err, as a database restarting or failing over does: every
// connection ended, an error of no kind.
type unreadable struct {
	*memory.Store
	fail atomic.Bool
	err  atomic.Pointer[error]
}

func (s *unreadable) failed(op string) error {
	if !s.fail.Load() {
		return nil
	}
	if e := s.err.Load(); e != nil {
		return fmt.Errorf("postgres: %s: %w", op, *e)
	}
	return errors.New("postgres: " + op + ": FATAL: terminating connection due to administrator command (SQLSTATE 57P01)")
}

func (s *unreadable) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	if err := s.failed("get " + id); err != nil {
		return nil, err
	}
	return s.Store.Get(ctx, id)
}

func (s *unreadable) List(ctx context.Context, f orchestrator.ListFilter) ([]*orchestrator.Transfer, bool, error) {
	if err := s.failed("list"); err != nil {
		return nil, false, err
	}
	return s.Store.List(ctx, f)
}

func (s *unreadable) Events(ctx context.Context, f orchestrator.EventFilter) ([]orchestrator.Event, error) {
	if err := s.failed("events"); err != nil {
		return nil, err
	}
	return s.Store.Events(ctx, f)
}

func (s *unreadable) LastEventPos(ctx context.Context, f orchestrator.EventFilter) (int64, error) {
	if err := s.failed("last event"); err != nil {
		return 0, err
	}
	return s.Store.LastEventPos(ctx, f)
}

func (s *unreadable) EventIDKey(ctx context.Context) (orchestrator.EventIDKey, error) {
	if err := s.failed("event id key"); err != nil {
		return orchestrator.EventIDKey{}, err
	}
	return s.Store.EventIDKey(ctx)
}

// unreadableDeliveries is the webhook deliveries of the same store.
type unreadableDeliveries struct{ s *unreadable }

func (d unreadableDeliveries) Deliveries(ctx context.Context, f webhooks.DeliveryFilter) ([]webhooks.Delivery, bool, error) {
	if err := d.s.failed("deliveries"); err != nil {
		return nil, false, err
	}
	return nil, false, nil
}

func (d unreadableDeliveries) Redeliver(ctx context.Context, tenant, id string) (webhooks.Delivery, error) {
	if err := d.s.failed("redeliver"); err != nil {
		return webhooks.Delivery{}, err
	}
	return webhooks.Delivery{}, orchestrator.E("test.Redeliver", orchestrator.KindNotFound, errors.New("no such delivery"))
}

// TestContractStoreUnreadable: while the store could not be read (its
// connections ended: a database restarting or failing over), the API's
// reads answered 500 internal, "a bug" to a client and a load balancer.
// They are 503 unavailable with Retry-After, saying the store could not
// be read, as the contract declares. A record read but not decoded is
// still a 500: that is a bug.
func TestContractStoreUnreadable(t *testing.T) {
	store := &unreadable{Store: memory.New()}
	e := newEnvConfig(t, zerolog.Nop(), testSigner(t), store, func(c *api.Config) { c.Deliveries = unreadableDeliveries{store} })
	created := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("1000", "manual")}, false)
	if created.status != http.StatusAccepted {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	id := created.transfer(t).ID
	e.wait(t, id, answered)
	reads := []exchange{
		{method: "GET", path: "/v1/transfers"},
		{method: "GET", path: "/v1/transfers/" + id},
		{method: "GET", path: "/v1/transfers/" + id, header: map[string]string{"Prefer": "wait=5"}},
		{method: "GET", path: "/v1/transfers/" + id + "/events"},
		{method: "GET", path: "/v1/events"},
		{method: "GET", path: "/v1/events?transfer_id=" + id},
		{method: "GET", path: "/v1/webhook-deliveries"},
	}
	store.fail.Store(true)
	for _, x := range reads {
		t.Run(x.method+" "+x.path+" "+x.header["Prefer"], func(t *testing.T) {
			r := e.do(t, x, false)
			if p := r.problem(t); r.status != http.StatusServiceUnavailable || p.Type != api.ProblemBase+"unavailable" ||
				!strings.Contains(string(r.body), "the store could not be read; retry") {
				t.Fatalf("%d %s; want 503 unavailable saying the store could not be read", r.status, r.body)
			}
			if r.header.Get("Retry-After") == "" {
				t.Errorf("no Retry-After on the 503")
			}
		})
	}
	// A redelivery the store failed for no kind was a 500 too. Whether it
	// was made is not known; one made twice only sends the delivery once
	// more, so the client is told to retry.
	t.Run("POST redeliver", func(t *testing.T) {
		r := e.do(t, exchange{method: "POST", path: "/v1/webhook-deliveries/dlv_0123456789abcdef01234567/redeliver"}, false)
		if p := r.problem(t); r.status != http.StatusServiceUnavailable || p.Type != api.ProblemBase+"unavailable" ||
			!strings.Contains(string(r.body), "the store failed to record the redelivery") {
			t.Fatalf("%d %s; want 503 unavailable saying the redelivery may not be recorded", r.status, r.body)
		}
		if r.header.Get("Retry-After") == "" {
			t.Errorf("no Retry-After on the 503")
		}
	})
	corrupt := fmt.Errorf("decode record: %w", orchestrator.ErrUndecodable)
	store.err.Store(&corrupt)
	t.Run("a record that could not be decoded: 500", func(t *testing.T) {
		r := e.do(t, reads[1], false)
		if p := r.problem(t); r.status != http.StatusInternalServerError || p.Type != api.ProblemBase+"internal" {
			t.Fatalf("%d %s; want 500 internal", r.status, r.body)
		}
	})
	store.fail.Store(false)
	if r := e.do(t, reads[1], false); r.status != http.StatusOK {
		t.Fatalf("once the store can be read again: %d %s; want 200", r.status, r.body)
	}
}
