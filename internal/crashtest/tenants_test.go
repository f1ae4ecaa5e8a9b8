package crashtest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/pbxsim"
)

// TestAReloadThatBringsAnAccountDrivesTransfersClaimedWithoutIt: replicas
// on PostgreSQL whose tenants files differ for a while, as a ConfigMap
// reaches pods at different times. r0 knows tenant acme's NetSapiens
// account and dies right after putting acme's caller on hold. r1, whose
// file does not have acme yet, claims the transfer and cannot drive it:
// it logs it and counts it in /metrics, and, before this pass, never
// came back to it. Its file then gets acme (SIGHUP, as a changed file
// does within seconds): r1 drives the transfer to its end, and the
// simulator shows the caller with the target.
func TestAReloadThatBringsAnAccountDrivesTransfersClaimedWithoutIt(t *testing.T) {
	needBinaries(t)
	admin := os.Getenv("TRANSFERD_TEST_DATABASE_URL")
	if admin == "" {
		t.Skip("set TRANSFERD_TEST_DATABASE_URL (postgres://…) to run the replica tests")
	}
	sd := sides[0].start(t)
	dbURL := freshDatabase(t, admin)
	f := flows[0] // netsapiens, attended, auto
	ctx, cancel := context.WithTimeout(sd.ctx(context.Background()), caseTimeout)
	defer cancel()
	pl, err := placeCall(ctx, f, 1)
	if err != nil {
		t.Fatal(err)
	}

	const acmeKey, globexKey = "acme-crashtest-key-0123456789", "globex-crashtest-key-0123456789"
	dir := t.TempDir()
	withAcme, without := filepath.Join(dir, "r0.yaml"), filepath.Join(dir, "r1.yaml")
	writeTenants(t, withAcme, sd.base, map[string]string{"acme": acmeKey, "globex": globexKey})
	writeTenants(t, without, sd.base, map[string]string{"globex": globexKey})
	env := func(i int, file string, more ...string) []string {
		return append(tenantsEnv(transferdEnv("TRANSFERD_TENANTS_FILE="+file, "CRASHTEST_NS_API_KEY="+pbxsim.DemoNetSapiensKey,
			"TRANSFERD_DATABASE_URL="+dbURL, "TRANSFERD_LEASE_TTL="+leaseTTL.String(),
			fmt.Sprintf("TRANSFERD_INSTANCE_ID=tenants-r%d", i))), more...)
	}
	const point = "hold:result"
	r0 := startTransferdAsync(t, "r0", env(0, withAcme, "TRANSFERD_TEST_CRASH_AT="+point+"@"+f.provider))
	r1 := startTransferdAsync(t, "r1", env(1, without))
	r0.waitListening(t)
	r1.waitListening(t)

	acme := map[string]string{"Authorization": "Bearer " + acmeKey}
	var tr transfer
	if _, err := call(ctx, http.MethodPost, r0.addr+"/v1/transfers", acme, f.request(pl), &tr, http.StatusAccepted); err != nil {
		// r0 may reach the point, and die, before its answer goes out
		// (as the crash tests' follower allows): the crash line names
		// the transfer then.
		var answered *statusError
		if errors.As(err, &answered) || !r0.waitDead(dieTimeout) {
			t.Fatal(err)
		}
	}
	id, ok := expectCrash(t, &tally{}, r0, point, tr.ID, &tr)
	if !ok {
		t.FailNow()
	}

	// r1 claims it once r0's heartbeat ran out, and cannot drive it.
	if _, _, ok := waitLine([]*proc{r1}, message("cannot drive the transfer: its tenant has no account of its provider", id), 4*takeoverBound); !ok {
		t.Fatalf("r1 did not claim %s, or drove it without acme's account", id)
	}
	if _, _, ok := waitLine([]*proc{r1}, messagePrefix("open transfers this replica owns cannot be driven"), 4*takeoverBound); !ok {
		t.Fatal("r1's look for orphans did not report the transfer it cannot drive")
	}
	if n := gauge(ctx, t, r1, `transferd_transfers_undriven{provider="netsapiens"}`); n != 1 {
		t.Errorf("r1's transferd_transfers_undriven = %v; want 1", n)
	}
	var meanwhile verdict
	if err := checkNetSapiens(ctx, pl, &tr, &meanwhile); err != nil {
		t.Fatal(err)
	}
	if !meanwhile.held {
		t.Fatalf("the simulator does not show acme's caller held while nobody drives the transfer: %q", meanwhile.problems)
	}

	// The reload.
	writeTenants(t, without, sd.base, map[string]string{"acme": acmeKey, "globex": globexKey})
	if err := r1.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := waitLine([]*proc{r1}, message("tenants reloaded", ""), 4*takeoverBound); !ok {
		t.Fatal("r1 did not reload its tenants file on SIGHUP")
	}
	// The reload tells the engine, whose next claim (a quarter of a lease
	// away) drives the transfer; its look every minute would come up to
	// a minute later.
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	last := &tr
	for !last.terminal() {
		if last, err = getTransferAs(rctx, r1, id, acme, awaitWait); err != nil {
			t.Fatalf("reading %s at r1 after the reload: %v", id, err)
		}
	}
	v, err := check(ctx, f, pl, last)
	t.Logf("steps %s", stepTrail(last))
	(&tally{}).judge(t, "claimed without its account, then reloaded", f, last, v, err)
	if !v.completed {
		t.Errorf("the transfer ended %s; want completed", last)
	}
	// The look that drove it counts what is left (nothing) before it logs.
	if _, _, ok := waitLine([]*proc{r1}, messagePrefix("driving open transfers this replica owns"), 4*takeoverBound); !ok {
		t.Fatal("r1 drove the transfer, but no look for orphans says so")
	}
	if n := gauge(ctx, t, r1, `transferd_transfers_undriven{provider="netsapiens"}`); n != 0 {
		t.Errorf("r1's transferd_transfers_undriven = %v once it drove the transfer; want 0", n)
	}
}

