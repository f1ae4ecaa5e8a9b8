package tenants_test

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/tenants"
	"github.com/transferd/transferd/internal/webhooks"
)

func whsec(s string) string { return "whsec_" + base64.StdEncoding.EncodeToString([]byte(s)) }

// TestWebhooksPerTenant: each tenant's endpoints come from its webhooks
// list, secrets by reference (a comma-separated pair for a rotation),
// with the event type filter; the Registry is the dispatcher's Directory.
func TestWebhooksPerTenant(t *testing.T) {
	dir := t.TempDir()
	old, next := whsec("old-secret-of-thirty-two-bytes!!"), whsec("new-secret-of-thirty-two-bytes!!")
	env["ACME_HOOK"] = old + "," + next
	t.Cleanup(func() { delete(env, "ACME_HOOK") })
	secretFile := filepath.Join(dir, "beta-hook")
	if err := os.WriteFile(secretFile, []byte(old+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	content := exampleFile(t, dir)
	content = strings.Replace(content, "      max_in_flight: 10\n", `      max_in_flight: 10
    webhooks:
      - name: crm
        url: https://crm.acme.example/hooks?token=abc
        secrets: [{env: ACME_HOOK}]
        types: [transfer.completed, transfer.failed]
`, 1)
	content += `    webhooks:
      - name: all
        url: https://beta.example/hooks
        secrets: [{file: ` + secretFile + `}]
`
	r, _, _ := open(t, content)
	var dirOf webhooks.Directory = r
	acme := dirOf.Endpoints("acme")
	if len(acme) != 1 || acme[0].ID != "crm" || acme[0].URL != "https://crm.acme.example/hooks?token=abc" ||
		len(acme[0].Secrets) != 2 || acme[0].Secrets[0] != old || acme[0].Secrets[1] != next ||
		len(acme[0].Types) != 2 || acme[0].Types[0] != orchestrator.EventCompleted {
		t.Fatalf("acme's endpoints: %+v", acme)
	}
	if beta := dirOf.Endpoints("beta"); len(beta) != 1 || len(beta[0].Secrets) != 1 || len(beta[0].Types) != 0 {
		t.Fatalf("beta's endpoints: %+v", beta)
	}
	if none := dirOf.Endpoints("nobody"); len(none) != 0 {
		t.Fatalf("an unknown tenant's endpoints: %+v", none)
	}
}

// TestWebhookErrorsNameTheLine: a bad webhook entry is refused with its
// line, and no error quotes a secret.
func TestWebhookErrorsNameTheLine(t *testing.T) {
	env["BAD_HOOK"] = "not-a-whsec-secret"
	t.Cleanup(func() { delete(env, "BAD_HOOK") })
	dir := t.TempDir()
	content := exampleFile(t, dir) + `    webhooks:
      - name: crm
        url: ftp://beta.example/hooks
        secrets: [{env: BAD_HOOK}]
        types: [transfer.exploded]
      - name: crm
        url: https://beta.example/hooks
`
	path := filepath.Join(dir, "tenants.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := tenants.Open(tenants.Options{Path: path, LookupEnv: lookup, Build: (&built{}).build, Log: zerolog.Nop()})
	if err == nil {
		t.Fatal("a bad webhooks list was accepted")
	}
	msg := err.Error()
	for _, want := range []string{"line 29: webhook url", "line 30: webhook secret: a secret must start with whsec_",
		`line 31: event type "transfer.exploded"`, "line 32: webhook crm is declared twice", "line 32: webhook crm has no secret"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not say %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "not-a-whsec-secret") {
		t.Errorf("the error quotes the secret:\n%s", msg)
	}
}

// TestBlankWebhookSecretIsRefused: a webhook whose only secret
// reference resolves to nothing usable (an environment variable holding
// only blanks, or only a comma) must be refused at load, as a missing
// variable or an empty secret file is; otherwise the endpoint is accepted
// with no secret and every delivery fails until it is a dead letter.
func TestBlankWebhookSecretIsRefused(t *testing.T) {
	for name, val := range map[string]string{"blanks": "   ", "comma": ","} {
		t.Run(name, func(t *testing.T) {
			env["BLANK_HOOK"] = val
			t.Cleanup(func() { delete(env, "BLANK_HOOK") })
			dir := t.TempDir()
			content := exampleFile(t, dir) + `    webhooks:
      - name: crm
        url: https://beta.example/hooks
        secrets: [{env: BLANK_HOOK}]
`
			path := filepath.Join(dir, "tenants.yaml")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := tenants.Open(tenants.Options{Path: path, LookupEnv: lookup, Build: (&built{}).build, Log: zerolog.Nop()})
			if err == nil {
				eps := r.Endpoints("beta")
				n := -1
				if len(eps) > 0 {
					n = len(eps[0].Secrets)
				}
				t.Fatalf("a webhook with a blank secret (%q) was accepted: %d endpoints, the first with %d secrets",
					val, len(eps), n)
			}
			if !strings.Contains(err.Error(), "webhook") {
				t.Errorf("the error does not name the webhook: %v", err)
			}
		})
	}
}
