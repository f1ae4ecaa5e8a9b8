package api_test

import (
	"net/http"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// A NetSapiens call is identified by its domain and user, and the PBX
// matches both whatever their letter case (and transferd folds the
// domain everywhere else: the tenant allow-list, the watch key, the list
// filter). A second transfer of the same agent's call, spelt in another
// case, must be the 409 active-transfer the docs promise, not a second
// concurrent transfer of one live call (found by review, the user's case
// by the review of that fix).
func TestActiveTransferGuardIgnoresCase(t *testing.T) {
	for name, calls := range map[string][2]string{
		"domain": {`{"domain":"acme.example","user":"1000"}`, `{"domain":"ACME.example","user":"1000"}`},
		"user":   {`{"domain":"acme.example","user":"Sales"}`, `{"domain":"acme.example","user":"sales"}`},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.fake.SetTarget(orchestratortest.TargetRings)
			first := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Prefer", "wait=60"),
				body: `{"provider":"netsapiens","call":` + calls[0] + `,"target":"1010","completion":"manual"}`}, false)
			if first.status != http.StatusCreated || first.transfer(t).State != "consulting" {
				t.Fatalf("first transfer: %d %s", first.status, first.body)
			}
			second := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(),
				body: `{"provider":"netsapiens","call":` + calls[1] + `,"target":"1010","completion":"manual"}`}, false)
			if second.status != http.StatusConflict {
				t.Fatalf("a second transfer of the same call (%s in another case) answered %d, want 409 active-transfer naming %s:\n%s",
					name, second.status, first.transfer(t).ID, second.body)
			}
		})
	}
}
