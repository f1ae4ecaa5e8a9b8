package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/transferd/transferd/internal/providers/bandwidth"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/tenants"
)

// The secrets a reload of the tenants file rotates are the ones the
// account's adapter sends from then on (tenants.Options.Rotate), for a
// NetSapiens account and a Bandwidth one: its transfers in flight send
// them too.
func TestARotatedSecretIsSentByTheAdapterInForce(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/ns-api/v2/domains/~/calls/count" {
			_, _ = w.Write([]byte(`{"total": 0}`))
			return
		}
		_, _ = w.Write([]byte(`[]`))
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()

	ns, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + "/ns-api/v2", APIKey: "ns-key-old"})
	if err != nil {
		t.Fatal(err)
	}
	bw, err := bandwidth.New(bandwidth.Config{BaseURL: srv.URL + "/v1", UserID: "u-acme", APIToken: "t-old", APISecret: "s-old"})
	if err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		if err := ns.CheckCredentials(ctx); err != nil {
			t.Fatal(err)
		}
		if err := bw.CheckCredentials(ctx); err != nil {
			t.Fatal(err)
		}
	}
	check()
	applyNS, ok := rotateAccount(ns, tenants.Account{Provider: "netsapiens", APIKey: "ns-key-new"})
	if !ok {
		t.Fatal("a NetSapiens account is not rotated in place")
	}
	applyBW, ok := rotateAccount(bw, tenants.Account{Provider: "bandwidth", UserID: "u-acme", APIToken: "t-new", APISecret: "s-new"})
	if !ok {
		t.Fatal("a Bandwidth account is not rotated in place")
	}
	applyNS()
	applyBW()
	check()
	basic := func(u, p string) string {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		r.SetBasicAuth(u, p)
		return r.Header.Get("Authorization")
	}
	want := []string{"Bearer ns-key-old", basic("t-old", "s-old"), "Bearer ns-key-new", basic("t-new", "s-new")}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seen, want) {
		t.Errorf("credentials sent %q, want %q", seen, want)
	}
}

// A Bandwidth pair read apart is checked with an adapter of its own:
// refused is a 401 only, a pair the provider takes is not.
func TestAPairReadApartIsCheckedAtTheProvider(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, _ := r.BasicAuth(); u != "t-new" || p != "s-new" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"category":"unauthorized","code":"unauthorized","message":"bad credentials"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[]`))
	}))
	t.Cleanup(srv.Close)
	ctx := context.Background()
	if !pairRefused(ctx, bandwidth.Config{BaseURL: srv.URL + "/v1", UserID: "u-acme", APIToken: "t-new", APISecret: "s-old"}) {
		t.Error("a token with another secret, refused by the provider, is said taken")
	}
	if pairRefused(ctx, bandwidth.Config{BaseURL: srv.URL + "/v1", UserID: "u-acme", APIToken: "t-new", APISecret: "s-new"}) {
		t.Error("a pair the provider takes is said refused")
	}
}
