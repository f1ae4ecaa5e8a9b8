package main

import (
	"encoding/base64"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// PostgreSQL refuses text that is not UTF-8, and the character U+0000,
// in every text value it is sent, where SQLite and the memory store take
// them, and an index row longer than 2704 bytes: a list filter, a cursor,
// a path's id (a redelivery's, or the scope of an Idempotency-Key) or a
// body field that reached it was answered 500 (or 503, the key "not
// recorded", the transfer "not saved"), and logged as an error of the
// store, for input a client got wrong. Each is a 4xx naming what is
// wrong, and nothing reaches the store. Found by review (sixty-second
// pass).
func TestTextPostgreSQLCannotHoldIsRefused(t *testing.T) {
	t.Setenv("TRANSFERD_DATABASE_URL", testDatabase(t).String())
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer rcv.Close()
	t.Setenv("TRANSFERD_WEBHOOK_URL", rcv.URL+"/hooks")
	t.Setenv("TRANSFERD_WEBHOOK_SECRET", "whsec_"+base64.StdEncoding.EncodeToString([]byte("a-secret-of-thirty-two-bytes!!!!")))
	api, _, logs, _ := startService(t)
	const tr = "tr_01M7Z6DTQ5JMRNV7E9Z0C1HT0H"
	// An id of 4000 characters PostgreSQL cannot compress: the scope of
	// its Idempotency-Key is too long a row for the key's index.
	random, src := make([]byte, 3000), rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(src.Uint32())
	}
	long := base64.RawURLEncoding.EncodeToString(random)
	for _, c := range []struct {
		name, method, path, body string
		header                   []string
		status                   int
		field                    string
	}{
		{name: "a list filter not UTF-8", method: "GET", path: "/v1/transfers?external_id=%FF", status: 400, field: "external_id"},
		{name: "a list filter with U+0000", method: "GET", path: "/v1/transfers?call_id=a%00b", status: 400, field: "call_id"},
		{name: "a deliveries cursor not UTF-8", method: "GET", path: "/v1/webhook-deliveries?cursor=dlv_%FF", status: 400, field: "cursor"},
		{name: "a redelivery of an id not UTF-8", method: "POST", path: "/v1/webhook-deliveries/dlv_%FF/redeliver", status: 404},
		{name: "a redelivery of an id with U+0000", method: "POST", path: "/v1/webhook-deliveries/dlv_%00/redeliver", status: 404},
		{name: "a keyed cancel of an id not UTF-8", method: "POST", path: "/v1/transfers/" + tr + "%FF/cancel", header: []string{"Idempotency-Key", "k-1"}, status: 404},
		{name: "a keyed redelivery of an id with U+0000", method: "POST", path: "/v1/webhook-deliveries/dlv_%00/redeliver", header: []string{"Idempotency-Key", "k-2"}, status: 404},
		{name: "a create whose call_id holds U+0000", method: "POST", path: "/v1/transfers",
			body:   `{"provider":"netsapiens","call":{"domain":"TEST","user":"1000","call_id":"a\u0000b"},"target":"1010"}`,
			status: 400, field: "call.call_id"},
		{name: "a keyed cancel of an id longer than any", method: "POST", path: "/v1/transfers/" + long + "/cancel",
			header: []string{"Idempotency-Key", "k-3"}, status: 404},
		{name: "a create whose sip: target holds U+0000", method: "POST", path: "/v1/transfers",
			body:   `{"provider":"bandwidth","mode":"announced","call":{"call_id":"c-abc"},"target":"sip:a\u0000b@example.com"}`,
			status: 400, field: "target"},
	} {
		resp, p := send(t, c.method, api+c.path, c.body, c.header...)
		if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %s %v, want %d problem+json", c.name, resp.Status, p, c.status)
			continue
		}
		if c.field != "" {
			errs, _ := p["errors"].([]any)
			if len(errs) != 1 || errs[0].(map[string]any)["field"] != c.field {
				t.Errorf("%s: errors %v, want one naming %s", c.name, p["errors"], c.field)
			}
		}
	}
	for _, m := range logs.all() {
		if e, _ := m["error"].(string); m["level"] == "error" && strings.Contains(e, "postgres") {
			t.Errorf("the store was sent what it cannot hold: %v", m)
		}
	}
}
