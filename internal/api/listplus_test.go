package api_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestListNamesAnUnescapedPlus: ?target=+15555550222 pasted into a URL reads
// as " 15555550222" (a + in a query string is a space), which no transfer
// can carry, and answered an empty page, as though no transfer went to that
// number; and ?created_after=…+02:00 was refused without saying why, though
// it is RFC 3339 (found by the demo-mode review). Both are a 400 that says
// to write the + as %2B; %2B itself is taken.
func TestListNamesAnUnescapedPlus(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		query, field string
		specRejects  bool // openapi.yaml's date-time refuses the space too
	}{
		{"target=+15555550222", "target", false},
		{"created_after=2026-01-02T15:04:05+02:00", "created_after", true},
		{"created_before=2026-01-02T15:04:05+02:00", "created_before", true},
	} {
		r := e.do(t, exchange{method: "GET", path: "/v1/transfers?" + tc.query}, tc.specRejects)
		if p := r.problem(t); r.status != http.StatusBadRequest || len(p.Errors) != 1 || p.Errors[0].Field != tc.field ||
			!strings.Contains(string(r.body), "%2B") {
			t.Errorf("?%s answered %d, want a 400 naming %s and %%2B:\n%s", tc.query, r.status, tc.field, r.body)
		}
	}
	for _, q := range []string{"target=%2B15555550222", "created_after=2026-01-02T15:04:05%2B02:00"} {
		if r := e.do(t, exchange{method: "GET", path: "/v1/transfers?" + q}, false); r.status != http.StatusOK {
			t.Errorf("?%s answered %d, want 200:\n%s", q, r.status, r.body)
		}
	}
}

// TestCreateNamesAnUnknownProviderReadably: the problem's detail, the
// field's name followed by its complaint, read "provider unknown provider
// \"ns\"; configured: […]"; it now reads as the list's does.
func TestCreateNamesAnUnknownProviderReadably(t *testing.T) {
	e := newEnv(t)
	r := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
		body: `{"provider":"ns","call":{"domain":"acme.example","user":"1004"},"target":"1010"}`}, true)
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `"detail":"provider \"ns\" is not a configured provider; one of [`) {
		t.Fatalf("create with provider ns answered %d, want a 400 whose detail names the configured providers:\n%s", r.status, r.body)
	}
}

// TestListNamesAnUnknownStateReadably: "state unknown state \"done\"" is
// now "state \"done\" is not a state; one of […]".
func TestListNamesAnUnknownStateReadably(t *testing.T) {
	e := newEnv(t)
	r := e.do(t, exchange{method: "GET", path: "/v1/transfers?state=done"}, true)
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `"detail":"state \"done\" is not a state; one of [pending `) {
		t.Fatalf("?state=done answered %d, want a 400 whose detail lists the states:\n%s", r.status, r.body)
	}
}
