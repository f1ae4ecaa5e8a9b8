package tenants

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// watchFile is a tenants file whose one account's token is the secret
// file token.
func watchFile(t *testing.T, dir, token string) string {
	t.Helper()
	path := filepath.Join(dir, "tenants.yaml")
	content := `tenants:
  - name: beta
    keys:
      - {name: beta-crm, hash: "sha256:` + strings.Repeat("ab", 32) + `", scope: write}
    providers:
      bandwidth:
        user_id: u-beta
        api_token: {file: ` + token + `}
        api_secret: {env: BETA_BW_SECRET}
`
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func watchLookup(k string) (string, bool) {
	if k == "BETA_BW_SECRET" {
		return "beta-bw-secret", true
	}
	return "", false
}

// A reload refused because a secret file it names is not there yet (a
// ConfigMap updated before the Secret it refers to is mounted: Kubernetes
// updates the two volumes apart) is tried again once the file comes. The
// poll watched only the secret files of the configuration in force, so
// the new tenant never came, until a SIGHUP or another edit of the file.
func TestAReloadRefusedForAMissingSecretFileIsTriedAgainWhenItComes(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "token-1")
	if err := os.WriteFile(old, []byte("token-one"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := watchFile(t, dir, old)
	var tokens []string
	r, err := Open(Options{Path: path, LookupEnv: watchLookup, Log: zerolog.Nop(), Defaults: api.Limits{},
		Build: func(a Account) (orchestrator.Provider, error) {
			tokens = append(tokens, a.APIToken)
			return orchestratortest.NewFake(a.Provider), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	next := filepath.Join(dir, "token-2")
	watchFile(t, dir, next)
	if !r.changed() {
		t.Fatal("an edit of the tenants file is not seen")
	}
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "cannot read") {
		t.Fatalf("reload naming a secret file not there: %v, want it refused", err)
	}
	if r.changed() {
		t.Fatal("a refused reload is tried again with nothing changed")
	}
	if err := os.WriteFile(next, []byte("token-two"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !r.changed() {
		t.Fatal("the secret file a refused reload missed came, and no reload is due")
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := tokens[len(tokens)-1]; got != "token-two" {
		t.Errorf("the account was built with %q, want the new token", got)
	}
}

// A secret file rotated while a reload reads the configuration (here:
// while it builds the account, after reading the file) is read again at
// the next poll. It was stamped after the reload, so the rotated file was
// taken as the one loaded and the account kept the old secret.
func TestASecretRotatedWhileAReloadReadsIsReadAgain(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("token-one"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := watchFile(t, dir, token)
	rotate := true
	r, err := Open(Options{Path: path, LookupEnv: watchLookup, Log: zerolog.Nop(),
		Build: func(a Account) (orchestrator.Provider, error) {
			if rotate {
				rotate = false
				if err := os.WriteFile(token, []byte("token-two-rotated"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			return orchestratortest.NewFake(a.Provider), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if !r.changed() {
		t.Fatal("a secret file rotated while it was loaded is taken as loaded: the account keeps the old secret")
	}
}

// A tenants file that cannot be read (removed, say) is tried again once
// it changes, not at every poll. A refused read named no secret files, and
// the stamp kept was the tenants file's alone while the secret files of
// the configuration in force were still watched: the two never agreed,
// and every poll reloaded, logged the failure and counted it
// (transferd_tenants_reloads_total) until the file came back.
func TestAnUnreadableTenantsFileIsNotReloadedAtEveryPoll(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("token-one"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := watchFile(t, dir, token)
	r, err := Open(Options{Path: path, LookupEnv: watchLookup, Log: zerolog.Nop(),
		Build: func(a Account) (orchestrator.Provider, error) { return orchestratortest.NewFake(a.Provider), nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if !r.changed() {
		t.Fatal("the removal of the tenants file is not seen")
	}
	if err := r.Reload(); err == nil {
		t.Fatal("a tenants file removed was loaded")
	}
	if r.changed() {
		t.Fatal("a tenants file that cannot be read is reloaded again with nothing changed")
	}
	watchFile(t, dir, token)
	if !r.changed() {
		t.Fatal("the tenants file came back, and no reload is due")
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if r.changed() {
		t.Fatal("a reload is due after the file was loaded")
	}
}
