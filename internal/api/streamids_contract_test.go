package api_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
)

// The stream's ids the contract refuses (StreamEventID), the server
// refuses too, as every request the contract refuses (specRejects). It
// read a plain number with strconv.ParseInt, which also takes a sign:
// "+0" and "-0" were the start of the stream (found by review), and a
// client generated from the spec, or a proxy validating against it,
// disagreed with the server about what an id is.
func TestStreamIDsTheContractRefusesAreRefused(t *testing.T) {
	c := loadContract(t)
	e := newEventsEnv(t)
	for _, v := range []string{"+0", "-0", "+1", "0x1", "1e3", strings.Repeat("A", 21), strings.Repeat("A", 23), "AAAAAAAAAAAAAAAAAAAAA="} {
		for _, where := range []string{"after", "Last-Event-ID"} {
			path := "/v1/events"
			hdr := []string{}
			if where == "after" {
				path += "?after=" + url.QueryEscape(v)
			} else {
				hdr = []string{"Last-Event-ID", v}
			}
			// The contract's verdict.
			vreq, _ := http.NewRequest("GET", e.srv.URL+path, http.NoBody)
			vreq.Header.Set("Authorization", "Bearer "+readKey)
			for i := 0; i+1 < len(hdr); i += 2 {
				vreq.Header[http.CanonicalHeaderKey(hdr[i])] = []string{hdr[i+1]}
			}
			route, params, err := c.router.FindRoute(vreq)
			if err != nil {
				t.Fatal(err)
			}
			specErr := openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{
				Request: vreq, PathParams: params, Route: route,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}})
			if specErr == nil {
				t.Fatalf("%s %q: the contract accepts it", where, v)
			}
			// The server's.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			req := vreq.Clone(ctx)
			res, err := e.srv.Client().Do(req)
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			res.Body.Close()
			cancel()
			if res.StatusCode != http.StatusBadRequest {
				t.Errorf("%s %q: the contract refuses it (%v) but the server answers %d", where, v, firstLine(specErr.Error()), res.StatusCode)
			}
		}
	}
}

func firstLine(s string) string {
	for i := range s {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
