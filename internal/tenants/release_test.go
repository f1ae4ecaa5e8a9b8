package tenants_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/tenants"
)

// liveness bounds the waits of these tests for what must happen: a
// regression fails them instead of hanging the package.
const liveness = 10 * time.Second

func within[T any](t *testing.T, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(liveness):
		t.Fatalf("gave up waiting: %s", what)
		panic("unreached")
	}
}

// A release (a NetSapiens client's Close, which deletes its
// subscriptions: up to 30 s on a PBX that does not answer) ran under the
// lock that orders reloads, and in Run's loop: the next reload, a
// rotation of a leaked secret included, waited for it, and the
// transfers in flight sent the revoked secret meanwhile. Neither waits
// now; the adapter being released is released once.
func TestAReleaseDoesNotHoldTheNextReloadBack(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tenants.yaml")
	content := exampleFile(t, dir)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	b, rot := &built{}, &rotations{}
	released := make(chan orchestrator.Provider, 4)
	unblock := make(chan struct{})
	reloaded := make(chan error, 4)
	r, err := tenants.Open(tenants.Options{Path: path, LookupEnv: lookup, Log: zerolog.Nop(), Rotate: rot.rotate, Build: b.build,
		InUse:    func(orchestrator.Provider) bool { return false },
		Release:  func(p orchestrator.Provider) { released <- p; <-unblock },
		OnReload: func(err error) { reloaded <- err }})
	if err != nil {
		t.Fatal(err)
	}
	first, _ := r.Provider("beta", "bandwidth")
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	done := make(chan struct{})
	go func() { r.Run(ctx, hup, 0); close(done) }()
	var once sync.Once
	unhang := func() { once.Do(func() { close(unblock) }) }
	t.Cleanup(func() { unhang(); cancel(); <-done })

	// A budget: the account is built anew, and the first adapter, which
	// no transfer uses, is released; its release hangs.
	withBudget := strings.Replace(content, "        user_id: u-beta\n", "        user_id: u-beta\n        request_budget: 3\n", 1)
	if err := os.WriteFile(path, []byte(withBudget), 0o600); err != nil {
		t.Fatal(err)
	}
	hup <- syscall.SIGHUP
	if err := within(t, "the reload of the budget", reloaded); err != nil {
		t.Fatal(err)
	}
	second, _ := r.Provider("beta", "bandwidth")
	if p := within(t, "the release of the replaced adapter", released); p != first || second == first {
		t.Fatalf("released %v, want the replaced adapter", p)
	}

	// The token rotated while the release hangs: given at once.
	if err := os.WriteFile(filepath.Join(dir, "beta-token"), []byte("beta-bw-token-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hup <- syscall.SIGHUP
	if err := within(t, "the rotation's reload, while a release hangs", reloaded); err != nil {
		t.Fatal(err)
	}
	if len(rot.given) != 1 || rot.given[0] != second {
		t.Errorf("the rotation was given to %v, want the adapter in force", rot.given)
	}
	direct := make(chan error, 1)
	go func() { direct <- r.Reload() }()
	if err := within(t, "a reload outside Run, while a release hangs", direct); err != nil {
		t.Fatal(err)
	}

	unhang()
	cancel()
	within(t, "Run's end", done)
	r.Sweep()
	select {
	case p := <-released:
		t.Errorf("released %v again", p)
	default:
	}
}

// The pair checks of one reload (a token read without its secret: a
// Secret several tenants' accounts name, updated before the other) ran
// one after the other, each bounded alone: a provider that did not answer
// held the reload, and the next one (a rotation included) and the
// sweeps, 10 s per account. They run together now, under one deadline.
func TestThePairChecksOfOneReloadRunTogetherUnderOneDeadline(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("bw-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tenants.yaml")
	account := `    providers:
      bandwidth:
        user_id: u-TENANT
        api_token: {file: ` + token + `}
        api_secret: {env: BETA_BW_SECRET}
`
	content := "tenants:\n  - name: acme\n    keys:\n      - {name: acme-crm, hash: \"" + hexOf(acmeWrite) + "\", scope: write}\n" +
		strings.ReplaceAll(account, "TENANT", "acme") +
		"  - name: beta\n    keys:\n      - {name: beta-crm, hash: \"" + hexOf(betaWrite) + "\", scope: write}\n" +
		strings.ReplaceAll(account, "TENANT", "beta")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	var (
		mu        sync.Mutex
		deadlines []time.Time
		apart     bool // a check waited in vain for the other
		entered   = make(chan struct{}, 2)
		both      = make(chan struct{})
		bothOnce  sync.Once
	)
	b, rot := &built{}, &rotations{}
	r, err := tenants.Open(tenants.Options{Path: path, LookupEnv: lookup, Log: zerolog.Nop(), Rotate: rot.rotate, Build: b.build,
		Refused: func(ctx context.Context, a tenants.Account) bool {
			d, ok := ctx.Deadline()
			mu.Lock()
			if ok {
				deadlines = append(deadlines, d)
			}
			mu.Unlock()
			entered <- struct{}{}
			if len(entered) == 2 {
				bothOnce.Do(func() { close(both) })
			}
			select {
			case <-both:
				return true // the provider refuses the token without its secret
			case <-time.After(liveness):
				mu.Lock()
				apart = true
				mu.Unlock()
				return false
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(token, []byte("bw-token-2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if apart {
		t.Fatal("the two accounts' pairs were checked one after the other")
	}
	if len(deadlines) != 2 || !deadlines[0].Equal(deadlines[1]) {
		t.Errorf("the checks' deadlines were %v, want one for both", deadlines)
	}
	if len(rot.applied) != 0 {
		t.Errorf("pairs the provider refused were given: %q", rot.applied)
	}
}
