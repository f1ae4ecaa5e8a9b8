package webhooks_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// stallsAfterStatus is a receiver that answers each attempt 200 with a
// body of which it sends the first bytes and then stalls: the first
// attempt until release is closed or its connection is closed (cut), the
// others not at all. stalled is signalled once the first attempt's
// status and first bytes are flushed.
type stallsAfterStatus struct {
	srv     *httptest.Server
	got     atomic.Int64
	stalled chan struct{}
	release chan struct{}
	cut     chan struct{}
}

func newStallsAfterStatus(t *testing.T) *stallsAfterStatus {
	s := &stallsAfterStatus{stalled: make(chan struct{}), release: make(chan struct{}), cut: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read to its end, so that the server notices the connection
		// closing (the request's context) while the handler stalls.
		_, _ = io.Copy(io.Discard, r.Body)
		const body = `{"ok":true}`
		w.Header().Set("Content-Length", "11")
		w.WriteHeader(http.StatusOK)
		if s.got.Add(1) != 1 {
			_, _ = io.WriteString(w, body)
			return
		}
		_, _ = io.WriteString(w, body[:4])
		w.(http.Flusher).Flush()
		close(s.stalled)
		select {
		case <-s.release:
			_, _ = io.WriteString(w, body[4:])
		case <-r.Context().Done():
			close(s.cut)
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// TestAReceiverThatStallsAfterItsStatusHoldsNoSlot: once the status is
// known the attempt's outcome is (a 2xx is delivered); the rest of the
// body only serves the connection's reuse. The attempt used to read it
// before it ended, and a receiver that sent its status line and stalled
// held its slot, its result unwritten and its transfer's next event with
// it, for the whole Timeout (an hour here): with one slot, the second
// event went out only then.
func TestAReceiverThatStallsAfterItsStatusHoldsNoSlot(t *testing.T) {
	s := memory.New()
	st := memory.NewDeliveries(s)
	rc := newStallsAfterStatus(t)
	seed(t, s, "acme", 0, 1, 2)
	_, w := newDispatcher(t, st, endpoint(rc.srv.URL), webhooks.Config{Owner: "a", Concurrency: 1, Timeout: time.Hour})
	t.Cleanup(func() { close(rc.release) }) // before the dispatcher is stopped
	<-rc.stalled
	timeout := time.After(30 * time.Second)
	for delivered := 0; delivered < 2; {
		select {
		case dl := <-w.ch:
			if dl.Status != webhooks.StatusDelivered || dl.LastCode != http.StatusOK {
				t.Fatalf("%s (seq %d): %s, code %d (%s), want delivered with 200", dl.ID, dl.Seq, dl.Status, dl.LastCode, dl.LastError)
			}
			delivered++
		case <-timeout:
			t.Fatalf("%d of the transfer's 2 events delivered while the receiver stalls after the first one's status, want both", delivered)
		}
	}
	if got := rc.got.Load(); got != 2 {
		t.Errorf("%d attempts, want 2", got)
	}
}

// TestABodyStalledPastItsBoundClosesTheConnection: the rest of a body is
// read for a short while only (a second, not the attempt's Timeout),
// and a receiver that does not send it by then has its connection
// closed; the attempt counts as delivered all the same.
func TestABodyStalledPastItsBoundClosesTheConnection(t *testing.T) {
	s := memory.New()
	st := memory.NewDeliveries(s)
	rc := newStallsAfterStatus(t)
	t.Cleanup(func() { close(rc.release) })
	seed(t, s, "acme", 0, 1, 2)
	d := webhooks.New(webhooks.Config{Owner: "a", Concurrency: 1, Timeout: time.Hour}, st, endpoint(rc.srv.URL), render,
		zerolog.Nop(), prometheus.NewRegistry())
	var delivered atomic.Int64
	webhooks.OnFinish(d, func(dl webhooks.Delivery) {
		if dl.Status == webhooks.StatusDelivered {
			delivered.Add(1)
		}
	})
	drained := make(chan error, 1)
	go func() { drained <- d.Drain(context.Background()) }()
	select {
	case err := <-drained:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the drain did not return while the receiver stalls its first body")
	}
	// The server hears of the closed connection on its own time.
	select {
	case <-rc.cut:
	case <-time.After(30 * time.Second):
		t.Fatal("the stalled body's connection is still open")
	}
	if got := delivered.Load(); got != 2 {
		t.Errorf("%d of the transfer's 2 events delivered, want both", got)
	}
}

// TestAHealthyBodyIsReadAndItsConnectionReused: the rest of a body read
// after the attempt ended is read to its end, not cut, so that the
// endpoint's next attempt reuses the connection. The test lets each
// attempt end only once its body was read (the read is its own goroutine,
// which the next attempt's claim would otherwise race): one connection
// for a transfer's ten events, one at a time. With one slot, each read
// ended must give back its count (startReading), or the next body is
// closed unread and its connection with it.
func TestAHealthyBodyIsReadAndItsConnectionReused(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  webhooks.Config
	}{{"default", webhooks.Config{Owner: "a"}}, {"one slot", webhooks.Config{Owner: "a", Concurrency: 1}}} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 10
			s := memory.New()
			st := memory.NewDeliveries(s)
			var conns atomic.Int64
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				_, _ = io.WriteString(w, `{"received":true}`)
			}))
			srv.Config.ConnState = func(_ net.Conn, cs http.ConnState) {
				if cs == http.StateNew {
					conns.Add(1)
				}
			}
			srv.Start()
			t.Cleanup(srv.Close)
			seed(t, s, "acme", 0, 1, n)
			d := webhooks.New(tc.cfg, st, endpoint(srv.URL), render, zerolog.Nop(), prometheus.NewRegistry())
			read := make(chan struct{}, n)
			webhooks.OnBodyDrained(d, func() { read <- struct{}{} })
			webhooks.OnAttemptEnd(d, func() { <-read })
			if err := d.Drain(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n, _, err := st.DeliveryBacklog(context.Background()); err != nil || n != 0 {
				t.Fatalf("%d deliveries still pending (%v)", n, err)
			}
			if got := conns.Load(); got != 1 {
				t.Errorf("%d events opened %d connections, want 1", n, got)
			}
		})
	}
}

