package apiclient_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/transferd/transferd/internal/providers/apiclient"
)

// ReadBody reads bodies of announced and unannounced length whole, into
// one buffer of the announced size, stops at MaxBody, and reports a body
// that ends before its announced length.
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
	if _, b, err := get("/chunked", len(big)); err != nil || len(b) != apiclient.MaxBody {
		t.Errorf("a body over MaxBody: read %d bytes, %v; want MaxBody", len(b), err)
	}
	if _, b, err := get("/length", len(big)); err != nil || len(b) != apiclient.MaxBody {
		t.Errorf("a body announced over MaxBody: read %d bytes, %v; want MaxBody", len(b), err)
	}
	if _, _, err := get("/short", 100); err == nil {
		t.Errorf("a body shorter than its Content-Length read without an error")
	}
}
