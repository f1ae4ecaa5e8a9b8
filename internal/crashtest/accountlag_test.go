package crashtest

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/transferd/transferd/internal/pbxsim"
)

// TRANSFERD_STORM_ACCOUNT_LAG=1 (replicas on PostgreSQL): every replica reads
// its provider accounts from a tenants file of its own, with one tenant
// holding both providers' accounts, and the storm's requests carry that
// tenant's key. Every 2 to 6 s one replica's file loses the account of one
// provider for two to three lease TTLs and gets it back, each change made
// known by SIGHUP: a ConfigMap that reaches pods at different times. A
// replica that lacks the account refuses creates for that provider (403, a
// refusal that did nothing: the storm's client tries another replica
// under a new key), and takes over a stopped replica's transfers of that
// provider without being able to drive them: it must drive them once the
// account is back, their callers held meanwhile. A replica restarted
// during a lag reads the file as it stands.

// The storm tenant's name, key and the environment variables its file's
// secrets name.
const (
	stormTenant    = "storm"
	stormTenantKey = "storm-tenant-key-0123456789abcdef"
	stormNSKeyEnv  = "CRASHTEST_STORM_NS_API_KEY"
	stormBWTokEnv  = "CRASHTEST_STORM_BW_API_TOKEN"
	stormBWSecEnv  = "CRASHTEST_STORM_BW_API_SECRET"
)

// accountFiles are the replicas' tenants files, by slot.
type accountFiles struct {
	paths []string
	join  string // the NetSapiens account's join_hostname (the storm's guess)
}

func newAccountFiles(dir string, replicas int, join string) (*accountFiles, error) {
	a := &accountFiles{join: join}
	for slot := range replicas {
		a.paths = append(a.paths, filepath.Join(dir, fmt.Sprintf("tenants-r%d.yaml", slot)))
		if err := a.write(slot, ""); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// write writes slot's file with both providers' accounts but without's
// ("" for none), whole (writeWhole).
func (a *accountFiles) write(slot int, without string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "tenants:\n  - name: %s\n    keys:\n      - {name: storm-client, hash: \"%s\", scope: write}\n    providers:\n",
		stormTenant, keyHash(stormTenantKey))
	if without != "netsapiens" {
		fmt.Fprintf(&b, "      netsapiens:\n        base_url: %s\n        api_key: {env: %s}\n        join_hostname: %s\n",
			bin.simBase+pbxsim.NetSapiensAPIPath, stormNSKeyEnv, a.join)
	}
	if without != "bandwidth" {
		fmt.Fprintf(&b, "      bandwidth:\n        base_url: %s\n        user_id: %s\n        api_token: {env: %s}\n        api_secret: {env: %s}\n",
			bin.simBase+pbxsim.BandwidthAPIPath, pbxsim.DemoBandwidthUser, stormBWTokEnv, stormBWSecEnv)
	}
	return writeWhole(a.paths[slot], b.String())
}

// accountEnv turns a storm transferd's environment to the tenants file of
// slot: the provider variables and TRANSFERD_AUTH go (the file replaces
// them), the secrets its file names come in.
func (a *accountFiles) env(env []string) []string {
	return append(tenantsEnv(env), stormNSKeyEnv+"="+pbxsim.DemoNetSapiensKey,
		stormBWTokEnv+"="+pbxsim.DemoBandwidthTok, stormBWSecEnv+"="+pbxsim.DemoBandwidthSec)
}

// stormAccountLags takes one provider's account out of one replica's file
// and puts it back, at moments, for spans and of replicas and providers
// the seed draws, until done; every file is whole again after.
func stormAccountLags(fl *fleet, files *accountFiles, seed uint64, done <-chan struct{}, cnt *stormCounts) error {
	r := rand.New(rand.NewPCG(seed, 0xacc1a9))
	hup := func(slot int) {
		fl.mu.Lock()
		p := fl.slots[slot]
		fl.mu.Unlock()
		if !p.dead() {
			_ = p.cmd.Process.Signal(syscall.SIGHUP) // a process killed this instant restarts reading the file
		}
	}
	for {
		select {
		case <-done:
			return nil
		case <-time.After(time.Duration(2000+r.IntN(4000)) * time.Millisecond):
		}
		slot := r.IntN(len(files.paths))
		without := []string{"netsapiens", "bandwidth"}[r.IntN(2)]
		span := 2*stormLeaseTTL + time.Duration(r.Int64N(int64(stormLeaseTTL)))
		if err := files.write(slot, without); err != nil {
			return err
		}
		hup(slot)
		began := time.Now()
		select {
		case <-done:
		case <-time.After(span):
		}
		if err := files.write(slot, ""); err != nil {
			return err
		}
		hup(slot)
		cnt.lags.Add(1)
		cnt.lagged.Add(int64(time.Since(began)))
	}
}

// claimedWithoutAccount counts the transfers the fleet's processes took
// over while they had no account of their provider.
func (f *fleet) claimedWithoutAccount() int {
	f.mu.Lock()
	all := append([]*proc(nil), f.all...)
	f.mu.Unlock()
	n := 0
	for _, p := range all {
		for _, l := range p.logs.all() {
			if l.str("message") == "cannot drive the transfer: its tenant has no account of its provider" {
				n++
			}
		}
	}
	return n
}
