//go:build unix

package api_test

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	transferd "github.com/transferd/transferd"
	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// smallBuffers is a listener whose connections have a small send
// buffer, so that a client that stops reading soon has the server's
// writes wait.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// bufferedEnv is an events server (eventsServer's) with cfg, whose
// connections have small send buffers, and whose streams report on the
// channel it returns each time one has given back its wait slot.
func bufferedEnv(t *testing.T, cfg api.Config) (*eventsEnv, <-chan struct{}) {
	t.Helper()
	return bufferedEnvWrapped(t, cfg, func(h http.Handler) http.Handler { return h })
}

// bufferedEnvWrapped is bufferedEnv with its server's handler wrapped.
func bufferedEnvWrapped(t *testing.T, cfg api.Config, wrap func(http.Handler) http.Handler) (*eventsEnv, <-chan struct{}) {
	t.Helper()
	ended := make(chan struct{}, 100)
	t.Cleanup(api.OnStreamEnd(func() { ended <- struct{}{} })) // runs after the server's Close
	store := memory.New()
	reg := prometheus.NewRegistry()
	eng, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		VerifyTimeout: 200 * time.Millisecond, VisibilityWindow: 20 * time.Millisecond},
		store, []orchestrator.Provider{orchestratortest.NewFake("netsapiens")}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Idempotency = store
	cfg.OpenAPI, cfg.Keys, cfg.CallbackSigner = transferd.OpenAPI, testKeys(t), testSigner(t)
	srv := httptest.NewUnstartedServer(wrap(api.NewServer(cfg, eng, zerolog.Nop(), reg, reg)))
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := eng.Shutdown(ctx); err != nil {
			t.Errorf("engine shutdown: %v", err)
		}
	})
	return &eventsEnv{srv: srv, eng: eng}, ended
}

// openRawStream opens GET /v1/events on a connection of its own with a
// small receive buffer and reads the answer up to the stream's retry:
// line: from then on the server holds a wait slot for it. The caller
// reads the rest, or nothing.
func openRawStream(t *testing.T, e *eventsEnv, key string) *bufio.Reader {
	t.Helper()
	return openRawStreamAt(t, e, key, "")
}

// openRawStreamAt is openRawStream resuming after the event id after ("":
// from now on).
func openRawStreamAt(t *testing.T, e *eventsEnv, key, after string) *bufio.Reader {
	t.Helper()
	// The buffer is made small before the connection is: shrunk after,
	// below the window already offered, the kernel drops what arrives
	// beyond it, and the server's retransmissions, not the client's
	// reading, pace the stream.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return cmp.Or(err, serr)
	}}
	c, err := d.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	resume := ""
	if after != "" {
		resume = "Last-Event-ID: " + after + "\r\n"
	}
	fmt.Fprintf(c, "GET /v1/events HTTP/1.1\r\nHost: transferd\r\nAuthorization: Bearer %s\r\n%s\r\n", key, resume)
	br := bufio.NewReaderSize(c, 512)
	status, err := br.ReadString('\n')
	if err != nil || !strings.Contains(status, " 200 ") {
		t.Fatalf("stream: %q %v", status, err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		if strings.HasPrefix(line, "retry:") {
			return br
		}
	}
}

// create starts the i-th transfer of a test, which the fake completes at
// once (a handful of events), and returns its id.
func (e *eventsEnv) create(t *testing.T, i int) string {
	t.Helper()
	return decodeBody[struct{ ID string }](t, e.req(t, "POST", "/v1/transfers", writeKey,
		fmt.Sprintf(`{"provider":"netsapiens","call":{"domain":"acme.example","user":"%d"},"target":"1010"}`, 1000+i)), http.StatusAccepted).ID
}

// A client that opens a stream and stops reading held its connection,
// and its tenant's wait slot (max_waits), until it went: the stream's
// write deadline was cleared, and once the socket's buffers were full
// the write waited for good. Each write now has the server's write
// timeout: the stream is cut, and the slot free for another.
func TestAStreamWhoseClientStopsReadingIsCut(t *testing.T) {
	e, ended := bufferedEnv(t, api.Config{Limits: api.Limits{MaxWaits: 1}, WriteTimeout: 100 * time.Millisecond})
	openRawStream(t, e, readKey)
	if res := e.req(t, "GET", "/v1/events", readKey, ""); res.StatusCode != http.StatusTooManyRequests {
		res.Body.Close()
		t.Fatalf("a second stream while the first is open: %d, want 429", res.StatusCode)
	}

	// Events the client does not read: enough to fill its buffers and
	// the server's many times over.
	cut := false
	for i := 0; i < 100 && !cut; i++ {
		e.create(t, i)
		select {
		case <-ended:
			cut = true
		default:
		}
	}
	if !cut {
		select {
		case <-ended:
		case <-time.After(failAfter):
			t.Fatal("the stream of a client that reads nothing still holds its wait slot")
		}
	}

	// Its slot is free: another stream opens.
	res := e.req(t, "GET", "/v1/events", readKey, "")
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("a stream once the stuck one was cut: %d, want 200", res.StatusCode)
	}
}

// slowWrites is a server whose event streams' writes to the socket each
// take step of a virtual clock, and which checks that each is made
// within the write deadline last set, counted on that clock: a deadline
// is taken as the time it leaves from the moment it is set. A flush
// reaches the socket; a write does once the bytes written since the last
// flush pass socketAfter, a smaller buffer than the server's, so that
// the model has more writes wait than the server does. With step under
// the write timeout, a write made under its own deadline passes, and one
// under a deadline set for an earlier write, which a slow write has
// since used up, does not. So the guards below need no real slow client
// and no timing margin.
type slowWrites struct {
	step time.Duration

	mu       sync.Mutex
	now      time.Time // the virtual clock
	deadline time.Time // the write deadline in force, on that clock
	writes   int       // the writes that reached the socket
	pending  int       // bytes written since the last flush
	late     []string  // the writes made past their deadline
}