// writeTenants writes a tenants file: each tenant with its key (write
// scope) and the side's NetSapiens account.
func writeTenants(t *testing.T, path, base string, keys map[string]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("tenants:\n")
	for _, name := range []string{"acme", "globex"} {
		key, ok := keys[name]
		if !ok {
			continue
		}
		fmt.Fprintf(&b, "  - name: %s\n    keys:\n      - {name: %s-crm, hash: \"%s\", scope: write}\n", name, name, keyHash(key))
		fmt.Fprintf(&b, "    providers:\n      netsapiens:\n        base_url: %s\n        api_key: {env: CRASHTEST_NS_API_KEY}\n", base+pbxsim.NetSapiensAPIPath)
	}
	if err := writeWhole(path, b.String()); err != nil {
		t.Fatal(err)
	}
}

// writeWhole writes a tenants file whole and renames it into place, as a
// ConfigMap's update is: a reload never reads half a file.
func writeWhole(path, data string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// keyHash is a key as a tenants file names it.
func keyHash(key string) string {
	sum := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// tenantsEnv is env without the provider accounts' variables and
// TRANSFERD_AUTH, which a tenants file replaces. The settings that apply
// to every account stay (the join hostname, a default for the accounts,
// goes: the storm's account files name each account's). Dropped with the
// accounts, the storm's list limit, drawn to match a PBX that pages by 7
// rows of its own, never reached a storm whose accounts are in files:
// transferd asked for 100 rows, took a first page of 7 for the whole
// listing and failed a third of the transfers call_not_found.
func tenantsEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if name == "TRANSFERD_NETSAPIENS_LIST_LIMIT" || name == "TRANSFERD_BANDWIDTH_MAX_RATE_LIMIT_WAIT" {
			out = append(out, kv)
			continue
		}
		if strings.HasPrefix(kv, "TRANSFERD_NETSAPIENS_") || strings.HasPrefix(kv, "TRANSFERD_BANDWIDTH_") || strings.HasPrefix(kv, "TRANSFERD_AUTH=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// gauge reads one series of p's /metrics; 0 when it is not exported.
func gauge(ctx context.Context, t *testing.T, p *proc, series string) float64 {
	t.Helper()
	_, _, body, err := callRaw(ctx, http.MethodGet, p.addr+"/metrics", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %q", series, v)
			}
			return n
		}
	}
	return 0
}
