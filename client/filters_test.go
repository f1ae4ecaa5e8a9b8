package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd"
	"github.com/transferd/transferd/client"
	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// queryServer is transferd's API in process (webhook deliveries
// included) over a simulated provider; queries returns the raw query
// string of each list request it has served, in order.
func queryServer(t *testing.T) (c *client.ClientWithResponses, queries func() []string) {
	t.Helper()
	store := memory.New()
	reg := prometheus.NewRegistry()
	// Polls a millisecond apart: the transfers end, and the engine shuts
	// down, at once.
	eng, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		VerifyTimeout: 200 * time.Millisecond, VisibilityWindow: 20 * time.Millisecond}, store,
		[]orchestrator.Provider{orchestratortest.NewFake("netsapiens")}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	disp := webhooks.New(webhooks.Config{}, memory.NewDeliveries(store), webhooks.Static{}, api.EventPayload, zerolog.Nop(), reg)
	h := api.NewServer(api.Config{OpenAPI: transferd.OpenAPI, Idempotency: store, Deliveries: disp}, eng, zerolog.Nop(), reg, reg)
	var (
		mu   sync.Mutex
		seen []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && (r.URL.Path == "/v1/transfers" || r.URL.Path == "/v1/webhook-deliveries") {
			mu.Lock()
			seen = append(seen, r.URL.RawQuery)
			mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := eng.Shutdown(ctx); err != nil {
			t.Errorf("engine shutdown: %v", err)
		}
	})
	c, err = client.NewClientWithResponses(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return c, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// createTransfers starts a transfer for each of users and returns their
// ids as lists order them, newest first, and each user's. Newest first is
// by id, whose random part orders transfers created within one
// millisecond, as these often are: not the order they were created in.
func createTransfers(t *testing.T, c *client.ClientWithResponses, users ...string) (ids []string, of map[string]string) {
	t.Helper()
	of = map[string]string{}
	for _, u := range users {
		req, err := client.NewNetSapiensRequest(client.NetSapiensTransferRequest{
			Call: client.NetSapiensCall{Domain: "acme.example", User: u}, Target: "1010"})
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.CreateTransferWithResponse(context.Background(), nil, req)
		if err != nil || res.JSON202 == nil {
			t.Fatalf("create for %s: %v %s", u, err, res.Body)
		}
		ids = append(ids, res.JSON202.Id)
		of[u] = res.JSON202.Id
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	return ids, of
}

// TestAListWithoutFiltersSendsNoQuery: the list operations' optional
// parameters were plain values in the generated client, and it sends every
// query parameter a params struct has, so a list without filters went out
// as ?provider=&cursor=&external_id=&…&created_before=0001-01-01T00:00:00Z.
// transferd read the empty values as no filter, which is why a
// hand-written ?call_id=$ID with $ID empty listed every transfer of the
// tenant (found by review). A list sends only what its caller set: with no
// filters, no query string at all, and the iterator over every page adds
// only the cursor.
func TestAListWithoutFiltersSendsNoQuery(t *testing.T) {
	c, queries := queryServer(t)
	ctx := context.Background()
	ids, _ := createTransfers(t, c, "1000", "1001", "1002")

	list, err := c.ListTransfersWithResponse(ctx, &client.ListTransfersParams{})
	if err != nil || list.JSON200 == nil {
		t.Fatalf("list without filters: %v %s", err, list.Body)
	}
	if len(list.JSON200.Items) != len(ids) {
		t.Errorf("list without filters has %d transfers, want %d: %s", len(list.JSON200.Items), len(ids), list.Body)
	}
	deliveries, err := c.ListWebhookDeliveriesWithResponse(ctx, &client.ListWebhookDeliveriesParams{})
	if err != nil || deliveries.JSON200 == nil {
		t.Fatalf("list of deliveries without filters: %v %s", err, deliveries.Body)
	}
	var listed []string
	for tr, err := range c.Transfers(ctx, client.ListTransfersParams{}) {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, tr.Id)
	}
	if !slices.Equal(listed, ids) {
		t.Errorf("Transfers without filters listed %v, want %v", listed, ids)
	}
	if got, want := queries(), []string{"", "", ""}; !slices.Equal(got, want) {
		t.Errorf("lists without filters sent the query strings %q, want none", got)
	}
}

// TestAListSendsTheFiltersItsCallerSet: each filter set is sent, and only
// it; the iterator adds the cursor of each next page.
func TestAListSendsTheFiltersItsCallerSet(t *testing.T) {
	c, queries := queryServer(t)
	ctx := context.Background()
	ids, of := createTransfers(t, c, "1003", "1004", "1005")

	var listed []string
	for tr, err := range c.Transfers(ctx, client.ListTransfersParams{Domain: new("acme.example"), Limit: new(2)}) {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, tr.Id)
	}
	if !slices.Equal(listed, ids) {
		t.Errorf("Transfers of acme.example listed %v, want %v", listed, ids)
	}
	user, err := c.ListTransfersWithResponse(ctx, &client.ListTransfersParams{Domain: new("acme.example"), User: new("1004")})
	if err != nil || user.JSON200 == nil || len(user.JSON200.Items) != 1 || user.JSON200.Items[0].Id != of["1004"] {
		t.Fatalf("list of user 1004: %v %s", err, user.Body)
	}
	dl, err := c.ListWebhookDeliveriesWithResponse(ctx, &client.ListWebhookDeliveriesParams{TransferId: &ids[0]})
	if err != nil || dl.JSON200 == nil {
		t.Fatalf("list of a transfer's deliveries: %v %s", err, dl.Body)
	}
	want := []url.Values{
		{"domain": {"acme.example"}, "limit": {"2"}},
		{"domain": {"acme.example"}, "limit": {"2"}, "cursor": {ids[1]}},
		{"domain": {"acme.example"}, "user": {"1004"}},
		{"transfer_id": {ids[0]}},
	}
	got := queries()
	if len(got) != len(want) {
		t.Fatalf("sent %d lists %q, want %d", len(got), got, len(want))
	}
	for i, raw := range got {
		q, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !equalValues(q, want[i]) {
			t.Errorf("list %d sent %q, want %q", i+1, raw, want[i].Encode())
		}
	}
}

func equalValues(a, b url.Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, vs := range a {
		if !slices.Equal(vs, b[k]) {
			return false
		}
	}
	return true
}
