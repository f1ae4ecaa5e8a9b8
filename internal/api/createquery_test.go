package api_test

import (
	"net/http"
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
