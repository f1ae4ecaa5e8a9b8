package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	transferd "github.com/transferd/transferd"
	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// Every /v1 route × {no key, wrong key, read key, write key, other
// tenant's key}, each response checked against openapi.yaml.
func TestRouteKeyTable(t *testing.T) {
	e := newEnv(t)
	// Manual transfers of the default tenant, waiting in consulting: one
	// to complete, one to cancel.
	for _, role := range []string{"mine", "yours"} {
		user := map[string]string{"mine": "2000", "yours": "2002"}[role]
		r := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody(user, "manual")}, false)
		if r.status != http.StatusAccepted {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
		e.ids[role] = r.transfer(t).ID
		e.wait(t, e.ids[role], answered)
	}
	get := func(p string) exchange { return exchange{method: "GET", path: p} }
	post := func(p, body string) exchange {
		return exchange{method: "POST", path: p, header: jsonHeader(), body: body}
	}
	rows := []struct {
		x exchange
		// by key: none, unknown, read, other tenant's writer, writer
		want [5]int
	}{
		{get("/v1/transfers"), [5]int{401, 401, 200, 200, 200}},
		{get("/v1/transfers/<mine>"), [5]int{401, 401, 200, 404, 200}},
		// The other tenant has the provider too, but not this call's
		// transfer: its create is its own (202).
		{post("/v1/transfers", createBody("2001", "auto")), [5]int{401, 401, 403, 202, 202}},
		{post("/v1/transfers/<mine>/complete", ""), [5]int{401, 401, 403, 404, 202}},
		{post("/v1/transfers/<yours>/cancel", ""), [5]int{401, 401, 403, 404, 202}},
	}
	keys := []struct{ name, key string }{{"no key", ""}, {"unknown key", "no-such-key-000000001"}, {"read key", readKey},
		{"other tenant's key", otherWriteKey}, {"write key", writeKey}}
	for _, rw := range rows {
		for i, k := range keys {
			x := rw.x
			x.header = map[string]string{"Authorization": ""}
			for h, v := range rw.x.header {
				x.header[h] = v
			}
			if k.key != "" {
				x.header["Authorization"] = "Bearer " + k.key
			}
			res := e.do(t, x, false)
			if res.status != rw.want[i] {
				t.Errorf("%s %s with %s: %d, want %d\n%s", x.method, x.path, k.name, res.status, rw.want[i], res.body)
			}
			if res.status == http.StatusUnauthorized && res.header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s with %s: 401 without WWW-Authenticate", x.method, x.path, k.name)
			}
		}
	}
}

// Another tenant's idempotency key and long poll: its own scope, no
// replay across tenants; its long poll of a transfer not its own is a 404.
func TestCrossTenantIdempotencyAndLongPoll(t *testing.T) {
	e := newEnv(t)
	mine := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Idempotency-Key", "shared-key"), body: createBody("3000", "manual")}, false)
	if mine.status != http.StatusAccepted {
		t.Fatalf("create: %d %s", mine.status, mine.body)
	}
	// The same key and body from the other tenant is a request of its own:
	// it is not a replay of the default tenant's transfer.
	theirs := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Idempotency-Key", "shared-key", "Authorization", "Bearer "+otherWriteKey),
		body: createBody("3000", "manual")}, false)
	if theirs.header.Get("Idempotent-Replayed") != "" || theirs.status == http.StatusAccepted && theirs.transfer(t).ID == mine.transfer(t).ID {
		t.Errorf("the other tenant's key replayed the default tenant's response: %d %s", theirs.status, theirs.body)
	}
	lp := e.do(t, exchange{method: "GET", path: "/v1/transfers/" + mine.transfer(t).ID,
		header: map[string]string{"Prefer": "wait=5", "Authorization": "Bearer " + otherReadKey}}, false)
	if lp.status != http.StatusNotFound {
		t.Errorf("the other tenant's long poll: %d, want 404", lp.status)
	}
	// A callback token of one tenant is not one of another.
	cb := e.do(t, exchange{method: "POST", path: "/callbacks/netsapiens/" + mine.transfer(t).ID + "/" + testCallbackToken(otherTenant, mine.transfer(t).ID)[:len(otherTenant)+1] + testCallbackToken("default", mine.transfer(t).ID)[len("default")+1:],
		header: jsonHeader("Authorization", ""), body: `{"eventType":"answer"}`}, false)
	if cb.status != http.StatusNotFound {
		t.Errorf("a callback with the default tenant's MAC under the other tenant's name: %d, want 404", cb.status)
	}
}

// Limits are counts: a start bucket of 3 (refilled once in a thousand
// seconds) lets 3 creates through, then 429 with Retry-After; the other
// tenant's bucket is its own, so one tenant's flood does not delay
// another's transfers.
func TestTenantLimits(t *testing.T) {
	fake := orchestratortest.NewFake("netsapiens")
	reg := prometheus.NewRegistry()
	store := memory.New()
	eng, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		VerifyTimeout: 200 * time.Millisecond}, store, []orchestrator.Provider{fake}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	h := api.NewServer(api.Config{OpenAPI: transferd.OpenAPI, Idempotency: store, Keys: testKeys(t),
		Limits: api.Limits{StartRate: 0.001, StartBurst: 3, MaxWaits: 1}}, eng, zerolog.Nop(), reg, reg)
	e := &env{c: loadContract(t), eng: eng, fake: fake, h: h, ids: map[string]string{}}
	e.srv = httptest.NewServer(h)
	t.Cleanup(func() {
		e.srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = eng.Shutdown(ctx)
	})

	counts := map[string]map[int]int{"default": {}, otherTenant: {}}
	flood := func(tenant, key string, n int, user int) {
		for i := range n {
			r := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader("Authorization", "Bearer "+key),
				body: createBody(strconv.Itoa(user+i), "manual")}, false)
			counts[tenant][r.status]++
			if r.status == http.StatusTooManyRequests && r.header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		}
	}
	flood("default", writeKey, 20, 4000)
	flood(otherTenant, otherWriteKey, 3, 5000)
	if c := counts["default"]; c[http.StatusAccepted] != 3 || c[http.StatusTooManyRequests] != 17 {
		t.Errorf("the flooding tenant: %v, want 3 accepted and 17 refused", c)
	}
	if c := counts[otherTenant]; c[http.StatusAccepted] != 3 {
		t.Errorf("the other tenant after the flood: %v, want its 3 accepted", c)
	}
}
