package api_test

import (
	"net/http"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// TestActiveTransferGuardIgnoresDomainCase: a NetSapiens call is
// identified by its domain and user, and transferd treats domains
// case-insensitively everywhere else (the tenant allow-list, the watch
// key, the list filter ?domain=). A second transfer of the same agent's
// call, with the domain written in another letter case, must be the
// 409 active-transfer the docs promise, not a second concurrent transfer
// of the same call.
func TestActiveTransferGuardIgnoresDomainCase(t *testing.T) {
	e := newEnv(t)
	e.fake.SetTarget(orchestratortest.TargetRings)
	first := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Prefer", "wait=60"),
		body: `{"provider":"netsapiens","call":{"domain":"acme.example","user":"1000"},"target":"1010","completion":"manual"}`}, false)
	if first.status != http.StatusCreated || first.transfer(t).State != "consulting" {
		t.Fatalf("first transfer: %d %s", first.status, first.body)
	}
	second := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
		body: `{"provider":"netsapiens","call":{"domain":"ACME.example","user":"1000"},"target":"1010","completion":"manual"}`}, false)
	if second.status != http.StatusConflict {
		t.Fatalf("a second transfer of the same call (domain in upper case) answered %d, want 409 active-transfer naming %s:\n%s",
			second.status, first.transfer(t).ID, second.body)
	}
}
