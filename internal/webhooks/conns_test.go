package webhooks_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// TestDeliveriesReuseConnections: the default client keeps an idle
// connection for every attempt that may be in flight, so that deliveries
// under load reuse connections instead of opening a new TCP (in
// production TLS) connection each. With Go's default of two idle
// connections per host, about a third of these deliveries opened one. A
// connection is dialled only when none is idle, so while none is closed
// at most twice the attempts in flight are ever open or dialling: Run
// has at most EndpointConcurrency in flight to one endpoint, Drain (at
// shutdown) Concurrency.
func TestDeliveriesReuseConnections(t *testing.T) {
	const transfers, n, perEndpoint, total = 120, 5, 8, 16
	for _, tc := range []struct {
		name  string
		drain bool
		bound int64
	}{{"run", false, 2 * perEndpoint}, {"drain", true, 2 * total}} {
		t.Run(tc.name, func(t *testing.T) {
			s := memory.New()
			st := memory.NewDeliveries(s)
			rc, srv := newReceiver(t)
			srv.Close()
			var conns atomic.Int64
			srv = httptest.NewUnstartedServer(srv.Config.Handler)
			srv.Config.ConnState = func(_ net.Conn, cs http.ConnState) {
				if cs == http.StateNew {
					conns.Add(1)
				}
			}
			srv.Start()
			t.Cleanup(srv.Close)
			// Every transfer's events are stored first: there are many
			// transfers' heads to send at once.
			seed(t, s, "acme", 0, transfers, n)
			cfg := webhooks.Config{Owner: "a", Concurrency: total, EndpointConcurrency: perEndpoint}
			if tc.drain {
				d := webhooks.New(cfg, st, endpoint(srv.URL), render, zerolog.Nop(), prometheus.NewRegistry())
				if err := d.Drain(context.Background()); err != nil {
					t.Fatal(err)
				}
			} else {
				_, w := newDispatcher(t, st, endpoint(srv.URL), cfg)
				rc.waitN(t, transfers*n)
				w.idle(t)
			}
			if got := len(rc.hits()); got != transfers*n {
				t.Fatalf("%d deliveries arrived, want %d", got, transfers*n)
			}
			if got := conns.Load(); got > tc.bound {
				t.Errorf("%d deliveries opened %d connections, want at most %d", transfers*n, got, tc.bound)
			}
			t.Logf("%d deliveries over %d connections", transfers*n, conns.Load())
		})
	}
}
