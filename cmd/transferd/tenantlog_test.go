package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// Two tenants' PBXs may both have a domain of one name: the lines a
// tenant's provider account logs on its own (its NetSapiens event
// subscriptions, which belong to no request) name the tenant, so that an
// operator can tell whose account failed to subscribe.
func TestAccountLogLinesNameTheTenant(t *testing.T) {
	acme := newTenantSim(t, "nsd_AcmeTopSecretValue", "MAIN")
	dir := t.TempDir()
	file := fmt.Sprintf(`tenants:
  - name: acme
    keys: [{name: acme-crm, hash: "%s", scope: write}]
    providers:
      netsapiens: {base_url: "%s/ns-api/v2", api_key: {env: ACME_NS_KEY}}
`, sha("acme-api-key-0000001"), acme.srv.URL)
	path := filepath.Join(dir, "tenants.yaml")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ACME_NS_KEY", acme.key)
	t.Setenv("TRANSFERD_TENANTS_FILE", path)
	t.Setenv("TRANSFERD_LISTEN_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_ADMIN_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_PUBLIC_URL", "https://transferd.example.com")
	t.Setenv("TRANSFERD_CALLBACK_SECRET", "tenant-log-callback-secret-0123456789abcdef")
	t.Setenv("TRANSFERD_POLL_INTERVAL", "5ms")
	t.Setenv("TRANSFERD_POLL_MAX_INTERVAL", "20ms")
	t.Setenv("TRANSFERD_DATA_DIR", t.TempDir())
	logs, stop := runInBackground()
	api := "http://" + logs.wait(t, func(m map[string]any) bool { return m["message"] == "listening" && m["listener"] == "api" })["addr"].(string)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	if _, err := acme.sim.PlaceCall(nssim.InboundCall{Domain: "MAIN", User: "1000"}); err != nil {
		t.Fatal(err)
	}
	res, tr := send(t, "POST", api+"/v1/transfers", `{"provider":"netsapiens","call":{"domain":"MAIN","user":"1000"},"target":"1010"}`,
		"Authorization", "Bearer acme-api-key-0000001", "Prefer", "wait=30")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %v", res.StatusCode, tr)
	}
	line := logs.wait(t, func(m map[string]any) bool {
		return m["component"] == "netsapiens-subscriptions" && m["domain"] == "main"
	})
	if line["tenant"] != "acme" {
		t.Errorf("the subscription's line names tenant %v, want acme: %v", line["tenant"], line)
	}
}
