package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	transferd "github.com/transferd/transferd"
	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// TestHeadOnEveryGetRoute: every GET operation of the contract answers
// HEAD like GET (no 405), and the 405 of a path lists HEAD where GET is.
// HEAD was served on every GET route and declared nowhere in openapi.yaml:
// a client generated from it had no way to send one, and the contract
// check never saw its answers. Each GET now has its HEAD operation, whose
// answers (status, headers, no body) are checked against it here.
func TestHeadOnEveryGetRoute(t *testing.T) {
	e := newEnv(t)
	created := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("1000", "manual")}, false)
	e.ids["t"] = created.transfer(t).ID
	n := 0
	for path, item := range e.c.doc.Paths.Map() {
		if item.Get == nil {
			continue
		}
		n++
		if item.Head == nil {
			t.Errorf("openapi.yaml declares GET %s and no HEAD", path)
			continue
		}
		url := strings.ReplaceAll(path, "{id}", "<t>")
		head := e.do(t, exchange{method: http.MethodHead, path: url}, false)
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+strings.ReplaceAll(url, "<t>", e.ids["t"]), nil)
		req.Header.Set("Authorization", "Bearer "+writeKey)
		get, getBody := doRequest(t, req)
		if head.status != get.StatusCode || head.status == http.StatusMethodNotAllowed {
			t.Errorf("HEAD %s = %d, GET = %d", path, head.status, get.StatusCode)
		}
		if len(head.body) != 0 {
			t.Errorf("HEAD %s has a body", path)
		}
		if head.header.Get("Content-Type") != get.Header.Get("Content-Type") {
			t.Errorf("HEAD %s Content-Type %q, GET %q (%d bytes)", path, head.header.Get("Content-Type"), get.Header.Get("Content-Type"), len(getBody))
		}
	}
	if n < 6 {
		t.Fatalf("only %d GET operations in the contract", n)
	}
	res, _ := do(t, http.MethodDelete, e.srv.URL+"/v1/transfers")
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD, POST" {
		t.Errorf("DELETE /v1/transfers: %d, Allow %q", res.StatusCode, res.Header.Get("Allow"))
	}
}

func do(t *testing.T, method, url string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return doRequest(t, req)
}

// doRequest sends req and reads its answer; a stream's body is left.
func doRequest(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		// A stream does not end: its headers are what the tests compare.
		return res, nil
	}
	b, _ := io.ReadAll(res.Body)
	return res, b
}

// TestReplayCarriesNoPreferenceApplied: a replay is the first answer
// again, sent at once; it waits for nothing, so it applies no Prefer:
// wait. It used to take Preference-Applied from the repeat's own Prefer:
// a complete replayed to a repeat with Prefer: wait=30 answered 202 with
// Preference-Applied: wait=30 in milliseconds, which the contract reads
// as "the transfer did not end within 30 s" (found by review). The
// responses are checked against openapi.yaml too, which must allow a
// replayed 201 without the header.
func TestReplayCarriesNoPreferenceApplied(t *testing.T) {
	e := newEnv(t)
	create := exchange{method: "POST", path: "/v1/transfers",
		header: jsonHeader("Prefer", "wait=60", "Idempotency-Key", "create-1"), body: createBody("1000", "manual")}
	created := e.do(t, create, false)
	if created.status != http.StatusCreated || created.header.Get("Preference-Applied") != "wait=60" {
		t.Fatalf("create: %d, Preference-Applied %q; want 201 with wait=60:\n%s", created.status, created.header.Get("Preference-Applied"), created.body)
	}
	e.ids["t"] = created.transfer(t).ID
	e.wait(t, e.ids["t"], answered)
	complete := exchange{method: "POST", path: "/v1/transfers/<t>/complete", header: map[string]string{"Idempotency-Key": "complete-1"}}
	if first := e.do(t, complete, false); first.status != http.StatusAccepted || first.header.Get("Preference-Applied") != "" {
		t.Fatalf("complete without Prefer: %d, Preference-Applied %q; want 202 without it:\n%s", first.status, first.header.Get("Preference-Applied"), first.body)
	}

	for _, c := range []struct {
		name   string
		x      exchange
		status int
	}{
		{"the create, Prefer as first sent", create, http.StatusCreated},
		{"the create, without Prefer", exchange{method: "POST", path: "/v1/transfers",
			header: jsonHeader("Idempotency-Key", "create-1"), body: createBody("1000", "manual")}, http.StatusCreated},
		{"the complete, now with Prefer: wait=30", exchange{method: "POST", path: "/v1/transfers/<t>/complete",
			header: map[string]string{"Idempotency-Key": "complete-1", "Prefer": "wait=30"}}, http.StatusAccepted},
	} {
		r := e.do(t, c.x, false)
		if r.status != c.status || r.header.Get("Idempotent-Replayed") != "true" || r.header.Get("Preference-Applied") != "" {
			t.Errorf("replay of %s: %d, Idempotent-Replayed %q, Preference-Applied %q; want %d replayed without Preference-Applied",
				c.name, r.status, r.header.Get("Idempotent-Replayed"), r.header.Get("Preference-Applied"), c.status)
		}
	}
}

