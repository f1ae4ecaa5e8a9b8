package sendgate_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/transferd/transferd/internal/sendgate"
)

// counting serves every request 200 and counts those it received whole.
func counting(t *testing.T, tls bool) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err == nil {
			n.Add(1)
		}
	})
	var srv *httptest.Server
	if tls {
		srv = httptest.NewUnstartedServer(h)
		srv.EnableHTTP2 = true
		srv.StartTLS()
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv, &n
}

func post(t *testing.T, c *http.Client, ctx context.Context, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

// A request whose gate is shut is not written: not when the gate
// is shut before the request is made, nor when it shuts between the
// request getting its connection and writing to it (a process stopped
// there, woken after its heartbeat ran out). A request without a gate on
// the same pooled connection goes out as before.
func TestARequestIsNotWrittenOnceItsGateShuts(t *testing.T) {
	srv, received := counting(t, false)
	c := &http.Client{Transport: sendgate.Transport(http.DefaultTransport.(*http.Transport).Clone())}

	open := sendgate.With(context.Background(), func() bool { return true })
	if _, err := post(t, c, open, srv.URL); err != nil {
		t.Fatalf("a request whose gate is open: %v", err)
	}

	shut := sendgate.With(context.Background(), func() bool { return false })
	if _, err := post(t, c, shut, srv.URL); !errors.Is(err, sendgate.ErrClosed) {
		t.Errorf("a request whose gate is shut: %v, want ErrClosed", err)
	}

	// Open for the look before the request, shut by its first write.
	var looks atomic.Int32
	shutting := sendgate.With(context.Background(), func() bool { return looks.Add(1) == 1 })
	if _, err := post(t, c, shutting, srv.URL); !errors.Is(err, sendgate.ErrClosed) {
		t.Errorf("a request whose gate shut before its write: %v, want ErrClosed", err)
	}
	if n := looks.Load(); n < 2 {
		t.Errorf("the gate was looked at %d times, want before the request and at its write", n)
	}

	if _, err := post(t, c, context.Background(), srv.URL); err != nil {
		t.Fatalf("a request without a gate: %v", err)
	}
	if n := received.Load(); n != 2 {
		t.Errorf("the server received %d requests, want 2: the two whose gate was open or absent", n)
	}
}

// A connection carries one request's gate at a time, so the clients keep
// to HTTP/1.1, where a connection serves one request at a time, also with
// a server that offers HTTP/2.
func TestGatedClientsKeepToHTTP1(t *testing.T) {
	srv, _ := counting(t, true)
	tr := srv.Client().Transport.(*http.Transport)
	c := &http.Client{Transport: sendgate.Transport(tr.Clone())}
	resp, err := post(t, c, sendgate.With(context.Background(), func() bool { return true }), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ProtoMajor != 1 {
		t.Errorf("the request went over %s, want HTTP/1.1", resp.Proto)
	}
	shut := sendgate.With(context.Background(), func() bool { return false })
	if _, err := post(t, c, shut, srv.URL); !errors.Is(err, sendgate.ErrClosed) {
		t.Errorf("a request whose gate is shut, over TLS: %v, want ErrClosed", err)
	}
}

// Transport takes h2 out of a copy of the client's NextProtos: a
// Transport cloned from another (http.DefaultTransport, as the adapters'
// are) shares that array, and deleting in place rewrote the original's,
// racing every client made at once (the race detector caught two
// Bandwidth clients made in parallel tests).
func TestTransportLeavesTheTransportClonedFromAsItWas(t *testing.T) {
	orig := &http.Transport{TLSClientConfig: &tls.Config{NextProtos: []string{"h2", "http/1.1"}}}
	sendgate.Transport(orig.Clone())
	if got := orig.TLSClientConfig.NextProtos; !slices.Equal(got, []string{"h2", "http/1.1"}) {
		t.Errorf("the original's NextProtos are now %q", got)
	}
}
