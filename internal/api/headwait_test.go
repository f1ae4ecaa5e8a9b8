package api_test

import (
	"net/http"
	"testing"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// A HEAD of a transfer with Prefer: wait answers at once, holds none of
// the tenant's wait slots and says no wait was applied. It long-polled as
// its GET does, for nothing: its answer has no body and the same headers
// whether the transfer changed or the wait ran out (Preference-Applied
// says the wait granted either way), so a client learnt nothing from the
// up to 60 seconds it was kept, and each such HEAD held a slot its
// tenant's real long polls and streams were then refused for (found by
// review; RFC 7240 lets a server ignore a preference, and says so by not
// naming it in Preference-Applied).
func TestAHeadDoesNotLongPoll(t *testing.T) {
	fake := orchestratortest.NewFake("netsapiens").SetTarget(orchestratortest.TargetRings)
	e := newLimitedEnv(t, fake, api.Config{Limits: api.Limits{MaxWaits: 1}})

	// A manual transfer ringing its target: a GET long poll of it waits.
	ringing(t, e, "6100")
	// And one that ended, which a GET long poll answers at once.
	r := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("6101", "manual")}, false)
	e.ids["ended"] = r.transfer(t).ID
	if r := e.do(t, exchange{method: "POST", path: "/v1/transfers/<ended>/cancel", header: map[string]string{"Prefer": "wait=60"}}, false); r.status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}

	// The tenant's one wait slot is held by a stream: were a HEAD to
	// wait, it would be refused 429 at once instead of waiting 60 s.
	closeStream := openStream(t, e, readKey)
	defer closeStream()
	for _, role := range []string{"ringing", "ended"} {
		head := e.do(t, exchange{method: http.MethodHead, path: "/v1/transfers/<" + role + ">", header: map[string]string{"Prefer": "wait=60"}}, false)
		if head.status != http.StatusOK || head.header.Get("Preference-Applied") != "" {
			t.Errorf("HEAD of the %s transfer with Prefer: wait=60 and the tenant's wait slots taken: %d, Preference-Applied %q; want 200 at once, no wait applied",
				role, head.status, head.header.Get("Preference-Applied"))
		}
	}
	// The GET still long-polls: it is refused for want of a slot.
	if get := e.do(t, exchange{method: http.MethodGet, path: "/v1/transfers/<ringing>", header: map[string]string{"Prefer": "wait=60"}}, false); get.status != http.StatusTooManyRequests {
		t.Errorf("GET long poll with the tenant's wait slots taken: %d, want 429", get.status)
	}
}

// ringing creates a manual transfer for user whose target rings (e's
// fake keeps it ringing), named <ringing> in e's paths, and waits for its
// consult: a GET long poll of it waits.
func ringing(t *testing.T, e *env, user string) {
	t.Helper()
	r := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody(user, "manual")}, false)
	if r.status != http.StatusAccepted {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	e.ids["ringing"] = r.transfer(t).ID
	e.wait(t, e.ids["ringing"], func(x *orchestrator.Transfer) bool { return x.State == orchestrator.StateConsulting })
}