// socketAfter is how many bytes written since the last flush slowWrites
// takes to reach the socket.
const socketAfter = 512

func (s *slowWrites) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/events" {
			h.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(&slowWriter{ResponseWriter: w, s: s}, r)
	})
}

// took moves the clock on by a write's step and notes a write past the
// deadline. The caller holds s.mu.
func (s *slowWrites) took(what string) {
	s.now = s.now.Add(s.step)
	s.writes++
	if s.deadline.IsZero() || s.now.After(s.deadline) {
		s.late = append(s.late, fmt.Sprintf("%s #%d", what, s.writes))
	}
}

// check fails t if a write was made past its deadline, or if fewer than
// atLeast writes were made (a check of nothing).
func (s *slowWrites) check(t *testing.T, atLeast int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writes < atLeast {
		t.Fatalf("%d writes seen, want at least %d", s.writes, atLeast)
	}
	if len(s.late) > 0 {
		t.Fatalf("%d writes made past the write deadline set before them, each write taking %s; the first: %v", len(s.late), s.step, s.late[:min(len(s.late), 5)])
	}
}

type slowWriter struct {
	http.ResponseWriter
	s *slowWrites
}

func (w *slowWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	if w.s.pending += len(p); w.s.pending > socketAfter {
		w.s.pending = 0
		w.s.took("write")
	}
	w.s.mu.Unlock()
	return w.ResponseWriter.Write(p)
}

func (w *slowWriter) FlushError() error {
	w.s.mu.Lock()
	w.s.pending = 0
	w.s.took("flush")
	w.s.mu.Unlock()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *slowWriter) SetWriteDeadline(d time.Time) error {
	w.s.mu.Lock()
	if d.IsZero() {
		w.s.deadline = time.Time{}
	} else {
		w.s.deadline = w.s.now.Add(time.Until(d))
	}
	w.s.mu.Unlock()
	return http.NewResponseController(w.ResponseWriter).SetWriteDeadline(d)
}

func (w *slowWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// A stream idle for longer than the write timeout is not cut: each
// keep-alive, and the event after them, has a deadline of its own, not
// one set for an earlier write that passed meanwhile. Each write takes
// two thirds of the write timeout, on slowWrites' clock.
func TestAnIdleStreamOutlivesTheWriteTimeout(t *testing.T) {
	const writeTimeout = time.Hour
	slow := &slowWrites{step: 2 * writeTimeout / 3, now: time.Unix(0, 0)}
	t.Cleanup(api.SetStreamKeepAlive(10 * time.Millisecond)) // runs after the server's Close
	e, _ := bufferedEnvWrapped(t, api.Config{WriteTimeout: writeTimeout}, slow.wrap)
	br := openRawStream(t, e, readKey)
	line := func() string {
		t.Helper()
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("the stream ended: %v", err)
		}
		return l
	}
	for keepAlives := 0; keepAlives < 3; {
		if l := line(); strings.HasPrefix(l, ": keep-alive") {
			keepAlives++
		} else if l != "\r\n" && l != "\n" && !isChunkSize(l) {
			t.Fatalf("an idle stream sent %q", l)
		}
	}
	e.create(t, 0)
	for !strings.HasPrefix(line(), "event: transfer.created") {
	}
	// The retry line, three keep-alives and the event: each flushed.
	slow.check(t, 5)
}

// isChunkSize reports whether l is the size line of an HTTP/1.1 chunk.
func isChunkSize(l string) bool {
	l = strings.TrimSpace(l)
	if l == "" {
		return false
	}
	for _, c := range l {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// A client that reads slowly, but reads, is sent every event: a page of
// events that takes it several write timeouts to read whole is not cut,
// each event having the write timeout to reach it. Each write takes two
// thirds of the write timeout, on slowWrites' clock.
func TestASlowClientThatReadsIsNotCut(t *testing.T) {
	const writeTimeout = time.Hour
	const transfers = 25
	slow := &slowWrites{step: 2 * writeTimeout / 3, now: time.Unix(0, 0)}
	e, _ := bufferedEnvWrapped(t, api.Config{WriteTimeout: writeTimeout}, slow.wrap)
	ctx, cancel := context.WithTimeout(orchestrator.WithTenant(context.Background(), "default"), failAfter)
	defer cancel()
	for i := range transfers {
		id := e.create(t, i)
		got, err := e.eng.Wait(ctx, id, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
		if err != nil || got.State != orchestrator.StateCompleted {
			t.Fatalf("transfer %s: %v, %v; want it completed", id, got, err)
		}
	}
	// From the first event: the stream's first read is one page, well
	// over 100 kB, whose events are written one after the other.
	br := openRawStreamAt(t, e, readKey, "0")
	buf := make([]byte, 4096)
	var got strings.Builder
	for completed := 0; completed < transfers; {
		n, err := br.Read(buf)
		if err != nil {
			t.Fatalf("the stream of a slow client ended after %d completions: %v", completed, err)
		}
		got.Write(buf[:n])
		completed = strings.Count(got.String(), "event: transfer.completed\n")
	}
	slow.check(t, 5*transfers) // a handful of events a transfer, each over socketAfter
}
