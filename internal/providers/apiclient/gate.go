package apiclient

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"sync/atomic"

	"github.com/transferd/transferd/internal/orchestrator"
)

// A step's request may go out only while its replica still owns the
// transfer: the engine judges so when it decides to send (its heartbeat
// still runs, in the term the step was decided in). A process stopped
// between that decision and the write of the request (SIGSTOP, a VM
// paused, a long stall) woke with its heartbeat run out, another replica
// driving the transfer, and wrote what it had decided as the owner: the
// storm that pauses replicas (TRANSFERD_STORM_PAUSES) saw a hold written
// after the new owner had given the caller back, and the caller left held.
// The context of a request cancelled when the heartbeat expires did not
// stop it: the write and the timer that cancels it both run when the
// process wakes, in no set order.
//
// So the engine's check (orchestrator.SendGate) is made again right
// before every write to the connection: the transport's connections are
// wrapped (gatedConn), each request hands its check to the connection it
// gets (httptrace's GotConn, before the request is written), and a write
// the check refuses fails, and the transport closes the connection, so
// that no part of the request leaves after it. What is left is the instant between the check
// and the system call. HTTP/2 is off for these clients: its requests
// share one connection, and a connection carries one request's check at a
// time.

// ErrGateClosed is the error of a request whose write its step's check
// refused: the replica's heartbeat ran out after the step was decided.
var ErrGateClosed = errors.New("not sent: this replica's heartbeat ran out after the step was decided")

// gatedTransport hands each request's check to its connection.
type gatedTransport struct{ next http.RoundTripper }

func (g gatedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	gate := orchestrator.SendGate(req.Context())
	if gate != nil && !gate() {
		return nil, ErrGateClosed
	}
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if c := gatedOf(info.Conn); c != nil {
			c.set(gate)
		}
	}}
	return g.next.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
}

// gatedOf returns the gatedConn under c (a TLS connection's own), or nil.
func gatedOf(c net.Conn) *gatedConn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	g, _ := c.(*gatedConn)
	return g
}

// gatedConn checks the check of the request it carries before each write.
type gatedConn struct {
	net.Conn
	gate atomic.Pointer[func() bool]
}

func (c *gatedConn) set(gate func() bool) {
	if gate == nil {
		c.gate.Store(nil)
		return
	}
	c.gate.Store(&gate)
}

func (c *gatedConn) Write(b []byte) (int, error) {
	if g := c.gate.Load(); g != nil && !(*g)() {
		// The transport closes a connection a write failed on: the
		// server never gets the rest of the request.
		return 0, ErrGateClosed
	}
	return c.Conn.Write(b)
}

// Gated makes t's connections check their requests' gates
// (orchestrator.SendGate) before each write, and keeps t to HTTP/1.1.
// WithDefaults' client is made with it; a client an adapter is given
// (Transport.HTTPClient) should be too.
func Gated(t *http.Transport) http.RoundTripper {
	dial := t.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &gatedConn{Conn: c}, nil
	}
	t.ForceAttemptHTTP2 = false
	t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	if t.TLSClientConfig != nil {
		t.TLSClientConfig = t.TLSClientConfig.Clone()
		t.TLSClientConfig.NextProtos = slices.DeleteFunc(t.TLSClientConfig.NextProtos, func(p string) bool { return p == "h2" })
	}
	return gatedTransport{next: t}
}
