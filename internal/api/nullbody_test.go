package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// TestCancelWithANullBodyIsRefused: /cancel and /complete "take no
// body (for tolerance, the empty JSON object {} is accepted too; anything
// else is a 400 validation-error)". The JSON literal null is something
// else, and must not cancel the transfer.
func TestCancelWithANullBodyIsRefused(t *testing.T) {
	e := newEnv(t)
	e.fake.SetTarget(orchestratortest.TargetRings)
	r := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Prefer", "wait=60"), body: createBody("1000", "manual")}, false)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	e.ids["t"] = r.transfer(t).ID
	got := e.do(t, exchange{method: "POST", path: "/v1/transfers/<t>/cancel", header: jsonHeader(), body: `null`}, false)
	if got.status != http.StatusBadRequest || !strings.Contains(string(got.body), "validation-error") || !strings.Contains(string(got.body), "must be a JSON object") {
		t.Fatalf("POST /cancel with the body null answered %d, want 400 validation-error (only no body or {} is accepted):\n%s", got.status, got.body)
	}
	if tr := e.do(t, exchange{method: "GET", path: "/v1/transfers/<t>", header: jsonHeader()}, false).transfer(t); tr.State != "consulting" {
		t.Errorf("the refused cancel changed the transfer: state %s", tr.State)
	}
	// The same on create: null is not a request with every field missing.
	got = e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: ` null `}, true)
	if got.status != http.StatusBadRequest || !strings.Contains(string(got.body), "must be a JSON object") {
		t.Errorf("POST /v1/transfers with the body null answered %d:\n%s", got.status, got.body)
	}
}
