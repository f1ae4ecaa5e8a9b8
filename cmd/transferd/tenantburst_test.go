package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/tenants"
)

// A tenants-file account with a request budget and no request_burst takes
// TRANSFERD_REQUEST_BURST, which the configuration says applies to every
// provider account; one that names its burst keeps it.
func TestATenantBudgetWithoutABurstTakesTheConfiguredOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	file := `tenants:
  - name: acme
    keys: [{name: crm, hash: "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8", scope: write}]
    providers:
      netsapiens: {base_url: "https://pbx.acme.example/ns-api/v2", api_key: {env: ACME_KEY}, request_budget: 10}
  - name: globex
    keys: [{name: crm, hash: "sha256:a665a45920422f9d417e4867efdc4fb8a04a1f3fff1fa07e998e86f7f7a27ae3", scope: write}]
    providers:
      netsapiens: {base_url: "https://pbx.globex.example/ns-api/v2", api_key: {env: GLOBEX_KEY}, request_budget: 10, request_burst: 2}
`
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	const configured = 7
	bursts := map[string]int{}
	_, err := tenants.Open(tenants.Options{Path: path, Log: zerolog.Nop(),
		LookupEnv: func(string) (string, bool) { return "a-key", true },
		Build: func(a tenants.Account) (orchestrator.Provider, error) {
			bursts[a.Tenant] = tenantAccount(a, configured).burst
			return nil, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if bursts["acme"] != configured || bursts["globex"] != 2 {
		t.Errorf("bursts %v, want acme %d (TRANSFERD_REQUEST_BURST) and globex 2 (its own)", bursts, configured)
	}
}

// TRANSFERD_TENANT_START_BURST=0 is refused by name: the limiter ran it
// as a burst of 1, not what the operator set. (A tenants file's
// start_burst: 0 is a limit the file does not give, which this setting
// gives.)
func TestAStartBurstOfZeroIsRefused(t *testing.T) {
	t.Setenv("TRANSFERD_TENANT_START_RATE", "2")
	t.Setenv("TRANSFERD_TENANT_START_BURST", "0")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), "TRANSFERD_TENANT_START_BURST: must be at least 1") {
		t.Errorf("TRANSFERD_TENANT_START_BURST=0: validate = %v, want it refused by name", err)
	}
}