// TestRunAndDrainReturnOnceTheirBodiesAreRead: the rest of an answer's
// body is read on a goroutine of its own after the attempt ended, and
// Run (once its ctx is done) and Drain return only once those reads have
// ended too, so that no goroutine of theirs outlives them (what the
// caller does next, a process's exit or a test's end, does not race
// them). The receiver stalls the body until its read is cut (bodyDrain,
// a second); each returns with it read, not at once.
func TestRunAndDrainReturnOnceTheirBodiesAreRead(t *testing.T) {
	for _, drain := range []bool{false, true} {
		t.Run(map[bool]string{false: "run", true: "drain"}[drain], func(t *testing.T) {
			s := memory.New()
			st := memory.NewDeliveries(s)
			rc := newStallsAfterStatus(t)
			t.Cleanup(func() { close(rc.release) })
			seed(t, s, "acme", 0, 1, 1)
			d := webhooks.New(webhooks.Config{Owner: "a", Timeout: time.Hour}, st, endpoint(rc.srv.URL), render,
				zerolog.Nop(), prometheus.NewRegistry())
			var read atomic.Int64
			webhooks.OnBodyDrained(d, func() { read.Add(1) })
			if drain {
				if err := d.Drain(context.Background()); err != nil {
					t.Fatal(err)
				}
			} else {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				// Stopped once the attempt's result is stored: its body
				// is still stalled.
				webhooks.OnFinish(d, func(webhooks.Delivery) { cancel() })
				d.Run(ctx)
			}
			if got := read.Load(); got != 1 {
				t.Errorf("returned with %d of the answer's 1 body read", got)
			}
		})
	}
}
