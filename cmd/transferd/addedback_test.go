package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
	"github.com/transferd/transferd/internal/tenants"
)

// A NetSapiens account removed from the tenants file and then added back,
// while its old client still drives a transfer watching the domain: both
// clients adopted the domain's one subscription (one post-url), and the
// old one's release, once its last transfer ended, deleted it under the
// new one's watch (deliveries lost until the renewal's 404, up to half a
// TTL). The one added back now shares the old one's subscriptions, which
// only the last of them deletes.
func TestAnAccountAddedBackKeepsTheSubscriptionTheOldClientReleases(t *testing.T) {
	subscriptionOutlivesTheOldClient(t, true, func(url string) string { return url })
}

// The same account moved to its PBX's URL written another way (the
// scheme's case, a trailing slash) is at the same place: it was built
// with no hand-over, and the old client's release deleted the one
// subscription under the new client's watch.
func TestAnAccountMovedToItsURLWrittenAnotherWayKeepsTheSubscription(t *testing.T) {
	subscriptionOutlivesTheOldClient(t, false, func(url string) string { return strings.ToUpper(url[:4]) + url[4:] + "/" })
}

// subscriptionOutlivesTheOldClient has acme's NetSapiens client watch its
// domain, then reloads the file with the account's base URL as moved
// gives it (after one reload without the account, if removed), and
// checks that the old client's release deletes no subscription under the
// new one's watch.
func subscriptionOutlivesTheOldClient(t *testing.T, removed bool, moved func(url string) string) {
	const domain, key = "acme.example", "ns-key-acme"
	sim := nssim.New(nssim.Config{APIKeys: map[string]nssim.KeyScope{key: {Domain: domain}}, SubscriptionLag: time.Hour})
	mux := http.NewServeMux()
	mux.Handle("/ns-api/v2/", http.StripPrefix("/ns-api/v2", sim.APIHandler()))
	pbx := httptest.NewServer(mux)
	t.Cleanup(pbx.Close)

	dir := t.TempDir()
	path := filepath.Join(dir, "tenants.yaml")
	keys := func(name, hash string) string {
		return "  - name: " + name + "\n    keys:\n      - {name: " + name + "-crm, hash: \"sha256:" + strings.Repeat(hash, 32) + "\", scope: write}\n"
	}
	// beta keeps the file valid while acme has no account.
	beta := keys("beta", "cd") + "    providers:\n      bandwidth:\n        user_id: u-beta\n        api_token: {env: BW_TOKEN}\n        api_secret: {env: BW_SECRET}\n"
	acme := func(url string) string {
		return "tenants:\n" + keys("acme", "ab") + "    providers:\n      netsapiens:\n        base_url: " + url +
			"\n        api_key: {env: NS_KEY}\n" + beta
	}
	withAcme := acme(pbx.URL + "/ns-api/v2")
	withoutAcme := "tenants:\n" + beta
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(withAcme)
	env := map[string]string{"NS_KEY": key, "BW_TOKEN": "t", "BW_SECRET": "s"}
	var (
		mu      sync.Mutex
		inUse   = map[orchestrator.Provider]bool{}
		clients []*netsapiens.Client
	)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, c := range clients {
			_ = c.Close(ctx)
		}
	})
	r, err := tenants.Open(tenants.Options{Path: path, Log: zerolog.Nop(),
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Build: func(a tenants.Account) (orchestrator.Provider, error) {
			if a.Provider != netsapiens.Name {
				return orchestratortest.NewFake(a.Provider), nil
			}
			c, err := netsapiens.New(netsapiens.Config{BaseURL: a.BaseURL, APIKey: a.APIKey, RetryBase: time.Millisecond,
				SubscriptionLinger: time.Millisecond, EventURL: func(d string) string { return "https://transferd.example/events/acme/" + d }})
			if err == nil {
				clients = append(clients, c)
			}
			return c, err
		},
		Rotate: rotateAccount, HandOver: handOverAccount,
		InUse: func(p orchestrator.Provider) bool { mu.Lock(); defer mu.Unlock(); return inUse[p] },
		Release: func(p orchestrator.Provider) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := p.(*netsapiens.Client).Close(ctx); err != nil {
				t.Errorf("release: %v", err)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := sim.Wait(ctx, cond); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	p, _ := r.Provider("acme", netsapiens.Name)
	old := p.(*netsapiens.Client)
	mu.Lock()
	inUse[old] = true // a transfer in flight, watching the domain
	mu.Unlock()
	old.WatchStarted(domain)
	wait("the domain's subscription", func() bool { return len(sim.Subscriptions()) == 1 })
	sub := sim.Subscriptions()[0]

	if removed {
		write(withoutAcme)
		if err := r.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	write(acme(moved(pbx.URL + "/ns-api/v2")))
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	p, _ = r.Provider("acme", netsapiens.Name)
	added := p.(*netsapiens.Client)
	if added == old {
		t.Fatal("the account added back or moved kept the old client")
	}
	added.WatchStarted(domain) // a new transfer on the account added back

	// The old transfer ends; its client is released.
	old.WatchStopped(domain)
	mu.Lock()
	inUse[old] = false
	mu.Unlock()
	r.Sweep()
	deleted := 0
	for _, q := range sim.Requests() {
		if q.Operation == nssim.OpSubscriptionDelete {
			deleted++
		}
	}
	if now := sim.Subscriptions(); deleted != 0 || len(now) != 1 || now[0].ID != sub.ID {
		t.Errorf("after the old client's release: %d deletion(s), subscriptions %+v; want %s kept for the new client's watch",
			deleted, now, sub.ID)
	}
}