// TestReplayOfASettledReservation: a reservation settled after its
// process died holds only the transfer id; the replay renders the
// transfer as it is now, with the recorded status and Location.
func TestReplayOfASettledReservation(t *testing.T) {
	store := memory.New()
	inst := newInstance(t, store, orchestratortest.NewFake("netsapiens"))
	created := post(t, inst.srv.URL+"/v1/transfers", "", manualBody)
	var tr struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(created.body), &tr); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const scope, key = "default POST /v1/transfers", "settled-1"            // the tenant, then the method and path
	h := "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" // sha256 of the empty body
	if _, _, err := store.ReserveIdempotency(ctx, orchestrator.IdempotencyRecord{Scope: scope, Key: key, RequestHash: h}); err != nil {
		t.Fatal(err)
	}
	if err := store.CompleteIdempotency(ctx, scope, key, time.Time{}, orchestrator.IdempotentResponse{
		Status: http.StatusAccepted, Location: "/v1/transfers/" + tr.ID, TransferID: tr.ID}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, inst.srv.URL+"/v1/transfers", nil)
	req.Header.Set("Idempotency-Key", key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var got struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	if err := json.NewDecoder(res.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusAccepted || res.Header.Get("Location") != "/v1/transfers/"+tr.ID ||
		got.ID != tr.ID || got.State == "" || res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("replay: %d, Location %q, body %+v", res.StatusCode, res.Header.Get("Location"), got)
	}
}

// checker is a provider whose credential check answers err.
type checker struct {
	name string
	err  error
}

func (c checker) Name() string                           { return c.name }
func (c checker) CheckCredentials(context.Context) error { return c.err }

func TestProviderStatus(t *testing.T) {
	reg := prometheus.NewRegistry()
	rejected := &orchestrator.Error{Kind: orchestrator.KindProviderAuth, Err: errors.New("401 Unauthorized")}
	unreachable := &orchestrator.Error{Kind: orchestrator.KindProviderUnavailable, Err: errors.New("connection refused")}
	// Two tenants at one provider are two accounts; an account not
	// checked yet is listed as unknown.
	accounts := []api.CredentialAccount{
		{Provider: "netsapiens", Account: "acme/netsapiens", Checker: checker{name: "netsapiens"}},
		{Provider: "netsapiens", Account: "beta/netsapiens", Checker: checker{name: "netsapiens", err: unreachable}},
		{Provider: "bandwidth", Account: "acme/bandwidth", Checker: checker{name: "bandwidth", err: rejected}},
	}
	m := api.NewCredentialMonitor(func() []api.CredentialAccount { return accounts }, time.Hour, time.Second, zerolog.Nop(), reg)
	m.CheckAll(context.Background())
	accounts = append(accounts, api.CredentialAccount{Provider: "bandwidth", Account: "beta/bandwidth", Checker: checker{name: "bandwidth"}})

	store := memory.New()
	eng, err := orchestrator.New(orchestrator.Config{}, store, []orchestrator.Provider{orchestratortest.NewFake("netsapiens")}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Shutdown(context.Background()) })
	srv := httptest.NewServer(api.NewServer(api.Config{OpenAPI: transferd.OpenAPI, Idempotency: store, Credentials: m}, eng, zerolog.Nop(), reg, reg))
	t.Cleanup(srv.Close)
	e := &env{c: loadContract(t), srv: srv}
	r := e.do(t, exchange{method: "GET", path: "/status/providers"}, false)
	var got struct {
		Providers []struct {
			Provider, Account, Credentials, Detail string
		}
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	want := []string{"acme/bandwidth bandwidth rejected", "acme/netsapiens netsapiens ok", "beta/bandwidth bandwidth unknown", "beta/netsapiens netsapiens unknown"}
	var have []string
	for _, p := range got.Providers {
		have = append(have, p.Account+" "+p.Provider+" "+p.Credentials)
		// An account not checked yet says so: an unknown with no detail
		// read as a provider that could not be reached.
		if p.Account == "beta/bandwidth" && p.Detail != "not checked yet" {
			t.Errorf("beta/bandwidth, not checked yet, has detail %q", p.Detail)
		}
	}
	if !slices.Equal(have, want) {
		t.Errorf("status %v, want %v", have, want)
	}
	m.NotChecked("demo mode")
	r = e.do(t, exchange{method: "GET", path: "/status/providers"}, false)
	if !strings.Contains(string(r.body), `"account":"beta/bandwidth","credentials":"unknown","detail":"demo mode"`) {
		t.Errorf("with NotChecked, the account not checked: %s", r.body)
	}
	// The metric says 1 or 0 only on a verdict; an unreachable account
	// has none yet.
	if n := testutil.CollectAndCount(reg, "transferd_provider_credentials_ok"); n != 2 {
		t.Errorf("transferd_provider_credentials_ok has %d series, want 2", n)
	}
	expected := `
# HELP transferd_provider_credentials_ok 1 when the provider accepted the account's credentials at the last conclusive check, 0 when it refused them (401/403); account is <tenant>/<provider>.
# TYPE transferd_provider_credentials_ok gauge
transferd_provider_credentials_ok{account="acme/bandwidth",provider="bandwidth"} 0
transferd_provider_credentials_ok{account="acme/netsapiens",provider="netsapiens"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), "transferd_provider_credentials_ok"); err != nil {
		t.Error(err)
	}
}
