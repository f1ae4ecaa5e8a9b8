package tenants_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/tenants"
)

// sha256 of "acme-crm-key-0000001" and "acme-wallboard-key-01", "beta-crm-key-00000001".
var (
	acmeWrite = api.HashKey("acme-crm-key-0000001")
	acmeRead  = api.HashKey("acme-wallboard-key-01")
	betaWrite = api.HashKey("beta-crm-key-00000001")
)

func hexOf(h api.KeyHash) string {
	const digits = "0123456789abcdef"
	var b strings.Builder
	b.WriteString("sha256:")
	for _, c := range h {
		b.WriteByte(digits[c>>4])
		b.WriteByte(digits[c&15])
	}
	return b.String()
}

func exampleFile(t *testing.T, dir string) string {
	t.Helper()
	secretFile := filepath.Join(dir, "beta-token")
	if err := os.WriteFile(secretFile, []byte("beta-bw-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return `tenants:
  - name: acme
    keys:
      - {name: acme-crm, hash: "` + hexOf(acmeWrite) + `", scope: write}
      - {name: acme-wallboard, hash: "` + hexOf(acmeRead) + `", scope: read}
    providers:
      netsapiens:
        base_url: https://pbx.acme.example/ns-api/v2
        api_key: {env: ACME_NS_KEY}
        join_hostname: consult
        request_budget: 5
    allow:
      domains: [acme.example]
      targets: ['1\d{3}', '\+1555\d{7}']
    limits:
      starts_per_second: 2
      start_burst: 4
      max_in_flight: 10
  - name: beta
    keys:
      - {name: beta-crm, hash: "` + hexOf(betaWrite) + `", scope: write}
    providers:
      bandwidth:
        user_id: u-beta
        api_token: {file: ` + secretFile + `}
        api_secret: {env: BETA_BW_SECRET}
`
}

var env = map[string]string{"ACME_NS_KEY": "acme-ns-secret", "BETA_BW_SECRET": "beta-bw-secret"}

func lookup(k string) (string, bool) { v, ok := env[k]; return v, ok }

// built records the accounts the registry asked for.
type built struct{ accounts []tenants.Account }

func (b *built) build(a tenants.Account) (orchestrator.Provider, error) {
	b.accounts = append(b.accounts, a)
	return orchestratortest.NewFake(a.Provider), nil
}

// refused opens a registry of content, with the test's environment, and
// wants it refused with an error containing want, which it returns.
func refused(t *testing.T, content, want string) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := tenants.Open(tenants.Options{Path: path, LookupEnv: lookup, Build: (&built{}).build, Log: zerolog.Nop()})
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to contain %q", err, want)
	}
	return err
}

func open(t *testing.T, content string) (*tenants.Registry, *built, string) {
	t.Helper()
	dir := t.TempDir()
	if content == "" {
		content = exampleFile(t, dir)
	}
	path := filepath.Join(dir, "tenants.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	b := &built{}
	r, err := tenants.Open(tenants.Options{Path: path, LookupEnv: lookup, Build: b.build, Log: zerolog.Nop(),
		Defaults: api.Limits{MaxWaits: 7}})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return r, b, path
}

func TestRegistryAnswersKeysAccountsAllowListsAndLimits(t *testing.T) {
	r, b, _ := open(t, "")
	if len(b.accounts) != 2 {
		t.Fatalf("built %d accounts, want 2", len(b.accounts))
	}
	acme, beta := b.accounts[0], b.accounts[1]
	if acme.JoinHostname != "consult" || beta.JoinHostname != "" {
		t.Errorf("join hostname not read: acme %q, beta %q", acme.JoinHostname, beta.JoinHostname)
	}
	if acme.APIKey != "acme-ns-secret" || acme.RequestBudget != 5 || beta.APIToken != "beta-bw-token" || beta.APISecret != "beta-bw-secret" {
		t.Errorf("secrets or budget not resolved: %+v / %+v", acme, beta)
	}
	if k, ok := r.Authenticate("acme-wallboard-key-01"); !ok || k.Tenant != "acme" || k.Scope != api.ScopeRead || k.Name != "acme-wallboard" {
		t.Errorf("acme's read key = %+v, %v", k, ok)
	}
	if _, ok := r.Authenticate("acme-crm-key-0000002"); ok {
		t.Error("an unknown key authenticated")
	}
	if got := r.Names("acme"); len(got) != 1 || got[0] != "netsapiens" {
		t.Errorf("acme's providers = %v", got)
	}
	if _, ok := r.Provider("beta", "netsapiens"); ok {
		t.Error("beta has a netsapiens account it does not declare")
	}
	for _, tc := range []struct {
		tenant string
		req    orchestrator.Request
		field  string
	}{
		{"acme", orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "ACME.example"}, Target: "1010"}, ""},
		{"acme", orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "beta.example"}, Target: "1010"}, "call.domain"},
		{"acme", orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "acme.example"}, Target: "+15551234567"}, ""},
		{"acme", orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "acme.example"}, Target: "+4915112345678"}, "target"},
		{"acme", orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "acme.example"}, Target: "10100"}, "target"},
		{"acme", orchestrator.Request{Provider: "bandwidth", Target: "1010"}, "provider"},
		{"beta", orchestrator.Request{Provider: "bandwidth", Target: "+4915112345678"}, ""},
		{"nobody", orchestrator.Request{Provider: "bandwidth"}, "provider"},
	} {
		err := r.Permit(tc.tenant, &tc.req)
		var f *api.Forbidden
		switch {
		case tc.field == "" && err != nil:
			t.Errorf("%s %+v: refused: %v", tc.tenant, tc.req, err)
		case tc.field != "" && (err == nil || !asForbidden(err, &f) || f.Field != tc.field):
			t.Errorf("%s %+v: err = %v, want forbidden %s", tc.tenant, tc.req, err, tc.field)
		}
	}
	if l := r.Limits("acme"); l.StartRate != 2 || l.StartBurst != 4 || l.MaxInFlight != 10 || l.MaxWaits != 7 {
		t.Errorf("acme's limits = %+v (max waits from the defaults)", l)
	}
	if l := r.Limits("beta"); l != (api.Limits{MaxWaits: 7}) {
		t.Errorf("beta's limits = %+v, want the defaults", l)
	}
}

func asForbidden(err error, f **api.Forbidden) bool {
	v, ok := err.(*api.Forbidden)
	*f = v
	return ok
}

func TestErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct {
		name, file, want string
	}{
		{"unknown field", "tenants:\n  - name: acme\n    colour: red\n", "line 3"},
		{"inline secret", "tenants:\n  - name: acme\n    keys: [{name: k, hash: \"" + hexOf(acmeWrite) + "\", scope: write}]\n    providers:\n      netsapiens:\n        base_url: https://pbx.example/ns-api/v2\n        api_key: the-key-itself\n",
			"line 7: a secret is given by reference"},
		{"credentials in the URL", "tenants:\n  - name: acme\n    keys: [{name: k, hash: \"" + hexOf(acmeWrite) + "\", scope: write}]\n    providers:\n      netsapiens:\n        base_url: https://user:pw@pbx.example/ns-api/v2\n        api_key: {env: ACME_NS_KEY}\n",
			"line 6: base_url must not carry credentials"},
		{"unset variable", "tenants:\n  - name: acme\n    keys: [{name: k, hash: \"" + hexOf(acmeWrite) + "\", scope: write}]\n    providers:\n      netsapiens:\n        base_url: https://pbx.example/ns-api/v2\n        api_key: {env: NOT_SET}\n",
			"line 7: netsapiens api_key: environment variable NOT_SET is not set"},
		{"bad hash", "tenants:\n  - name: acme\n    keys:\n      - {name: k, hash: \"sha256:abc\", scope: write}\n    providers:\n      netsapiens:\n        base_url: https://pbx.example/ns-api/v2\n        api_key: {env: ACME_NS_KEY}\n",
			"line 4: key hash"},
		{"bad scope", "tenants:\n  - name: acme\n    keys:\n      - {name: k, hash: \"" + hexOf(acmeWrite) + "\", scope: admin}\n    providers:\n      netsapiens:\n        base_url: https://pbx.example/ns-api/v2\n        api_key: {env: ACME_NS_KEY}\n",
			"line 4: key scope"},
		{"one key twice", "tenants:\n  - name: a\n    keys: [{name: k1, hash: \"" + hexOf(acmeWrite) + "\", scope: write}]\n    providers: {netsapiens: {base_url: 'https://p.example', api_key: {env: ACME_NS_KEY}}}\n  - name: b\n    keys: [{name: k2, hash: \"" + hexOf(acmeWrite) + "\", scope: read}]\n    providers: {netsapiens: {base_url: 'https://p.example', api_key: {env: ACME_NS_KEY}}}\n",
			"are the same key"},
		{"one name for two keys of a tenant", "tenants:\n  - name: acme\n    keys:\n      - {name: crm, hash: \"" + hexOf(acmeWrite) + "\", scope: write}\n      - {name: crm, hash: \"" + hexOf(acmeRead) + "\", scope: read}\n    providers: {netsapiens: {base_url: 'https://p.example', api_key: {env: ACME_NS_KEY}}}\n",
			"line 5: key name \"crm\" is given twice in tenant acme"},
		{"bad join hostname", "tenants:\n  - name: acme\n    keys: [{name: k, hash: \"" + hexOf(acmeWrite) + "\", scope: write}]\n    providers:\n      netsapiens:\n        base_url: https://pbx.example/ns-api/v2\n        api_key: {env: ACME_NS_KEY}\n        join_hostname: core1.example\n",
			"line 8: join_hostname \"core1.example\" is neither caller nor consult"},
		{"a secret reference naming two variables", "tenants:\n  - name: acme\n    keys: [{name: k, hash: \"" + hexOf(acmeWrite) + "\", scope: write}]\n    providers:\n      netsapiens:\n        base_url: https://pbx.example/ns-api/v2\n        api_key: {env: ACME_NS_KEY, env: OTHER_KEY}\n",
			"line 7: env is given more than once"},
		{"a field twice", "tenants:\n  - name: acme\n    keys: [{name: k, hash: \"" + hexOf(acmeWrite) + "\", scope: write}]\n    providers:\n      netsapiens:\n        base_url: https://pbx.example/ns-api/v2\n        base_url: https://other.example/ns-api/v2\n        api_key: {env: ACME_NS_KEY}\n",
			"line 7"},
		{"a key written as an entry of keys", "tenants:\n  - name: acme\n    keys:\n      - the-key-itself\n",
			"line 4: cannot unmarshal !!str into tenants.keySpec"},
		{"a key written as the list of keys", "tenants:\n  - name: acme\n    keys: the-key-itself\n",
			"line 3: cannot unmarshal !!str into []tenants.keySpec"},
		{"a key written as a variable's name", "tenants:\n  - name: acme\n    keys: [{name: k, hash: \"" + hexOf(acmeWrite) + "\", scope: write}]\n    providers:\n      netsapiens:\n        base_url: https://pbx.example/ns-api/v2\n        api_key: {env: the-key-itself}\n",
			"line 7: netsapiens api_key: env must name an environment variable"},
		{"a key written as a file's name", "tenants:\n  - name: acme\n    keys: [{name: k, hash: \"" + hexOf(acmeWrite) + "\", scope: write}]\n    providers:\n      netsapiens:\n        base_url: https://pbx.example/ns-api/v2\n        api_key: {file: the-key-itself}\n",
			"line 7: netsapiens api_key: cannot read the relative path given"},
		{"bad target pattern", "tenants:\n  - name: acme\n    keys: [{name: k, hash: \"" + hexOf(acmeWrite) + "\", scope: write}]\n    providers: {netsapiens: {base_url: 'https://p.example', api_key: {env: ACME_NS_KEY}}}\n    allow:\n      targets: ['1(']\n",
			"line 6: target pattern"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := refused(t, tc.file, tc.want)
			// yaml.v3 quotes a value's first seven bytes ("the-key...").
			for _, s := range []string{"the-key", "user:pw", "acme-ns-secret"} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("the error shows a secret (%q): %v", s, err)
				}
			}
		})
	}
}

func TestReloadKeepsUnchangedAccountsAndRefusesABadFile(t *testing.T) {
	r, b, path := open(t, "")
	acmeNS, _ := r.Provider("acme", "netsapiens")
	data, _ := os.ReadFile(path)
	// beta's secret changes (a rotated secret), acme's account does not.
	env["BETA_BW_SECRET"] = "beta-bw-secret-2"
	defer func() { env["BETA_BW_SECRET"] = "beta-bw-secret" }()
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if p, _ := r.Provider("acme", "netsapiens"); p != acmeNS {
		t.Error("an unchanged account got a new adapter (and would lose its watchers and budget)")
	}
	if n := len(b.accounts); n != 3 || b.accounts[2].APISecret != "beta-bw-secret-2" {
		t.Errorf("after the rotation %d accounts were built, want beta's again", n)
	}
	// An invalid file keeps the configuration in force.
	if err := os.WriteFile(path, []byte(strings.Replace(string(data), "scope: read", "scope: root", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "line 5") {
		t.Fatalf("reload of a bad file: %v, want an error naming line 5", err)
	}
	if _, ok := r.Authenticate("acme-wallboard-key-01"); !ok {
		t.Error("a failed reload dropped the keys in force")
	}
}

func TestRunReloadsOnSIGHUPAndOnChange(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tenants.yaml")
	if err := os.WriteFile(path, []byte(exampleFile(t, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	reloaded := make(chan error, 4)
	r, err := tenants.Open(tenants.Options{Path: path, LookupEnv: lookup, Build: (&built{}).build, Log: zerolog.Nop(),
		OnReload: func(err error) { reloaded <- err }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hup := make(chan os.Signal, 1)
	done := make(chan struct{})
	go func() { r.Run(ctx, hup, 0); close(done) }()
	// Without a SIGHUP, a change is not seen when polling is off.
	data, _ := os.ReadFile(path)
	withoutBeta := string(data[:strings.Index(string(data), "  - name: beta")])
	if err := os.WriteFile(path, []byte(withoutBeta), 0o600); err != nil {
		t.Fatal(err)
	}
	hup <- os.Interrupt
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	if got := r.Tenants(); len(got) != 1 || got[0] != "acme" {
		t.Errorf("tenants after SIGHUP = %v, want [acme]", got)
	}
	cancel()
	<-done

	// Polling sees a change by itself. The file is replaced whole, as a
	// deployment replaces it: written in place, a poll every millisecond
	// could read it half written (seen in CI: a reload of an empty file,
	// refused, the one in force kept until the next poll).
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx, nil, time.Millisecond)
	next := filepath.Join(dir, "tenants.yaml.next")
	if err := os.WriteFile(next, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, path); err != nil {
		t.Fatal(err)
	}
	if err := <-reloaded; err != nil {
		t.Fatal(err)
	}
	if got := r.Tenants(); len(got) != 2 {
		t.Errorf("tenants after the change = %v, want both", got)
	}
}

func TestAccountsPrintNoSecrets(t *testing.T) {
	a := tenants.Account{Tenant: "acme", Provider: "bandwidth", APIToken: "tok-secret", APISecret: "sec-secret", APIKey: "ns-secret"}
	for _, s := range []string{a.String(), a.GoString()} {
		if strings.Contains(s, "secret") {
			t.Errorf("an account prints a secret: %s", s)
		}
	}
}

// checkingFake is an account whose credential check answers err and says
// which account it checked.
type checkingFake struct {
	*orchestratortest.Fake
	tenant  string
	err     error
	checked chan<- string
}

func (c checkingFake) CheckCredentials(context.Context) error {
	c.checked <- c.tenant
	return c.err
}

// Every account of the tenants file is credential-checked, one series per
// account; a reload that removes an account drops its series, and one
// that adds an account has it checked without waiting for the next round
// (and without checking the others again).
func TestCredentialHealthPerAccount(t *testing.T) {
	checked := make(chan string, 8)
	rejected := &orchestrator.Error{Kind: orchestrator.KindProviderAuth, Err: errors.New("401 Unauthorized")}
	dir := t.TempDir()
	path := filepath.Join(dir, "tenants.yaml")
	full := exampleFile(t, dir)
	if err := os.WriteFile(path, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := tenants.Open(tenants.Options{Path: path, LookupEnv: lookup, Log: zerolog.Nop(),
		Build: func(a tenants.Account) (orchestrator.Provider, error) {
			c := checkingFake{Fake: orchestratortest.NewFake(a.Provider), tenant: a.Tenant, checked: checked}
			if a.Tenant == "beta" {
				c.err = rejected
			}
			return c, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := api.NewCredentialMonitor(r.CredentialAccounts, time.Hour, time.Second, zerolog.Nop(), reg)
	m.CheckAll(context.Background())
	<-checked
	<-checked
	want := `
# HELP transferd_provider_credentials_ok 1 when the provider accepted the account's credentials at the last conclusive check, 0 when it refused them (401/403); account is <tenant>/<provider>.
# TYPE transferd_provider_credentials_ok gauge
transferd_provider_credentials_ok{account="acme/netsapiens",provider="netsapiens"} 1
transferd_provider_credentials_ok{account="beta/bandwidth",provider="bandwidth"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "transferd_provider_credentials_ok"); err != nil {
		t.Error(err)
	}

	// beta leaves: its series go with it.
	if err := os.WriteFile(path, []byte(full[:strings.Index(full, "  - name: beta")]), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	m.CheckAll(context.Background())
	<-checked
	if n := testutil.CollectAndCount(reg, "transferd_provider_credentials_ok"); n != 1 {
		t.Errorf("after beta left: %d series, want acme's alone", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if got := <-checked; got != "acme" {
		t.Fatalf("first round checked %s", got)
	}
	// beta comes back: CheckNew checks it alone.
	if err := os.WriteFile(path, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	m.CheckNew()
	if got := <-checked; got != "beta" {
		t.Errorf("after the reload %s was checked, want beta alone", got)
	}
	cancel()
	<-done
	if len(checked) != 0 {
		t.Errorf("%d more checks than the new account's", len(checked))
	}
	for _, name := range []string{"transferd_provider_credentials_ok", "transferd_provider_credentials_checked_timestamp_seconds"} {
		if n := testutil.CollectAndCount(reg, name); n != 2 {
			t.Errorf("%s has %d series, want one per account (2)", name, n)
		}
	}
}

// A NetSapiens target may be user@domain, which the PBX dials in that
// domain: a tenant kept to its domains (allow.domains) may name only
// those, also with no target list. Found by review: only call.domain was
// checked, so a tenant kept to acme.example could ring, and hand its
// callers to, the users of any domain its account reaches (another
// tenant's on a shared PBX).
func TestDomainAllowListAppliesToTheTargetsDomain(t *testing.T) {
	r, _, _ := open(t, `tenants:
  - name: acme
    keys:
      - {name: acme-crm, hash: "`+hexOf(acmeWrite)+`", scope: write}
    providers:
      netsapiens:
        base_url: https://pbx.shared.example/ns-api/v2
        api_key: {env: ACME_NS_KEY}
    allow:
      domains: [acme.example]
`)
	for target, field := range map[string]string{
		"2000":                           "",
		"+15551234567":                   "",
		"2000@acme.example":              "",
		"2000@ACME.Example":              "",
		"2000@beta.example":              "target",
		"2000@":                          "target",
		"2000@acme.example@beta.example": "target",
	} {
		req := orchestrator.Request{Provider: "netsapiens", Mode: orchestrator.ModeAttended,
			Call: orchestrator.CallRef{Domain: "acme.example", User: "1000"}, Target: target}
		err := r.Permit("acme", &req)
		var f *api.Forbidden
		switch {
		case field == "" && err != nil:
			t.Errorf("target %q: refused: %v", target, err)
		case field != "" && (err == nil || !asForbidden(err, &f) || f.Field != field):
			t.Errorf("target %q: err = %v, want forbidden %s", target, err, field)
		}
	}
}

// rotations records the secrets Options.Rotate was told of and those it
// gave the adapters.
type rotations struct {
	asked, applied []string
	given          []orchestrator.Provider // the adapters applied to
}

func (r *rotations) rotate(p orchestrator.Provider, a tenants.Account) (func(), bool) {
	r.asked = append(r.asked, a.APISecret)
	return func() { r.applied, r.given = append(r.applied, a.APISecret), append(r.given, p) }, true
}

// An account whose secrets alone changed keeps its adapter and gives it
// the new secrets, once the whole file validated. It got a new adapter:
// its transfers in flight, driven by the old one, went on sending the
// old secrets, which a rotation after a leak revokes at once, and their
// callers were left held when every request was refused. A reload that
// fails after the rotation was asked for gives the adapter nothing; a
// change of another setting (the budget) still builds the account anew.
func TestARotatedSecretIsGivenToTheAccountsAdapter(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tenants.yaml")
	content := exampleFile(t, dir)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	b, rot := &built{}, &rotations{}
	r, err := tenants.Open(tenants.Options{Path: path, LookupEnv: lookup, Log: zerolog.Nop(), Rotate: rot.rotate,
		Build: func(a tenants.Account) (orchestrator.Provider, error) {
			if a.Tenant == "gamma" {
				return nil, errors.New("gamma's account cannot be built")
			}
			return b.build(a)
		}})
	if err != nil {
		t.Fatal(err)
	}
	betaBW, _ := r.Provider("beta", "bandwidth")
	acmeNS, _ := r.Provider("acme", "netsapiens")
	env["BETA_BW_SECRET"] = "beta-bw-secret-2"
	defer func() { env["BETA_BW_SECRET"] = "beta-bw-secret" }()

	// A file that rotates beta's secret and adds a tenant whose account
	// cannot be built is refused whole.
	gamma := content + `  - name: gamma
    keys:
      - {name: gamma-crm, hash: "` + hexOf(api.HashKey("gamma-crm-key-0000001")) + `", scope: write}
    providers:
      netsapiens:
        base_url: https://pbx.gamma.example/ns-api/v2
        api_key: {env: ACME_NS_KEY}
`
	if err := os.WriteFile(path, []byte(gamma), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil {
		t.Fatal("a file whose account cannot be built was loaded")
	}
	if len(rot.applied) != 0 {
		t.Fatalf("a refused reload gave an adapter its secrets %q", rot.applied)
	}

	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if p, _ := r.Provider("beta", "bandwidth"); p != betaBW {
		t.Error("a rotated secret built a new adapter: the transfers in flight go on with the old secret")
	}
	if len(b.accounts) != 2 || len(rot.applied) != 1 || rot.applied[0] != "beta-bw-secret-2" {
		t.Errorf("after the rotation: %d accounts built (want the first 2), secrets given %q (want beta's new one)", len(b.accounts), rot.applied)
	}
	if p, _ := r.Provider("acme", "netsapiens"); p != acmeNS {
		t.Error("an unchanged account got a new adapter")
	}

	// Another budget is another account: built anew.
	if err := os.WriteFile(path, []byte(strings.Replace(content, "request_budget: 5", "request_budget: 6", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if p, _ := r.Provider("acme", "netsapiens"); p == acmeNS || len(b.accounts) != 3 {
		t.Errorf("a changed budget kept the adapter (%d accounts built)", len(b.accounts))
	}
}

// An account whose secret a reload rotated is checked again at once
// (CheckNew), as an account a reload added is: the status and
// transferd_provider_credentials_ok kept the old secret's verdict until
// the next round (15 minutes in transferd), so a rotation to a key the provider
// refuses, now sent by the transfers in flight too, went unseen, and a
// fixed key left its alert firing.
func TestACredentialRotatedByAReloadIsCheckedAgain(t *testing.T) {
	checked := make(chan string, 8)
	dir := t.TempDir()
	path := filepath.Join(dir, "tenants.yaml")
	full := exampleFile(t, dir)
	if err := os.WriteFile(path, []byte(full), 0o600); err != nil {
		t.Fatal(err)
	}
	rot := &rotations{}
	r, err := tenants.Open(tenants.Options{Path: path, LookupEnv: lookup, Log: zerolog.Nop(), Rotate: rot.rotate,
		Build: func(a tenants.Account) (orchestrator.Provider, error) {
			return checkingFake{Fake: orchestratortest.NewFake(a.Provider), tenant: a.Tenant, checked: checked}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	m := api.NewCredentialMonitor(r.CredentialAccounts, time.Hour, time.Second, zerolog.Nop(), prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	<-checked
	<-checked

	// beta's secret rotates and gamma comes, in one reload.
	env["BETA_BW_SECRET"] = "beta-bw-secret-2"
	defer func() { env["BETA_BW_SECRET"] = "beta-bw-secret" }()
	gamma := full + `  - name: gamma
    keys:
      - {name: gamma-crm, hash: "` + hexOf(api.HashKey("gamma-crm-key-0000001")) + `", scope: write}
    providers:
      netsapiens:
        base_url: https://pbx.gamma.example/ns-api/v2
        api_key: {env: ACME_NS_KEY}
`
	if err := os.WriteFile(path, []byte(gamma), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	m.CheckNew()
	if got := <-checked; got != "beta" {
		t.Fatalf("after the reload %s was checked first, want beta (rotated), then gamma (added)", got)
	}
	if got := <-checked; got != "gamma" {
		t.Fatalf("then %s, want gamma", got)
	}
	cancel()
	<-done
	if len(checked) != 0 {
		t.Errorf("%d more checks than the rotated and the new account's", len(checked))
	}
}

// An account whose secrets a reload changed together with another of its
// settings (here a budget given with the rotation) is built anew for new
// transfers, and its old adapter, which drives the transfers in flight, is
// given the new secrets too, as long as it is the same account at the
// provider (its base URL and user). It kept the old ones: a rotation after
// a leak, made in the same edit as any other change, revokes them at once,
// every request of those transfers was refused, and their callers were
// left held, as before rotations were given in place. An account moved to
// another base URL keeps its old secrets for the transfers on the old one.
func TestARotatedSecretReachesTheOldAdapterOfAnAccountBuiltAnew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tenants.yaml")
	content := exampleFile(t, dir)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	b, rot := &built{}, &rotations{}
	r, err := tenants.Open(tenants.Options{Path: path, LookupEnv: lookup, Log: zerolog.Nop(), Rotate: rot.rotate, Build: b.build})
	if err != nil {
		t.Fatal(err)
	}
	betaBW, _ := r.Provider("beta", "bandwidth")
	env["BETA_BW_SECRET"] = "beta-bw-secret-2"
	defer func() { env["BETA_BW_SECRET"] = "beta-bw-secret" }()

	budgeted := strings.Replace(content, "        user_id: u-beta\n", "        user_id: u-beta\n        request_budget: 3\n", 1)
	if err := os.WriteFile(path, []byte(budgeted), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if p, _ := r.Provider("beta", "bandwidth"); p == betaBW || len(b.accounts) != 3 {
		t.Fatalf("a changed budget kept the adapter (%d accounts built)", len(b.accounts))
	}
	if len(rot.applied) != 1 || rot.applied[0] != "beta-bw-secret-2" || rot.given[0] != betaBW {
		t.Errorf("secrets given in place %q; want beta's new one given to the adapter its transfers in flight are driven with", rot.applied)
	}

	// Moved to another base URL, with another secret: the old adapter
	// keeps its own for the transfers on the old one.
	env["BETA_BW_SECRET"] = "beta-bw-secret-3"
	moved := strings.Replace(budgeted, "        user_id: u-beta\n", "        user_id: u-beta\n        base_url: https://bw.beta.example/v1\n", 1)
	if err := os.WriteFile(path, []byte(moved), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if len(b.accounts) != 4 || len(rot.applied) != 1 {
		t.Errorf("an account moved to another URL: %d accounts built (want 4), secrets given in place %q (want only the first)", len(b.accounts), rot.applied)
	}
}
