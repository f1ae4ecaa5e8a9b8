package webhooks_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// stallsEveryBody are receivers that answer each attempt 200 and send
// the first bytes of its body, then stall it until release is closed or
// the connection is closed. stalled counts the bodies stalled now, by
// receiver; changed is signalled whenever one stalls or is cut.
type stallsEveryBody struct {
	mu      sync.Mutex
	stalled map[string]int
	changed chan struct{}
	release chan struct{}
}

func newStallsEveryBody() *stallsEveryBody {
	return &stallsEveryBody{stalled: map[string]int{}, changed: make(chan struct{}, 1), release: make(chan struct{})}
}

// server starts the receiver named name.
func (s *stallsEveryBody) server(t *testing.T, name string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read to its end, so that the server notices the connection
		// closing (the request's context) while the handler stalls.
		_, _ = io.Copy(io.Discard, r.Body)
		const body = `{"ok":true}`
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, body[:4])
		w.(http.Flusher).Flush()
		s.count(name, 1)
		defer s.count(name, -1)
		select {
		case <-s.release:
			_, _ = io.WriteString(w, body[4:])
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func (s *stallsEveryBody) count(name string, n int) {
	s.mu.Lock()
	s.stalled[name] += n
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// settles waits until at most most bodies are stalled in all and at
// most each by any one receiver, and fails the test if they never are.
func (s *stallsEveryBody) settles(t *testing.T, most, each int) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		s.mu.Lock()
		all, one, over := 0, 0, ""
		for name, n := range s.stalled {
			all += n
			if n > one {
				one, over = n, name
			}
		}
		s.mu.Unlock()
		if all <= most && one <= each {
			return
		}
		select {
		case <-s.changed:
		case <-deadline:
			t.Fatalf("%d answers' bodies stalled and still read, %d of them by %s; want at most %d, and %d a receiver",
				all, one, over, most, each)
		}
	}
}

// TestAStalledBodyIsReadWithinItsEndpointsShare: the rest of an answer's
// body is read once the attempt has ended, and the endpoint's next
// attempt goes meanwhile. A receiver that stalls every body was read as
// many at once as it was sent attempts within bodyDrain (a connection
// and a goroutine each: at a few thousand deliveries a second, as many
// sockets), where an attempt that held its slot kept it to its share.
// The reads of an endpoint's bodies are now as many as its share
// (EndpointConcurrency) at most; a body beyond is closed unread, and its
// connection with it.
func TestAStalledBodyIsReadWithinItsEndpointsShare(t *testing.T) {
	const events, share = 8, 2
	s := memory.New()
	st := memory.NewDeliveries(s)
	rc := newStallsEveryBody()
	srv := rc.server(t, "acme")
	seed(t, s, "acme", 0, 1, events)
	_, w := newDispatcher(t, st, endpoint(srv.URL), webhooks.Config{Owner: "a", Concurrency: 2 * share, EndpointConcurrency: share,
		Timeout: time.Hour}, func(d *webhooks.Dispatcher) { webhooks.SetBodyDrain(d, time.Hour) })
	t.Cleanup(func() { close(rc.release) }) // before the dispatcher is stopped
	deadline := time.After(30 * time.Second)
	for delivered := 0; delivered < events; {
		select {
		case dl := <-w.ch:
			if dl.Status != webhooks.StatusDelivered {
				t.Fatalf("%s (seq %d): %s (%s), want delivered", dl.ID, dl.Seq, dl.Status, dl.LastError)
			}
			delivered++
		case <-deadline:
			t.Fatalf("%d of the transfer's %d events delivered", delivered, events)
		}
	}
	rc.settles(t, share, share)
}

// TestStalledBodiesAreReadWithinTheSlots: however many endpoints stall
// their bodies, the bodies read at once are as many as the slots
// (Concurrency) at most: each endpoint's share alone let a host of many
// tenants' receivers that stall them hold a connection and a goroutine
// for each of their shares.
func TestStalledBodiesAreReadWithinTheSlots(t *testing.T) {
	const receivers, events, slots = 3, 4, 2
	s := memory.New()
	st := memory.NewDeliveries(s)
	rc := newStallsEveryBody()
	dir := webhooks.Static{}
	for i := range receivers {
		tenant := fmt.Sprintf("t%d", i)
		dir[tenant] = []webhooks.Endpoint{{ID: "crm", URL: rc.server(t, tenant).URL, Secrets: []string{secretOld}}}
		seed(t, s, tenant, i*10, 1, events)
	}
	_, w := newDispatcher(t, st, dir, webhooks.Config{Owner: "a", Concurrency: slots, EndpointConcurrency: slots, Timeout: time.Hour},
		func(d *webhooks.Dispatcher) { webhooks.SetBodyDrain(d, time.Hour) })
	t.Cleanup(func() { close(rc.release) })
	deadline := time.After(30 * time.Second)
	for delivered := 0; delivered < receivers*events; {
		select {
		case dl := <-w.ch:
			if dl.Status != webhooks.StatusDelivered {
				t.Fatalf("%s (seq %d): %s (%s), want delivered", dl.ID, dl.Seq, dl.Status, dl.LastError)
			}
			delivered++
		case <-deadline:
			t.Fatalf("%d of the %d events delivered", delivered, receivers*events)
		}
	}
	rc.settles(t, slots, slots)
}
