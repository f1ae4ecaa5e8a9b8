package api_test

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"strings"
	"testing"
)

// TestACompressedBodyIsAnUnsupportedMediaType: a create sent gzipped
// (Content-Encoding: gzip, which some HTTP clients add on their own) was
// read as JSON as it came, and answered 400 malformed-request, "invalid
// JSON at byte 1: invalid character '\x1f'", which tells the client
// nothing of the cause (found by review). transferd decodes no content
// coding: it is a 415 that says so, with Accept-Encoding: identity (RFC
// 7694), and nothing is created. identity, which is no coding, is taken.
func TestACompressedBodyIsAnUnsupportedMediaType(t *testing.T) {
	e := newEnv(t)
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	if _, err := zw.Write([]byte(createBody("1000", "auto"))); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	r := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Content-Encoding", "gzip"), body: zipped.String()}, true)
	if p := r.problem(t); r.status != http.StatusUnsupportedMediaType || !strings.HasSuffix(p.Type, "#unsupported-media-type") ||
		!strings.Contains(string(r.body), "Content-Encoding") || r.header.Get("Accept-Encoding") != "identity" {
		t.Errorf("a gzipped create answered %d, Accept-Encoding %q; want a 415 naming Content-Encoding, with Accept-Encoding: identity:\n%.300s",
			r.status, r.header.Get("Accept-Encoding"), r.body)
	}
	if calls := e.fake.Calls(); len(calls) != 0 {
		t.Errorf("a refused create reached the provider: %v", calls)
	}
	r = e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Content-Encoding", "identity"), body: createBody("1001", "auto")}, false)
	if r.status != http.StatusAccepted {
		t.Errorf("a create with Content-Encoding: identity answered %d, want 202:\n%.300s", r.status, r.body)
	}
}
