package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/store/memory"
)

// TestAFinishedTransferPurgedIsGoneOnEveryRoute: a replica keeps the final
// records of the last transfers it finished (for the long polls that wake
// as they end), and a /complete or /cancel read the transfer from there:
// once the retention purge had deleted it from the store, the replica
// that finished it answered 409 "the transfer is completed" where any
// other replica, and its own GET and list, said 404. Every route now
// says it is gone, as the store does.
func TestAFinishedTransferPurgedIsGoneOnEveryRoute(t *testing.T) {
	store := memory.New()
	e := newEnvStore(t, zerolog.Nop(), testSigner(t), store)
	created := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Prefer", "wait=60"),
		body: createBody("1000", "auto")}, false)
	if created.status != http.StatusCreated || created.transfer(t).State != "completed" {
		t.Fatalf("create: %d %s; want 201 completed", created.status, created.body)
	}
	e.ids["t"] = created.transfer(t).ID
	// Its record final (no obligation left), as the replica keeps it.
	e.wait(t, e.ids["t"], terminal)
	if n, err := store.Purge(context.Background(), time.Now().Add(time.Hour), 0); err != nil || n != 1 {
		t.Fatalf("Purge = %d, %v; want the one transfer", n, err)
	}
	for _, x := range []exchange{
		{method: "GET", path: "/v1/transfers/<t>"},
		{method: "GET", path: "/v1/transfers/<t>", header: map[string]string{"Prefer": "wait=5"}},
		{method: "GET", path: "/v1/transfers/<t>/events"},
		{method: "POST", path: "/v1/transfers/<t>/complete"},
		{method: "POST", path: "/v1/transfers/<t>/cancel"},
		{method: "POST", path: "/v1/transfers/<t>/cancel", header: map[string]string{"Prefer": "wait=5"}},
	} {
		r := e.do(t, x, false)
		if p := r.problem(t); r.status != http.StatusNotFound || !strings.HasSuffix(p.Type, "#not-found") {
			t.Errorf("%s %s (Prefer %q) after the purge: %d %s; want 404 not-found", x.method, x.path, x.header["Prefer"], r.status, r.body)
		}
	}
	list := e.do(t, exchange{method: "GET", path: "/v1/transfers"}, false)
	if list.status != http.StatusOK || strings.Contains(string(list.body), e.ids["t"]) {
		t.Errorf("the list after the purge: %d %s; want 200 without the transfer", list.status, list.body)
	}
}
