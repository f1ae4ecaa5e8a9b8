package api_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// TestCreateRefusesUnknownQueryParameters: transferd "never ignores what
// it does not understand" (docs/problems.md), and GET /v1/transfers
// refuses any query parameter it does not know. POST /v1/transfers and
// the actions declare none, yet ignored them: an integrator's
// ?dry_run=true (or ?validate_only=1) started a real transfer, putting a
// live caller on hold.
func TestCreateRefusesUnknownQueryParameters(t *testing.T) {
	e := newEnv(t)
	e.fake.SetTarget(orchestratortest.TargetRings)
	r := e.do(t, exchange{method: "POST", path: "/v1/transfers?dry_run=true", header: jsonHeader(), body: createBody("1000", "manual")}, false)
	if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "dry_run") {
		t.Fatalf("POST /v1/transfers?dry_run=true answered %d, want 400 validation-error naming dry_run (nothing started):\n%s", r.status, r.body)
	}
	if calls := e.fake.Calls(); len(calls) != 0 {
		t.Fatalf("the refused create reached the provider: %v", calls)
	}

	r = e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Prefer", "wait=60"), body: createBody("1000", "manual")}, false)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	e.ids["t"] = r.transfer(t).ID
	for _, action := range []string{"cancel", "complete"} {
		got := e.do(t, exchange{method: "POST", path: "/v1/transfers/<t>/" + action + "?force=1", header: jsonHeader()}, false)
		if got.status != http.StatusBadRequest || !strings.Contains(string(got.body), "force") {
			t.Errorf("POST /%s?force=1 answered %d, want 400 naming force:\n%s", action, got.status, got.body)
		}
	}
	if tr := e.do(t, exchange{method: "GET", path: "/v1/transfers/<t>", header: jsonHeader()}, false).transfer(t); tr.State != "consulting" {
		t.Errorf("a refused action changed the transfer: state %s", tr.State)
	}
}

// The query string is part of the request an Idempotency-Key names: the
// same body sent again under the key of a create that was served, with
// ?dry_run=true added, is another request (422), not a repeat to be
// given the create's 202 as if the dry run had been done (found by the
// review of the refusal: the key's fingerprint was the body alone). A
// refusal is not remembered, so the order that found it (the 400 first)
// now serves the second request afresh: the served create comes first.
func TestIdempotencyKeyTellsTheQueryApart(t *testing.T) {
	e := newEnv(t)
	e.fake.SetTarget(orchestratortest.TargetRings)
	const key = "query-key"
	r := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Idempotency-Key", key),
		body: createBody("1000", "manual")}, false)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST /v1/transfers answered %d, want 202:\n%s", r.status, r.body)
	}
	r = e.do(t, exchange{method: "POST", path: "/v1/transfers?dry_run=true", header: jsonHeader("Idempotency-Key", key),
		body: createBody("1000", "manual")}, false)
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("the same key and body with ?dry_run=true answered %d, want 422 (another request under the key):\n%s", r.status, r.body)
	}
}

// Create bounds external_id at 128 characters, as openapi.yaml's
// maxLength counts them, and so does the list's bound: the first version
// of that bound counted bytes, so a transfer created with an external_id
// of 100 accented letters (200 bytes) could not be found by it (found by
// review).
func TestListByANonASCIIExternalID(t *testing.T) {
	e := newEnv(t)
	ext := strings.Repeat("é", 100) // 100 characters, 200 bytes
	created := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
		body: `{"provider":"netsapiens","call":{"domain":"acme.example","user":"1000"},"target":"1010","external_id":"` + ext + `"}`}, false)
	if created.status != http.StatusCreated && created.status != http.StatusAccepted {
		t.Fatalf("create with a 100-character external_id: %d %s", created.status, created.body)
	}
	list := e.do(t, exchange{method: "GET", path: "/v1/transfers?external_id=" + url.QueryEscape(ext)}, false)
	if list.status != http.StatusOK {
		t.Fatalf("listing by the external_id (100 characters) a transfer was just created with answered %d, want 200:\n%s", list.status, list.body)
	}
	if !strings.Contains(string(list.body), created.transfer(t).ID) {
		t.Fatalf("the list by its external_id lacks the transfer %s: %s", created.transfer(t).ID, list.body)
	}
}

// A query string that does not parse is refused, not dropped: url.URL's
// Query drops a pair it cannot unescape, so ?dry_run%=true started a real
// transfer, and a list's ?limit=5&limit%=500 passed as ?limit=5 (found by
// review).
func TestMalformedQueryIsRefused(t *testing.T) {
	e := newEnv(t)
	res := e.do(t, exchange{method: "POST", path: "/v1/transfers?dry_run%=true", header: jsonHeader(),
		body: createBody("1000", "manual")}, false)
	if res.status != http.StatusBadRequest || !strings.Contains(string(res.body), "(query)") {
		t.Fatalf("POST /v1/transfers?dry_run%%=true answered %d, want 400 naming (query):\n%s", res.status, res.body)
	}
	if calls := e.fake.Calls(); len(calls) != 0 {
		t.Fatalf("the refused create reached the provider: %v", calls)
	}
	res = e.do(t, exchange{method: "GET", path: "/v1/transfers?limit=5&limit%=500"}, false)
	if res.status != http.StatusBadRequest || !strings.Contains(string(res.body), "(query)") {
		t.Fatalf("GET /v1/transfers?limit=5&limit%%=500 answered %d, want 400 naming (query):\n%s", res.status, res.body)
	}
}

// An unknown query parameter is named beside whatever the engine refuses:
// the create answered the engine's problem alone (a 422 for an option the
// provider cannot honour, a 400 for a missing target), so a client that
// fixed it and retried with ?dry_run=true still in the URL learnt of the
// parameter only then (found by review). Both together are one 400 naming
// every bad field and parameter: the 422 alone says the request is
// otherwise valid, which it is not.
func TestCreateNamesUnknownQueryBesideTheEnginesProblem(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		name, body string
		fields     []string
	}{
		{"an option the provider cannot honour (422 alone)",
			`{"provider":"netsapiens","call":{"domain":"acme.example","user":"1000"},"target":"1010","whisper":{"sentence":"hi"}}`,
			[]string{"dry_run", "whisper"}},
		{"a missing target (400 alone)",
			`{"provider":"netsapiens","call":{"domain":"acme.example","user":"1000"}}`,
			[]string{"dry_run", "target"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(t, exchange{method: "POST", path: "/v1/transfers?dry_run=true", header: jsonHeader(), body: c.body}, true)
			p := r.problem(t)
			var got []string
			for _, f := range p.Errors {
				got = append(got, f.Field)
			}
			if r.status != http.StatusBadRequest || !strings.HasSuffix(p.Type, "#validation-error") || !slices.Equal(got, c.fields) {
				t.Fatalf("answered %d %s naming %v, want 400 validation-error naming %v:\n%s", r.status, p.Type, got, c.fields, r.body)
			}
		})
	}
	if calls := e.fake.Calls(); len(calls) != 0 {
		t.Fatalf("a refused create reached the provider: %v", calls)
	}
}
