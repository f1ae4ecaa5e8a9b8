package api_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestCreateRefusesNullsAndEmptyStrings: "wrong JSON types are rejected"
// (README), yet encoding/json reads a null as the field left out and an
// empty string as no value: {"metadata":{"crm_ticket":null}} was stored as
// "", changing the client's data, and "call_id": "" (minLength 1 in
// openapi.yaml) was dropped, so the transfer took whichever call the agent
// had; "mode": null started the default mode (found by review). Each is a
// 400 naming the field, and nothing starts.
func TestCreateRefusesNullsAndEmptyStrings(t *testing.T) {
	e := newEnv(t)
	const call = `"call":{"domain":"acme.example","user":"1000"}`
	for _, c := range []struct {
		name, body string
		fields     []string
	}{
		{"a null metadata value and an empty call_id",
			`{"provider":"netsapiens","call":{"domain":"acme.example","user":"1000","call_id":""},"target":"1010","metadata":{"crm_ticket":null}}`,
			[]string{"call.call_id", "metadata.crm_ticket"}},
		{"nulls for optional fields",
			`{"provider":"netsapiens",` + call + `,"target":"1010","mode":null,"completion":null,"consult_timeout":null,"whisper":null,"metadata":null,"external_id":null}`,
			[]string{"completion", "consult_timeout", "external_id", "metadata", "mode", "whisper"}},
		{"a null call", `{"provider":"netsapiens","call":null,"target":"1010"}`, []string{"call"}},
		{"empty strings where a value is needed",
			`{"provider":"netsapiens",` + call + `,"target":"1010","mode":"","completion":"","consult_timeout":"","caller_id":""}`,
			[]string{"caller_id", "completion", "consult_timeout", "mode"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: c.body}, true)
			if r.status != http.StatusBadRequest {
				t.Fatalf("answered %d, want 400 validation-error:\n%s", r.status, r.body)
			}
			var got []string
			for _, f := range r.problem(t).Errors {
				got = append(got, f.Field)
			}
			if !slices.Equal(got, c.fields) {
				t.Errorf("errors name %v, want %v:\n%s", got, c.fields, r.body)
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
