package api_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	transferd "github.com/transferd/transferd"
	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/store/memory"
)

// subscribedFake is an account with event subscriptions: it records the
// view keys of the posts it accepts.
type subscribedFake struct {
	*orchestratortest.Fake
	got chan string
}

func (f subscribedFake) ReceiveSubscription(r *http.Request, key string) error {
	b, err := io.ReadAll(r.Body)
	if err != nil || !strings.HasPrefix(string(b), "[") {
		return orchestrator.E("fake.receive", orchestrator.KindInvalid, errors.New("not an array"))
	}
	f.got <- key
	return nil
}

// TestSubscriptionPostsNeedTheirOwnToken: a post with the token of its
// tenant and key reaches the account (204), under the signing secret or
// the one accepted during a rotation (a subscription made before it posts
// to a URL with the old secret's token); a token for another key, a
// transfer's callback token, another provider, a third secret or a
// malformed post do not.
func TestSubscriptionPostsNeedTheirOwnToken(t *testing.T) {
	fake := subscribedFake{Fake: orchestratortest.NewFake("netsapiens"), got: make(chan string, 8)}
	reg := prometheus.NewRegistry()
	store := memory.New()
	eng, err := orchestrator.New(orchestrator.Config{}, store, []orchestrator.Provider{fake}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := eng.Shutdown(ctx); err != nil {
			t.Errorf("engine shutdown: %v", err)
		}
	})
	signer, err := api.NewCallbackSigner(testSecret, oldSecret)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.NewServer(api.Config{OpenAPI: transferd.OpenAPI, Idempotency: store, CallbackSigner: signer,
		Subscriptions: map[string]api.SubscriptionReceiver{"netsapiens": fake}}, eng, zerolog.Nop(), reg, reg))
	t.Cleanup(srv.Close)
	path := func(provider, key, token string) string {
		return srv.URL + "/callbacks/" + provider + "/subscriptions/" + key + "/" + token
	}
	good := signer.Token(api.TokenSubscription, "default", "acme")
	for _, tc := range []struct {
		name, url, body string
		status          int
	}{
		{"its own token", path("netsapiens", "acme", good), `[{"orig_callid":"a"}]`, http.StatusNoContent},
		{"the accepted secret's token", path("netsapiens", "acme", mustSigner(t, oldSecret).Token(api.TokenSubscription, "default", "acme")),
			`[{"orig_callid":"a"}]`, http.StatusNoContent},
		{"a third secret's token", path("netsapiens", "acme", mustSigner(t, newSecret).Token(api.TokenSubscription, "default", "acme")),
			`[]`, http.StatusNotFound},
		{"another key's token", path("netsapiens", "other", good), `[]`, http.StatusNotFound},
		{"a transfer's callback token", path("netsapiens", "acme", signer.Token(api.TokenTransfer, "default", "acme")), `[]`, http.StatusNotFound},
		{"another tenant's token", path("netsapiens", "acme", signer.Token(api.TokenSubscription, "other", "acme")), `[]`, http.StatusNotFound},
		{"a provider without subscriptions", path("bandwidth", "acme", good), `[]`, http.StatusNotFound},
		{"a malformed post", path("netsapiens", "acme", good), `{"orig_callid":"a"}`, http.StatusBadRequest},
	} {
		resp, err := http.Post(tc.url, "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}
	close(fake.got)
	var keys []string
	for k := range fake.got {
		keys = append(keys, k)
	}
	if len(keys) != 2 || keys[0] != "acme" || keys[1] != "acme" {
		t.Errorf("the account received posts for %v, want two for acme", keys)
	}
}

// A NetSapiens subscription post that is not an array of call objects is
// a 400 validation-error whose errors name the body, as the contract says
// of every validation-error: {}, [1], "x" and an empty body were refused
// with no errors at all, and null or [null] were taken (204) as a post of
// no calls although the contract's body is an array of objects.
func TestSubscriptionPostRefusalNamesTheBody(t *testing.T) {
	ns, err := netsapiens.New(netsapiens.Config{BaseURL: "http://127.0.0.1:1/ns-api/v2",
		APIKey: "nsd_SeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCr1234abcd"})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	store := memory.New()
	eng, err := orchestrator.New(orchestrator.Config{}, store, []orchestrator.Provider{orchestratortest.NewFake("netsapiens")}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := eng.Shutdown(ctx); err != nil {
			t.Errorf("engine shutdown: %v", err)
		}
	})
	signer := testSigner(t)
	h := api.NewServer(api.Config{OpenAPI: transferd.OpenAPI, Idempotency: store, CallbackSigner: signer,
		Subscriptions: map[string]api.SubscriptionReceiver{"netsapiens": ns}}, eng, zerolog.Nop(), reg, reg)
	e := &env{c: loadContract(t), srv: httptest.NewServer(h), eng: eng, h: h, ids: map[string]string{}}
	t.Cleanup(e.srv.Close)
	path := "/callbacks/netsapiens/subscriptions/acme.example/" + signer.Token(api.TokenSubscription, "default", "acme.example")
	for _, body := range []string{`{"orig_callid":`, `[1]`, `"x"`, ``, `null`, `[null]`} {
		r := e.do(t, exchange{method: "POST", path: path, header: jsonHeader("Authorization", ""), body: body}, true)
		if r.status != http.StatusBadRequest {
			t.Errorf("post %q: %d %s, want 400", body, r.status, r.body)
			continue
		}
		if p := r.problem(t); p.Type != api.ProblemBase+"validation-error" || len(p.Errors) != 1 || p.Errors[0].Field != "(body)" {
			t.Errorf("post %q: %s, want validation-error naming (body)", body, r.body)
		}
	}
	if r := e.do(t, exchange{method: "POST", path: path, header: jsonHeader("Authorization", ""), body: `[{"orig_callid":"a"}]`}, false); r.status != http.StatusNoContent {
		t.Errorf("a post of one call object: %d %s, want 204", r.status, r.body)
	}
	// One call object alone, as a receiver written for call_origid posts
	// documents them: taken, and the contract says so.
	if r := e.do(t, exchange{method: "POST", path: path, header: jsonHeader("Authorization", ""), body: `{"orig_callid":"a","term_call_info":"alerting"}`}, false); r.status != http.StatusNoContent {
		t.Errorf("a post of a call object alone: %d %s, want 204", r.status, r.body)
	}
	// A post larger than a delivery may be says so: the server's bound
	// on the body cut the read first, and the post was refused as one
	// that "could not be read".
	big := "[" + strings.Repeat(" ", 4<<20) + "]"
	r := e.do(t, exchange{method: "POST", path: path, header: jsonHeader("Authorization", ""), body: big}, false)
	if p := r.problem(t); r.status != http.StatusBadRequest || len(p.Errors) != 1 || p.Errors[0].Field != "(body)" ||
		!strings.Contains(string(r.body), "larger than") {
		t.Errorf("a post over 4 MiB: %d %s, want 400 naming (body) as too large", r.status, r.body)
	}
}
