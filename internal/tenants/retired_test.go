package tenants_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/tenants"
)

// retiredRig is the example file opened with rotations recorded, and the
// adapters a test says are still in use.
type retiredRig struct {
	r        *tenants.Registry
	b        *built
	rot      *rotations
	path     string
	content  string
	inUse    map[orchestrator.Provider]bool
	released []orchestrator.Provider
	handed   [][2]orchestrator.Provider
}

func newRetiredRig(t *testing.T) *retiredRig {
	t.Helper()
	dir := t.TempDir()
	rig := &retiredRig{b: &built{}, rot: &rotations{}, path: filepath.Join(dir, "tenants.yaml"), content: exampleFile(t, dir),
		inUse: map[orchestrator.Provider]bool{}}
	if err := os.WriteFile(rig.path, []byte(rig.content), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := tenants.Open(tenants.Options{Path: rig.path, LookupEnv: lookup, Log: zerolog.Nop(), Rotate: rig.rot.rotate, Build: rig.b.build,
		InUse:   func(p orchestrator.Provider) bool { return rig.inUse[p] },
		Release: func(p orchestrator.Provider) { rig.released = append(rig.released, p) },
		HandOver: func(old, successor orchestrator.Provider) func() {
			return func() { rig.handed = append(rig.handed, [2]orchestrator.Provider{old, successor}) }
		}})
	if err != nil {
		t.Fatal(err)
	}
	rig.r = r
	t.Cleanup(func() { env["BETA_BW_SECRET"] = "beta-bw-secret" })
	return rig
}

// reload writes beta's bandwidth account with budget (none: 0) and
// secret, and reloads.
func (rig *retiredRig) reload(t *testing.T, budget, secret string) orchestrator.Provider {
	t.Helper()
	env["BETA_BW_SECRET"] = secret
	content := rig.content
	if budget != "" {
		content = strings.Replace(content, "        user_id: u-beta\n", "        user_id: u-beta\n        request_budget: "+budget+"\n", 1)
	}
	if err := os.WriteFile(rig.path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rig.r.Reload(); err != nil {
		t.Fatal(err)
	}
	p, _ := rig.r.Provider("beta", "bandwidth")
	return p
}

// given is what secrets p was given in place, in order.
func (rig *retiredRig) given(p orchestrator.Provider) []string {
	var out []string
	for i, q := range rig.rot.given {
		if q == p {
			out = append(out, rig.rot.applied[i])
		}
	}
	return out
}

// Two reloads in a row, each rotating the secret with another setting (a
// budget), build the account twice: the first adapter still drives the
// transfers adopted before the first, and is given the second rotation
// too, as is every adapter in use at the account's place when the secret
// alone changes later. It kept the secret of the first: revoked, every
// request of those transfers was refused and their callers held.
func TestARotationReachesEveryReplacedAdapterStillInUse(t *testing.T) {
	rig := newRetiredRig(t)
	first, _ := rig.r.Provider("beta", "bandwidth")
	rig.inUse[first] = true
	second := rig.reload(t, "3", "beta-bw-secret-2")
	rig.inUse[second] = true
	third := rig.reload(t, "4", "beta-bw-secret-3")
	if first == second || second == third {
		t.Fatal("a changed budget kept the adapter")
	}
	if got := rig.given(first); !slices.Equal(got, []string{"beta-bw-secret-2", "beta-bw-secret-3"}) {
		t.Errorf("the first adapter, driving transfers in flight, was given %q; want both rotations", got)
	}
	if got := rig.given(second); !slices.Equal(got, []string{"beta-bw-secret-3"}) {
		t.Errorf("the second adapter was given %q", got)
	}
	// The secret alone: given in place to the adapter in force, and to
	// both before it.
	if p := rig.reload(t, "4", "beta-bw-secret-4"); p != third {
		t.Fatal("a rotation alone built the account anew")
	}
	for i, p := range []orchestrator.Provider{first, second, third} {
		if got := rig.given(p); len(got) == 0 || got[len(got)-1] != "beta-bw-secret-4" {
			t.Errorf("adapter %d was last given %q, want beta-bw-secret-4", i+1, got)
		}
	}
}

// An adapter a reload replaced is released once no transfer uses it (a
// NetSapiens client's subscriptions and goroutines), and not before; one
// built anew at the same place takes over from the one it replaces
// (HandOver), one moved elsewhere does not. Released, it is given no
// rotation.
func TestAReplacedAdapterIsReleasedOnceNoTransferUsesIt(t *testing.T) {
	rig := newRetiredRig(t)
	first, _ := rig.r.Provider("beta", "bandwidth")
	rig.inUse[first] = true
	second := rig.reload(t, "3", "beta-bw-secret")
	if len(rig.handed) != 1 || rig.handed[0] != [2]orchestrator.Provider{first, second} {
		t.Errorf("handed over %v, want the first adapter's to the second", rig.handed)
	}
	rig.r.Sweep()
	if len(rig.released) != 0 {
		t.Fatalf("released %v while a transfer uses it", rig.released)
	}
	rig.inUse[first] = false
	rig.r.Sweep()
	if len(rig.released) != 1 || rig.released[0] != first {
		t.Fatalf("released %v, want the first adapter", rig.released)
	}
	rig.r.Sweep()
	if len(rig.released) != 1 {
		t.Fatalf("released twice: %v", rig.released)
	}
	rig.reload(t, "3", "beta-bw-secret-2")
	if got := rig.given(first); len(got) != 0 {
		t.Errorf("a released adapter was given %q", got)
	}
	// Moved to another URL: nothing handed over.
	content := strings.Replace(rig.content, "        user_id: u-beta\n", "        user_id: u-beta\n        base_url: https://bw.beta.example/v1\n", 1)
	if err := os.WriteFile(rig.path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rig.r.Reload(); err != nil {
		t.Fatal(err)
	}
	if len(rig.handed) != 1 {
		t.Errorf("handed over to an account at another URL: %v", rig.handed)
	}
}

// A Bandwidth token and secret kept in two Secrets, which Kubernetes
// updates one after the other, were read as a pair of the new token and
// the old secret and given to the adapter: the provider refused every
// request of the transfers in flight (their callers held) until the next
// poll read the other half. A pair changed apart that the provider
// refuses now leaves the pair in force; the second half's arrival gives
// both. One changed apart that the provider takes (a secret rotated
// alone) is given as before.
func TestATokenReadWithoutItsSecretIsNotGiven(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tenants.yaml")
	content := exampleFile(t, dir)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	b, rot := &built{}, &rotations{}
	var checked []tenants.Account
	good := map[[2]string]bool{{"beta-bw-token", "beta-bw-secret"}: true, {"beta-bw-token-2", "beta-bw-secret-2"}: true,
		{"beta-bw-token-2", "beta-bw-secret-3"}: true}
	r, err := tenants.Open(tenants.Options{Path: path, LookupEnv: lookup, Log: zerolog.Nop(), Rotate: rot.rotate, Build: b.build,
		Refused: func(_ context.Context, a tenants.Account) bool {
			checked = append(checked, a)
			return !good[[2]string{a.APIToken, a.APISecret}]
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { env["BETA_BW_SECRET"] = "beta-bw-secret" }()
	adapter, _ := r.Provider("beta", "bandwidth")
	reload := func() {
		t.Helper()
		if err := r.Reload(); err != nil {
			t.Fatal(err)
		}
		if p, _ := r.Provider("beta", "bandwidth"); p != adapter {
			t.Fatal("the account was built anew")
		}
	}
	// The token's Secret first.
	if err := os.WriteFile(filepath.Join(dir, "beta-token"), []byte("beta-bw-token-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reload()
	if len(rot.applied) != 0 {
		t.Fatalf("a token read without its secret, refused, was given: %q", rot.applied)
	}
	if len(checked) != 1 || checked[0].APIToken != "beta-bw-token-2" || checked[0].APISecret != "beta-bw-secret" {
		t.Fatalf("checked %d pairs, want the one read", len(checked))
	}
	// Then the secret's.
	env["BETA_BW_SECRET"] = "beta-bw-secret-2"
	reload()
	if len(rot.applied) != 1 || rot.applied[0] != "beta-bw-secret-2" || len(checked) != 1 {
		t.Fatalf("the whole pair: given %q, %d pairs checked (want the pair given, none checked: both changed)", rot.applied, len(checked))
	}
	// A secret rotated alone, which the provider takes, is given.
	env["BETA_BW_SECRET"] = "beta-bw-secret-3"
	reload()
	if len(rot.applied) != 2 || rot.applied[1] != "beta-bw-secret-3" || len(checked) != 2 {
		t.Fatalf("a secret rotated alone and taken: given %q, %d pairs checked", rot.applied, len(checked))
	}
}

// An account removed and then added back at the same place was built with
// no predecessor: its old adapter, still driving transfers, kept a
// NetSapiens subscriber of its own, both adopted the domain's one
// subscription, and the old one's release deleted it under the new one's
// watch. The one built anew now takes over from the newest adapter
// retired there; from none a sweep released.
func TestAnAccountAddedBackTakesOverFromItsRetiredAdapter(t *testing.T) {
	rig := newRetiredRig(t)
	first, _ := rig.r.Provider("beta", "bandwidth")
	rig.inUse[first] = true
	withoutBeta := rig.content[:strings.Index(rig.content, "  - name: beta\n")]
	write := func(content string) orchestrator.Provider {
		t.Helper()
		if err := os.WriteFile(rig.path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := rig.r.Reload(); err != nil {
			t.Fatal(err)
		}
		p, _ := rig.r.Provider("beta", "bandwidth")
		return p
	}
	if p := write(withoutBeta); p != nil {
		t.Fatal("the removed account is still in force")
	}
	rig.r.Sweep() // first still drives transfers: kept
	second := write(rig.content)
	if second == nil || second == first {
		t.Fatal("the account added back was not built anew")
	}
	if len(rig.handed) != 1 || rig.handed[0] != [2]orchestrator.Provider{first, second} {
		t.Fatalf("handed over %v, want the retired adapter's to the one added back", rig.handed)
	}
	// Removed again, second is released (no transfer used it), and first
	// stays: added back once more, the new one takes over from first, the
	// newest retired there and not released.
	write(withoutBeta)
	rig.r.Sweep()
	if len(rig.released) != 1 || rig.released[0] != second {
		t.Fatalf("released %v, want the second adapter", rig.released)
	}
	third := write(rig.content)
	if len(rig.handed) != 2 || rig.handed[1] != [2]orchestrator.Provider{first, third} {
		t.Fatalf("handed over %v, want the first adapter's (the second is released) to the third", rig.handed)
	}
	// Elsewhere (another URL), nothing is handed over from those
	// retired at the old one.
	write(withoutBeta)
	write(strings.Replace(rig.content, "        user_id: u-beta\n", "        user_id: u-beta\n        base_url: https://bw.beta.example/v1\n", 1))
	if len(rig.handed) != 2 {
		t.Errorf("handed over to an account at another URL: %v", rig.handed)
	}
}
