package api_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestListRefusesAProviderNotConfigured: a typo in ?state= is a 400, but
// one in ?provider= (netsapien) answered an empty page, which reads as
// "no such transfers" (found by review). A name that is not one of the
// tenant's configured providers is a 400 naming provider and listing
// them; a configured one matches in any letter case, as a create takes it.
func TestListRefusesAProviderNotConfigured(t *testing.T) {
	e := newEnv(t)
	created := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("1000", "auto")}, false)
	if created.status != http.StatusAccepted {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	id := created.transfer(t).ID

	typo := e.do(t, exchange{method: "GET", path: "/v1/transfers?provider=netsapien"}, false)
	if p := typo.problem(t); typo.status != http.StatusBadRequest || len(p.Errors) != 1 || p.Errors[0].Field != "provider" ||
		!strings.Contains(string(typo.body), "netsapiens") {
		t.Fatalf("?provider=netsapien answered %d, want 400 naming provider and the configured ones:\n%s", typo.status, typo.body)
	}
	for _, name := range []string{"netsapiens", "NetSapiens"} {
		list := e.do(t, exchange{method: "GET", path: "/v1/transfers?provider=" + name}, false)
		if list.status != http.StatusOK || !strings.Contains(string(list.body), id) {
			t.Errorf("?provider=%s answered %d without the transfer %s:\n%s", name, list.status, id, list.body)
		}
	}
}
