package api_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestCreateRefusesNamesSentTwiceOrInAnotherCase: encoding/json keeps the
// last of a name sent twice and matches names case-insensitively, so
// {"target":"1010","target":"1020"} and {"target":"1010","Target":"1020"}
// both started a transfer to 1020 while a proxy or log that keeps the
// first saw a transfer to 1010; a metadata value that was not UTF-8 was
// stored with U+FFFD in its place. Each is a 400 naming what to fix, and
// nothing starts.
func TestCreateRefusesNamesSentTwiceOrInAnotherCase(t *testing.T) {
	e := newEnv(t)
	const call = `"call":{"domain":"acme.example","user":"1000"}`
	for _, c := range []struct {
		name, body string
		// specRejects: openapi.yaml's validator, reading the body with
		// encoding/json too, sees the last of a duplicate only.
		specRejects bool
		problem     string
		fields      []string
		detail      string // in the problem's JSON text
	}{
		{name: "a top-level field twice",
			body:    `{"provider":"netsapiens",` + call + `,"target":"1010","target":"1020"}`,
			problem: "validation-error", fields: []string{"target"}, detail: "appears more than once"},
		{name: "a field of the call twice",
			body:    `{"provider":"netsapiens","call":{"domain":"acme.example","user":"1000","user":"1001"},"target":"1010"}`,
			problem: "validation-error", fields: []string{"call.user"}, detail: "appears more than once"},
		{name: "an object twice",
			body:    `{"provider":"netsapiens",` + call + `,` + call + `,"target":"1010"}`,
			problem: "validation-error", fields: []string{"call"}, detail: "appears more than once"},
		{name: "a metadata key twice",
			body:    `{"provider":"netsapiens",` + call + `,"target":"1010","metadata":{"ticket":"T-1","ticket":"T-2"}}`,
			problem: "validation-error", fields: []string{"metadata.ticket"}, detail: "appears more than once"},
		{name: "a field in another case",
			body:        `{"provider":"netsapiens",` + call + `,"Target":"1010"}`,
			specRejects: true,
			problem:     "validation-error", fields: []string{"Target"}, detail: `did you mean \"target\"?`},
		{name: "a field and its other case",
			body:        `{"provider":"netsapiens",` + call + `,"target":"1010","Target":"1020"}`,
			specRejects: true,
			problem:     "validation-error", fields: []string{"Target"}, detail: "case-sensitive"},
		{name: "a field of the call in another case, sent null",
			body:        `{"provider":"netsapiens","call":{"domain":"acme.example","User":null},"target":"1010"}`,
			specRejects: true,
			problem:     "validation-error", fields: []string{"call.User"}, detail: `did you mean \"user\"?`},
		{name: "a value that is not UTF-8",
			body:    `{"provider":"netsapiens",` + call + `,"target":"1010","metadata":{"ticket":"T-` + "\xff" + `"}}`,
			problem: "malformed-request", detail: "UTF-8"},
		{name: "an escaped lone surrogate",
			body:    `{"provider":"netsapiens",` + call + `,"target":"1010","metadata":{"ticket":"T-\ud800"}}`,
			problem: "malformed-request", detail: "UTF-8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: c.body}, c.specRejects)
			if r.status != http.StatusBadRequest {
				t.Fatalf("answered %d, want 400 %s:\n%s", r.status, c.problem, r.body)
			}
			p := r.problem(t)
			if !strings.HasSuffix(p.Type, "#"+c.problem) {
				t.Errorf("problem %s, want %s:\n%s", p.Type, c.problem, r.body)
			}
			var got []string
			for _, f := range p.Errors {
				got = append(got, f.Field)
			}
			if !slices.Equal(got, c.fields) {
				t.Errorf("errors name %v, want %v:\n%s", got, c.fields, r.body)
			}
			if !strings.Contains(string(r.body), c.detail) {
				t.Errorf("the problem does not say %q:\n%s", c.detail, r.body)
			}
		})
	}
	if calls := e.fake.Calls(); len(calls) != 0 {
		t.Fatalf("a refused create reached the provider: %v", calls)
	}
	if list := e.do(t, exchange{method: "GET", path: "/v1/transfers"}, false); !strings.Contains(string(list.body), `"items":[]`) {
		t.Fatalf("a refused create saved a transfer: %s", list.body)
	}
}

// TestCreateKeepsMetadataKeysThatDifferInCase: metadata is the client's
// own map, whose keys are case-sensitive: "Ticket" and "ticket" are two
// keys, not one sent twice, and a character escaped as a surrogate pair
// is one character. Both are kept as sent.
func TestCreateKeepsMetadataKeysThatDifferInCase(t *testing.T) {
	e := newEnv(t)
	r := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
		body: `{"provider":"netsapiens","call":{"domain":"acme.example","user":"1000"},"target":"1010",` +
			`"metadata":{"ticket":"T-1","Ticket":"T-2","note":"\ud83d\ude00"}}`}, false)
	if r.status != http.StatusAccepted {
		t.Fatalf("answered %d, want 202:\n%s", r.status, r.body)
	}
	var got struct {
		Metadata map[string]string `json:"metadata"`
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"ticket": "T-1", "Ticket": "T-2", "note": "😀"}; !maps.Equal(got.Metadata, want) {
		t.Errorf("metadata %v, want %v", got.Metadata, want)
	}
}
