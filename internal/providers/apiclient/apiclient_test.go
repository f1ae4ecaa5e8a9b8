package apiclient_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/apiclient"
	"github.com/transferd/transferd/internal/sendgate"
)

// ReadBody reads bodies of announced and unannounced length whole, into
// one buffer of the announced size; a body over MaxBody yields its first
// MaxBody bytes and ErrBodyTooLong, and one of exactly MaxBody is read
// whole; a body that ends before its announced length is an error.
func TestReadBody(t *testing.T) {
	big := bytes.Repeat([]byte("x"), apiclient.MaxBody+10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		switch r.URL.Path {
		case "/length":
			w.Header().Set("Content-Length", strconv.Itoa(n))
			_, _ = w.Write(big[:n])
		case "/chunked":
			for i := 0; i < n; i += 1000 {
				_, _ = w.Write(big[i:min(i+1000, n)])
				w.(http.Flusher).Flush()
			}
		case "/short":
			w.Header().Set("Content-Length", strconv.Itoa(n+5))
			_, _ = w.Write(big[:n])
		}
	}))
	defer srv.Close()
	get := func(path string, n int) (*http.Response, []byte, error) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path + "?n=" + strconv.Itoa(n))
		if err != nil {
			t.Fatal(err)
		}
		b, err := apiclient.ReadBody(resp)
		return resp, b, err
	}
	for _, n := range []int{0, 1, 511, 512, 4096, 70_000} {
		resp, b, err := get("/length", n)
		if err != nil || !bytes.Equal(b, big[:n]) {
			t.Errorf("Content-Length %d: read %d bytes, %v", n, len(b), err)
		}
		if resp.ContentLength != int64(n) || cap(b) != n+1 {
			t.Errorf("Content-Length %d (response says %d): buffer of %d, want one of %d", n, resp.ContentLength, cap(b), n+1)
		}
		if _, b, err := get("/chunked", n); err != nil || !bytes.Equal(b, big[:n]) {
			t.Errorf("chunked %d: read %d bytes, %v", n, len(b), err)
		}
	}
	for _, path := range []string{"/chunked", "/length"} {
		if _, b, err := get(path, len(big)); !errors.Is(err, apiclient.ErrBodyTooLong) || !bytes.Equal(b, big[:apiclient.MaxBody]) {
			t.Errorf("%s, a body over MaxBody: read %d bytes, %v; want MaxBody and ErrBodyTooLong", path, len(b), err)
		}
		if _, b, err := get(path, apiclient.MaxBody); err != nil || !bytes.Equal(b, big[:apiclient.MaxBody]) {
			t.Errorf("%s, a body of MaxBody: read %d bytes, %v", path, len(b), err)
		}
	}
	if _, _, err := get("/short", 100); err == nil {
		t.Errorf("a body shorter than its Content-Length read without an error")
	}
}

// ReadBodyLimit holds a response to its own limit, above or below MaxBody.
func TestReadBodyLimit(t *testing.T) {
	big := bytes.Repeat([]byte("y"), 3*apiclient.MaxBody)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		_, _ = w.Write(big[:n])
	}))
	defer srv.Close()
	read := func(n int, limit int64) ([]byte, error) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + "/?n=" + strconv.Itoa(n))
		if err != nil {
			t.Fatal(err)
		}
		return apiclient.ReadBodyLimit(resp, limit)
	}
	if b, err := read(len(big), 4*apiclient.MaxBody); err != nil || len(b) != len(big) {
		t.Errorf("%d bytes under a limit of %d: read %d, %v", len(big), 4*apiclient.MaxBody, len(b), err)
	}
	if b, err := read(len(big), 2*apiclient.MaxBody); !errors.Is(err, apiclient.ErrBodyTooLong) || len(b) != 2*apiclient.MaxBody {
		t.Errorf("%d bytes over a limit of %d: read %d, %v; want the limit and ErrBodyTooLong", len(big), 2*apiclient.MaxBody, len(b), err)
	}
	if b, err := read(100, 10); !errors.Is(err, apiclient.ErrBodyTooLong) || len(b) != 10 {
		t.Errorf("100 bytes over a limit of 10: read %d, %v", len(b), err)
	}
}

// A body over its limit is rejected (as long on every attempt, so not
// retried); any other failure to read one is the connection's.
func TestReadErrKind(t *testing.T) {
	cases := map[error]orchestrator.Kind{
		fmt.Errorf("%w: more than 10 bytes", apiclient.ErrBodyTooLong): orchestrator.KindProviderRejected,
		io.ErrUnexpectedEOF: orchestrator.KindProviderUnavailable,
	}
	for err, want := range cases {
		if got := apiclient.ReadErrKind(err); got != want {
			t.Errorf("ReadErrKind(%v) = %v, want %v", err, got, want)
		}
	}
}

// The adapters' default client checks a step's send gate before it
// writes: a request whose gate is shut never reaches the provider.
func TestTheDefaultClientChecksTheSendGate(t *testing.T) {
	var received atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { received.Add(1) }))
	defer srv.Close()
	c := apiclient.Transport{}.WithDefaults().HTTPClient
	for _, open := range []bool{false, true} {
		ctx := sendgate.With(context.Background(), func() bool { return open })
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, http.NoBody)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		if open != (err == nil) || !open && !errors.Is(err, sendgate.ErrClosed) {
			t.Errorf("gate open %v: %v", open, err)
		}
	}
	if n := received.Load(); n != 1 {
		t.Errorf("the provider received %d requests, want 1: the one whose gate was open", n)
	}
}

// A refusal after an attempt whose answer was lost is an unknown outcome,
// its evidence kept; the kinds that describe the call now, and transient
// ones, pass as they are.
func TestRefusedAfterLoss(t *testing.T) {
	ev := &orchestrator.Evidence{Status: 400, Code: "bridge-invalid-operation"}
	for _, c := range []struct {
		kind, want orchestrator.Kind
	}{
		{orchestrator.KindProviderRejected, orchestrator.KindProviderUnavailable},
		{orchestrator.KindProviderAuth, orchestrator.KindProviderUnavailable},
		{orchestrator.KindCallNotFound, orchestrator.KindCallNotFound},
		{orchestrator.KindCallNotActive, orchestrator.KindCallNotActive},
		{orchestrator.KindProviderUnavailable, orchestrator.KindProviderUnavailable},
	} {
		refusal := errors.New("refused")
		err := apiclient.RefusedAfterLoss(&orchestrator.Error{Op: "bandwidth.join", Kind: c.kind, Err: refusal, Evidence: ev})
		var oe *orchestrator.Error
		if !errors.As(err, &oe) || oe.Kind != c.want || oe.Evidence != ev || oe.Op != "bandwidth.join" || !errors.Is(err, refusal) {
			t.Errorf("%s: %#v, want kind %s with the evidence and the refusal kept", c.kind, err, c.want)
		}
	}
	if plain := errors.New("plain"); apiclient.RefusedAfterLoss(plain) != plain {
		t.Error("an error of no kind changed")
	}
}
