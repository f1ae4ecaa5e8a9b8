package api_test

import (
	"context"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
)

// Text that is not UTF-8, or that holds U+0000, and a path longer than
// any id's, name nothing and are refused before they reach the store,
// which PostgreSQL would answer with an error (cmd/transferd's TestTextPostgreSQLCannotHoldIsRefused
// runs these on it): a list's filter or cursor a 400 naming it, a path's
// id a 404, a body's field a 400 naming it. On the memory store the
// filter listed nothing and the create was made. Each answer is one
// openapi.yaml documents.
func TestTextNoStoreCanHoldIsRefused(t *testing.T) {
	e := newEnv(t)
	const tr = "tr_01M7Z6DTQ5JMRNV7E9Z0C1HT0H"
	for _, c := range []struct {
		name string
		x    exchange
		// specRejects: the contract's patterns refuse the request too.
		specRejects bool
		status      int
		field       string
	}{
		{name: "a list filter not UTF-8", x: exchange{method: "GET", path: "/v1/transfers?external_id=%FF"}, status: 400, field: "external_id"},
		{name: "a list filter with U+0000", x: exchange{method: "GET", path: "/v1/transfers?call_id=a%00b"}, status: 400, field: "call_id"},
		{name: "a keyed cancel of an id not UTF-8", x: exchange{method: "POST", path: "/v1/transfers/" + tr + "%FF/cancel",
			header: map[string]string{"Idempotency-Key": "not-text"}}, specRejects: true, status: 404},
		{name: "a keyed cancel of an id longer than any", x: exchange{method: "POST", path: "/v1/transfers/" + strings.Repeat("tr_", 100) + "/cancel",
			header: map[string]string{"Idempotency-Key": "long"}}, specRejects: true, status: 404},
		{name: "a create whose call_id holds U+0000", x: exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
			body: `{"provider":"netsapiens","call":{"domain":"acme.example","user":"6000","call_id":"a\u0000b"},"target":"1010"}`},
			status: 400, field: "call.call_id"},
	} {
		r := e.do(t, c.x, c.specRejects)
		if r.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, r.status, r.body, c.status)
			continue
		}
		if p := r.problem(t); c.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != c.field) {
			t.Errorf("%s: errors %+v, want one naming %s", c.name, p.Errors, c.field)
		}
	}
	if calls := e.fake.Calls(); len(calls) != 0 {
		t.Errorf("the provider was sent %v", calls)
	}
	if ts, _, err := e.eng.List(orchestrator.WithTenant(context.Background(), "default"), orchestrator.ListFilter{Limit: 5}); err != nil || len(ts) != 0 {
		t.Errorf("%d transfers saved (%v), want none", len(ts), err)
	}
}
