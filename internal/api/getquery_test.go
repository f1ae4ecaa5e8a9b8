package api_test

import (
	"net/http"
	"testing"
)

// TestGetsRefuseUnknownQueryParameters: the lists and the POSTs refuse a
// query parameter they do not know, but GET /v1/transfers/{id}?dry_run=true
// and /events?foo=1 answered 200 as if it had not been sent (found by
// review): a client's ?fields=state or ?wait=10 would be silently not
// honoured. Each is a 400 naming the parameter, HEAD included.
func TestGetsRefuseUnknownQueryParameters(t *testing.T) {
	e := newEnv(t)
	created := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("1000", "auto")}, false)
	if created.status != http.StatusAccepted {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	e.ids["t"] = created.transfer(t).ID
	for _, c := range []struct {
		path, field string
	}{
		{"/v1/transfers/<t>?dry_run=true", "dry_run"},
		{"/v1/transfers/<t>/events?foo=1", "foo"},
		{"/v1/transfers/<t>?wait%=1", "(query)"},
	} {
		r := e.do(t, exchange{method: "GET", path: c.path}, false)
		if p := r.problem(t); r.status != http.StatusBadRequest || len(p.Errors) != 1 || p.Errors[0].Field != c.field {
			t.Errorf("GET %s answered %d, want 400 naming %s:\n%s", c.path, r.status, c.field, r.body)
		}
		if r := e.do(t, exchange{method: "HEAD", path: c.path}, false); r.status != http.StatusBadRequest || len(r.body) != 0 {
			t.Errorf("HEAD %s answered %d with %d bytes, want 400 without a body", c.path, r.status, len(r.body))
		}
	}
}
