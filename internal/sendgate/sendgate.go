// Package sendgate lets a request leave only while its sender may still
// send it: a check made right before every write to the connection.
//
// A replica decides to send under a claim that runs out on its own (a
// step under the replica's heartbeat, a webhook attempt under its
// delivery's lease). A process stopped between that decision and the
// write of the request (SIGSTOP, a VM paused, a long stall) wakes with
// the claim run out, another replica having taken the work over, and
// writes what it had decided: the storm that pauses replicas
// (TRANSFERD_STORM_PAUSES) saw a hold written after the new owner had
// given the caller back, and the caller left held. A request's context
// cancelled when the claim runs out does not stop it: the write and the
// timer that cancels it both run when the process wakes, in no set
// order.
//
// So the sender's check (With) is made again right before every write to
// the connection: the transport's connections are wrapped (gatedConn),
// each request hands its check to the connection it gets (httptrace's
// GotConn, before the request is written), and a write the check refuses
// fails, and the transport closes the connection, so that no part of the
// request leaves after it. What is left is the instant between the check
// and the system call. HTTP/2 is off for these clients: its requests
// share one connection, and a connection carries one request's check at a
// time.
package sendgate

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"sync/atomic"
)

type key struct{}

// With returns ctx whose requests must pass gate right before each
// write: the engine gives each step's requests its own, the webhook
// dispatcher each attempt.
func With(ctx context.Context, gate func() bool) context.Context {
	return context.WithValue(ctx, key{}, gate)
}

// Of returns the check a request made under ctx must pass at the moment
// it is written (With), or nil for requests no claim makes (a watcher's
// reads).
func Of(ctx context.Context) func() bool {
	g, _ := ctx.Value(key{}).(func() bool)
	return g
}

// ErrClosed is the error of a request whose write its check refused: the
// claim it was decided under ran out before it was written.
var ErrClosed = errors.New("not sent: the claim it was decided under ran out before it was written")

// gatedTransport hands each request's check to its connection.
type gatedTransport struct{ next http.RoundTripper }

func (g gatedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	gate := Of(req.Context())
	if gate != nil && !gate() {
		return nil, ErrClosed
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
		return 0, ErrClosed
	}
	return c.Conn.Write(b)
}

// Transport makes t's connections check their requests' gates (With)
// before each write, and keeps t to HTTP/1.1. The provider adapters'
// default clients and the webhook dispatcher's are made with it; a client
// either is given should be too.
func Transport(t *http.Transport) http.RoundTripper {
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
		// A copy: Clone shares NextProtos' array with the config cloned
		// (http.DefaultTransport's, whose NextProtos net/http fills), and
		// deleting in place rewrote that one, racing every other client
		// made at once.
		t.TLSClientConfig.NextProtos = slices.DeleteFunc(slices.Clone(t.TLSClientConfig.NextProtos), func(p string) bool { return p == "h2" })
	}
	return gatedTransport{next: t}
}
