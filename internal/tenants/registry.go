package tenants

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth"
)

// Builder makes the provider adapter of an account; transferd's run gives
// each its own HTTP client, request budget and callback token.
type Builder func(a Account) (orchestrator.Provider, error)

// Options configure a Registry.
type Options struct {
	// Path is the tenants file.
	Path string
	// LookupEnv resolves {env: NAME} secrets (os.LookupEnv in transferd;
	// only cmd/transferd reads the environment).
	LookupEnv func(string) (string, bool)
	// Build makes an account's adapter.
	Build Builder
	// Rotate, if set, says how an adapter takes an account's new secrets
	// in place: the function it returns gives them to p, which the reload
	// calls once the whole file has validated and every adapter it needs
	// was built; ok false has the account built anew. An account whose
	// secrets alone changed keeps its adapter, so that its transfers in
	// flight send the new secrets too (the old ones may be revoked at
	// once), and its watchers, budget and callbacks stay with them. One
	// built anew for another setting changed with its secrets has them
	// given to its old adapters as well (that one, and those earlier
	// reloads replaced, until Sweep releases them), while it is the same
	// account at the provider (URL and user): they still drive the
	// transfers in flight adopted before.
	Rotate func(p orchestrator.Provider, a Account) (apply func(), ok bool)
	// HandOver, if set, says how an adapter built anew at the same place
	// takes over from the one it replaces what the two must not both do
	// (a NetSapiens client's event subscriptions, which the two would
	// share and the old one delete under the new). The one it replaces is
	// the adapter in force there, or else the newest a reload retired
	// there and no sweep released (an account removed, or moved, and
	// brought back). The function it returns is applied with the
	// rotations; nil hands nothing over.
	HandOver func(old, successor orchestrator.Provider) (apply func())
	// InUse, if set, reports whether an adapter a reload replaced or
	// removed still drives transfers here (orchestrator.Engine.DrivesWith).
	// Such adapters are kept, given the rotations of their account while
	// it stays at the same place, and released (Release) by Sweep once
	// InUse says false. Unset, they are kept for the rotations and never
	// released.
	InUse func(p orchestrator.Provider) bool
	// Release, if set, frees an adapter no transfer uses any more (a
	// NetSapiens client's subscriptions and goroutines).
	Release func(p orchestrator.Provider)
	// Refused, if set, checks a's credentials at its provider and
	// reports whether the provider refused them (not whether it could
	// not tell, nor once ctx ends). It is asked of an account whose
	// secrets changed apart (a Bandwidth token without its secret, or the
	// other way round: two Secrets that Kubernetes updates one after the
	// other), which keeps the pair in force while the provider refuses
	// the one read. The checks of one reload run pairChecksAtOnce at a
	// time, all within pairChecksTimeout (ctx's deadline).
	Refused func(ctx context.Context, a Account) bool
	// Defaults are the limits of a tenant whose file entry gives none.
	Defaults api.Limits
	Log      zerolog.Logger
	// Reg receives the reload metric; nil registers nothing.
	Reg prometheus.Registerer
	// OnReload, if set, is told the outcome of every reload Run makes.
	OnReload func(error)
}

// Registry is the configuration in force. It implements
// orchestrator.Accounts, api.Authenticator and api.Tenants, and is safe
// for concurrent use.
type Registry struct {
	o Options
	// serial orders reloads and sweeps: each rewrites retired.
	serial  sync.Mutex
	mu      sync.RWMutex
	keys    *api.KeySet
	tenants map[string]*tenantState
	files   []string
	// loaded stamps the files as they were when the configuration in
	// force (or the last failed attempt) was read.
	loaded  string
	reloads *prometheus.CounterVec
	// generation numbers the accounts' changes (tenantState.generations).
	generation uint64
	// retired are the adapters reloads replaced or removed, kept while
	// they may still drive transfers in flight (Options.InUse): a later
	// reload's rotation reaches them too, and Sweep releases them.
	retired []*retiredAdapter
}

// retiredAdapter is an adapter no longer in force, with where its
// account was and the secrets it holds.
type retiredAdapter struct {
	tenant, provider string
	p                orchestrator.Provider
	place, secrets   [32]byte
}

type tenantState struct {
	cfg       *tenantConfig
	providers map[string]orchestrator.Provider
	names     []string
	prints    map[string][32]byte
	// settings are the prints of the accounts' settings without their
	// secrets: an account whose secrets alone changed is rotated in
	// place (Options.Rotate).
	settings map[string][32]byte
	// places are the prints of where the accounts are (provider, URL,
	// user) and secrets those of their secrets: an account built anew
	// at the same place with other secrets has them given to its old
	// adapter too (reload).
	places, secrets map[string][32]byte
	// generations change with an account's prints: the credential
	// monitor checks an account again when its generation changes.
	generations map[string]uint64
	// inForce are the accounts as their adapters hold them: the file's,
	// but for a pair of secrets read half-rotated (Options.Refused).
	inForce map[string]Account
}

var (
	_ orchestrator.Accounts     = (*Registry)(nil)
	_ orchestrator.TenantLister = (*Registry)(nil)
	_ api.Authenticator         = (*Registry)(nil)
	_ api.Tenants               = (*Registry)(nil)
)

// Open reads and validates the file; its errors name the line.
func Open(o Options) (*Registry, error) {
	r := &Registry{o: o}
	if o.Reg != nil {
		r.reloads = promauto.With(o.Reg).NewCounterVec(prometheus.CounterOpts{
			Name: "transferd_tenants_reloads_total",
			Help: "Reloads of the tenants file, by result (ok, failed); a failed reload keeps the configuration in force.",
		}, []string{"result"})
	}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// Reload reads the file again. If it is invalid, the configuration in
// force stays and the error says why. Accounts whose settings and secrets
// did not change keep their adapter (and so their watchers and budget).
func (r *Registry) Reload() error {
	err := r.reload()
	if r.reloads != nil {
		result := "ok"
		if err != nil {
			result = "failed"
		}
		r.reloads.WithLabelValues(result).Inc()
	}
	return err
}

func (r *Registry) reload() error {
	r.serial.Lock()
	defer r.serial.Unlock()
	// Stamped before reading, so that a change made while reading is
	// seen by the next poll; a failed attempt is stamped too, so that a
	// bad file is not retried until it changes again. The secret files
	// watched are those the last attempt named, failed or not, each
	// stamped before it was read: a reload refused for a secret file not
	// mounted yet is tried again once it is, and a secret rotated while
	// the file was read is read again.
	pathStamp := stamp([]string{r.o.Path})
	var named *parsed
	defer func() {
		r.mu.Lock()
		if named != nil {
			r.files, r.loaded = named.files, pathStamp+named.stamps
		} else {
			// The tenants file could not be read, so it named no
			// files: those watched stay, stamped as they are now. The
			// tenants file's stamp alone never matched them, and every
			// poll reloaded and logged the failure again.
			r.loaded = pathStamp + stamp(r.files)
		}
		r.mu.Unlock()
	}()
	data, err := os.ReadFile(r.o.Path)
	if err != nil {
		return fmt.Errorf("tenants file: %w", err)
	}
	p, err := parse(data, r.o.LookupEnv)
	named = p
	if err != nil {
		return fmt.Errorf("tenants file %s:\n%w", r.o.Path, err)
	}
	keys, err := api.NewKeySet(p.keys)
	if err != nil {
		return fmt.Errorf("tenants file %s: %w", r.o.Path, err)
	}
	r.mu.RLock()
	old := r.tenants
	r.mu.RUnlock()
	next := make(map[string]*tenantState, len(p.tenants))
	// Rotations are applied only once nothing can refuse the reload any
	// more: applied before a later account's build failed, they would
	// leave the configuration in force with some of the refused file's
	// secrets.
	var rotations []func()
	r.mu.RLock()
	generation := r.generation
	r.mu.RUnlock()
	refused := r.checkPairs(p, old)
	for _, tc := range p.tenants {
		ts := &tenantState{cfg: tc, providers: map[string]orchestrator.Provider{}, prints: map[string][32]byte{},
			settings: map[string][32]byte{}, places: map[string][32]byte{}, secrets: map[string][32]byte{}, generations: map[string]uint64{},
			inForce: map[string]Account{}}
		tc.limits = r.limitsOf(tc.limitsSpec)
		for _, a := range tc.accounts {
			prev := old[tc.name]
			if refused[[2]string{tc.name, a.Provider}] {
				// A token read without its secret (or the other way
				// round), which the provider refuses: two Secrets updated
				// apart, the second not mounted yet. Given to the adapter,
				// every request of the transfers in flight was refused,
				// their callers held, until the next poll read the other
				// half. The pair in force stays; the second file's change
				// reloads again. Its other settings are the file's.
				r.o.Log.Warn().Str("tenant", tc.name).Str("provider", a.Provider).
					Msg("the account's token and secret changed apart and the provider refuses the pair read; the pair in force is kept until the other one changes too")
				a.APIToken, a.APISecret = prev.inForce[a.Provider].APIToken, prev.inForce[a.Provider].APISecret
			}
			fp, sp := fingerprint(a), fingerprint(withoutSecrets(a))
			var kept orchestrator.Provider
			if prev != nil && prev.providers[a.Provider] != nil {
				switch {
				case prev.prints[a.Provider] == fp:
					kept = prev.providers[a.Provider]
				case prev.settings[a.Provider] == sp && r.o.Rotate != nil:
					if apply, ok := r.o.Rotate(prev.providers[a.Provider], a); ok {
						kept = prev.providers[a.Provider]
						rotations = append(rotations, apply)
					}
				}
			}
			if kept == nil {
				prov, err := r.o.Build(a)
				if err != nil {
					return fmt.Errorf("tenants file %s: tenant %s: %w", r.o.Path, tc.name, err)
				}
				kept = prov
				if from := r.predecessor(prev, tc.name, a); from != nil && r.o.HandOver != nil {
					if apply := r.o.HandOver(from, prov); apply != nil {
						rotations = append(rotations, apply)
					}
				}
			}
			ts.providers[a.Provider], ts.inForce[a.Provider] = kept, a
			ts.prints[a.Provider], ts.settings[a.Provider] = fp, sp
			ts.places[a.Provider], ts.secrets[a.Provider] = place(a), secretsOf(a)
			if prev != nil && prev.prints[a.Provider] == fp {
				ts.generations[a.Provider] = prev.generations[a.Provider]
			} else {
				generation++
				ts.generations[a.Provider] = generation
			}
			ts.names = append(ts.names, a.Provider)
		}
		sort.Strings(ts.names)
		next[tc.name] = ts
	}
	// The adapters this reload replaces or removes join those earlier
	// reloads did: they may still drive transfers in flight.
	r.mu.RLock()
	retired := slices.Clone(r.retired)
	r.mu.RUnlock()
	for name, prev := range old {
		for _, prov := range prev.names {
			if ts := next[name]; ts == nil || ts.providers[prov] != prev.providers[prov] {
				retired = append(retired, &retiredAdapter{tenant: name, provider: prov, p: prev.providers[prov],
					place: prev.places[prov], secrets: prev.secrets[prov]})
			}
		}
	}
	// Each is given its account's new secrets while the account is at
	// the same place (provider, URL, user): it drives the transfers in
	// flight, and kept the old secrets, which a rotation after a leak
	// revokes at once: every request of those transfers was refused and
	// their callers held. This was done for the adapter in force only,
	// then also for one replaced in the same edit; one replaced by an
	// earlier reload kept the secrets it had. Moved to another URL or
	// user, it keeps its own for the transfers on the old one.
	if r.o.Rotate != nil {
		for _, ra := range retired {
			ts := next[ra.tenant]
			if ts == nil || ts.providers[ra.provider] == nil || ts.places[ra.provider] != ra.place || ts.secrets[ra.provider] == ra.secrets {
				continue
			}
			a := ts.inForce[ra.provider]
			if apply, ok := r.o.Rotate(ra.p, a); ok {
				secrets := ts.secrets[ra.provider]
				rotations = append(rotations, func() {
					apply()
					r.mu.Lock()
					ra.secrets = secrets
					r.mu.Unlock()
				})
			}
		}
	}
	for _, rotate := range rotations {
		rotate()
	}
	for _, w := range p.warns {
		r.o.Log.Warn().Str("file", r.o.Path).Msg(w)
	}
	r.mu.Lock()
	r.keys, r.tenants, r.generation, r.retired = keys, next, generation, retired
	r.mu.Unlock()
	r.o.Log.Info().Str("file", r.o.Path).Int("tenants", len(next)).Int("keys", keys.Len()).Msg("tenants loaded")
	return nil
}

// predecessor is the adapter one built anew for a (tenant's account)
// takes over from (Options.HandOver): the one in force at the same place,
// or else the newest a reload retired there and no sweep released. An
// account removed, or moved elsewhere, and then brought back had none:
// its old adapter, still driving transfers, kept a NetSapiens subscriber
// of its own, both adopted the domain's one subscription (one post-url),
// and the old one's release deleted it under the new one's watch.
func (r *Registry) predecessor(prev *tenantState, tenant string, a Account) orchestrator.Provider {
	at := place(a)
	if prev != nil && prev.providers[a.Provider] != nil && prev.places[a.Provider] == at {
		return prev.providers[a.Provider]
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, ra := range slices.Backward(r.retired) {
		if ra.tenant == tenant && ra.provider == a.Provider && ra.place == at {
			return ra.p
		}
	}
	return nil
}

// pairChecksTimeout bounds all the pair checks of one reload together,
// and pairChecksAtOnce how many run at a time. A reload holds the next
// one (a rotation included) and the sweeps while it checks: one check
// after another, each bounded alone, a provider that did not answer held
// it 10 s per account read half-rotated (a Secret that many tenants'
// accounts name, updated first). A check the bound cuts short, or never
// starts, cannot tell: its pair is given, as one the provider could not
// be asked about.
const (
	pairChecksTimeout = 10 * time.Second
	pairChecksAtOnce  = 8
)

// checkPairs asks Options.Refused about every account of p whose pair of
// secrets changed apart from the pair in force at the same place, and
// returns those the provider refused, by tenant and provider.
func (r *Registry) checkPairs(p *parsed, old map[string]*tenantState) map[[2]string]bool {
	if r.o.Refused == nil {
		return nil
	}
	type pair struct {
		tenant string
		a      Account
	}
	var check []pair
	for _, tc := range p.tenants {
		prev := old[tc.name]
		if prev == nil {
			continue
		}
		for _, a := range tc.accounts {
			if prev.providers[a.Provider] != nil && prev.places[a.Provider] == place(a) && changedApart(prev.inForce[a.Provider], a) {
				check = append(check, pair{tc.name, a})
			}
		}
	}
	if len(check) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), pairChecksTimeout)
	defer cancel()
	var (
		mu      sync.Mutex
		refused = map[[2]string]bool{}
		wg      sync.WaitGroup
		slots   = make(chan struct{}, pairChecksAtOnce)
	)
	for _, c := range check {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break // the others cannot tell either
		}
		wg.Go(func() {
			defer func() { <-slots }()
			if r.o.Refused(ctx, c.a) {
				mu.Lock()
				refused[[2]string{c.tenant, c.a.Provider}] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return refused
}

func (r *Registry) limitsOf(s limitsSpec) api.Limits {
	l := r.o.Defaults
	if s.StartsPerSecond > 0 {
		l.StartRate = s.StartsPerSecond
	}
	if s.StartBurst > 0 {
		l.StartBurst = s.StartBurst
	}
	if s.MaxInFlight > 0 {
		l.MaxInFlight = s.MaxInFlight
	}
	if s.MaxWaits > 0 {
		l.MaxWaits = s.MaxWaits
	}
	return l
}

// fingerprint identifies an account's settings and secrets without
// keeping them in another form than the adapter already holds.
func fingerprint(a Account) [32]byte {
	b, _ := json.Marshal(struct {
		A Account
		X string
	}{a, "v1"})
	return sha256.Sum256(b)
}

// place is the print of where a is at its provider: the same place with
// other secrets is the same account rotated. Its URL is taken as the
// server reads it (sameServer).
func place(a Account) [32]byte {
	base := a.BaseURL
	if base == "" && a.Provider == bandwidth.Name {
		base = bandwidth.DefaultBaseURL // what the adapter is built with
	}
	return fingerprint(Account{Tenant: a.Tenant, Provider: a.Provider, BaseURL: sameServer(base), UserID: a.UserID})
}

// sameServer writes a validated base URL the one way of all those that
// reach the same server at the same API root: scheme and host in lower
// case (RFC 3986 has them case-insensitive; an IPv6 zone, an
// interface's name, is kept as written), the port as the number dialled
// (0443 is 443) and the scheme's default one left out, no trailing slash
// (the adapters trim it). A URL written another way was another place: an account moved so was built anew with
// no hand-over (a NetSapiens client's subscription, shared by the two,
// was deleted by the old one's release under the new one's watch) and its
// adapters still driving transfers were not given its rotated secrets.
// Another host name is another place, though it may name the same server
// (an alias): it may as well be another one. So is another scheme, port
// or path (whose case counts).
func sameServer(raw string) string {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil {
		return raw
	}
	host, port := u.Hostname(), u.Port()
	addr, zone, _ := strings.Cut(host, "%")
	host = strings.ToLower(addr)
	if zone != "" {
		host += "%" + zone
	}
	if n, err := strconv.Atoi(port); err == nil {
		port = strconv.Itoa(n)
	}
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	u.Host = host
	if port != "" {
		u.Host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		u.Host = "[" + host + "]" // IPv6
	}
	return u.String()
}

// secretsOf is the print of a's secrets.
func secretsOf(a Account) [32]byte {
	return fingerprint(Account{APIKey: a.APIKey, APIToken: a.APIToken, APISecret: a.APISecret})
}

// changedApart reports whether a's pair of secrets (Bandwidth's token
// and secret) differs from old's in one of the two only.
func changedApart(old, a Account) bool {
	return a.Provider == "bandwidth" && (old.APIToken != a.APIToken) != (old.APISecret != a.APISecret)
}

// withoutSecrets is a with its secrets blanked.
func withoutSecrets(a Account) Account {
	a.APIKey, a.APIToken, a.APISecret = "", "", ""
	return a
}

// Run reloads on every value of hup (SIGHUP) and whenever the tenants
// file or a secret file it names changes (checked every poll; 0 disables),
// until ctx is done. A failed reload is logged and changes nothing. It
// sweeps at every poll and after every reload in a goroutine of its own,
// which it waits for before it returns: a release that takes its time (a
// NetSapiens PBX that does not answer the deletion of a subscription)
// held the next reload back, a rotation included, up to 30 s per account
// released.
func (r *Registry) Run(ctx context.Context, hup <-chan os.Signal, poll time.Duration) {
	var tick <-chan time.Time
	if poll > 0 {
		t := time.NewTicker(poll)
		defer t.Stop()
		tick = t.C
	}
	sweeps := make(chan struct{}, 1)
	swept := make(chan struct{})
	defer func() { <-swept }()
	go func() {
		defer close(swept)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sweeps:
				r.Sweep()
			}
		}
	}()
	// One sweep waiting is enough: it sees every adapter retired before
	// it starts.
	sweep := func() {
		select {
		case sweeps <- struct{}{}:
		default:
		}
	}
	for {
		why := ""
		select {
		case <-ctx.Done():
			return
		case <-hup:
			why = "SIGHUP"
		case <-tick:
			sweep()
			if !r.changed() {
				continue
			}
			why = "file changed"
		}
		err := r.Reload()
		if err != nil {
			r.o.Log.Error().Str("trigger", why).Str("error", err.Error()).Msg("tenants reload failed; the configuration in force stays")
		} else {
			r.o.Log.Info().Str("trigger", why).Msg("tenants reloaded")
		}
		if r.o.OnReload != nil {
			r.o.OnReload(err)
		}
		sweep()
	}
}

// Sweep releases the adapters reloads replaced or removed that no
// transfer uses any more (Options.InUse, Options.Release). Run calls it at
// every poll and after every reload.
//
// They are released after serial is let go: a release may take its time
// (Options.Release), and a reload waited for it. Each is taken out of
// retired first, under serial, so that no later sweep releases it again
// and no reload gives it a rotation or hands over from it meanwhile; no
// transfer is adopted with it since, as it is not in force (InUse).
func (r *Registry) Sweep() {
	if r.o.InUse == nil {
		return
	}
	r.serial.Lock()
	r.mu.RLock()
	retired := r.retired
	r.mu.RUnlock()
	var kept, unused []*retiredAdapter
	for _, ra := range retired {
		if r.o.InUse(ra.p) {
			kept = append(kept, ra)
		} else {
			unused = append(unused, ra)
		}
	}
	r.mu.Lock()
	r.retired = kept
	r.mu.Unlock()
	r.serial.Unlock()
	if r.o.Release != nil {
		for _, ra := range unused {
			r.o.Release(ra.p)
		}
	}
}

// changed reports whether the tenants file or a secret file the last
// reload named changed since that reload read it.
func (r *Registry) changed() bool {
	r.mu.RLock()
	files, loaded := r.files, r.loaded
	r.mu.RUnlock()
	return stamp([]string{r.o.Path})+stamp(files) != loaded
}

// stamp summarises the modification times and sizes of files.
func stamp(files []string) string {
	var b strings.Builder
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			fmt.Fprintf(&b, "%s:%d:%d;", f, st.ModTime().UnixNano(), st.Size())
		} else {
			fmt.Fprintf(&b, "%s:missing;", f)
		}
	}
	return b.String()
}

func (r *Registry) tenant(name string) *tenantState {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.tenants[name]
}

// Provider returns the account tenant uses for the provider called name.
func (r *Registry) Provider(tenant, name string) (orchestrator.Provider, bool) {
	t := r.tenant(tenant)
	if t == nil {
		return nil, false
	}
	p, ok := t.providers[name]
	return p, ok
}

// Names lists the providers tenant has accounts at, sorted.
func (r *Registry) Names(tenant string) []string {
	if t := r.tenant(tenant); t != nil {
		return slices.Clone(t.names)
	}
	return nil
}

// Tenants lists the tenant names, sorted.
func (r *Registry) Tenants() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.tenants))
	for n := range r.tenants {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Authenticate finds the key presented among every tenant's keys.
func (r *Registry) Authenticate(presented string) (api.Key, bool) {
	r.mu.RLock()
	keys := r.keys
	r.mu.RUnlock()
	return keys.Authenticate(presented)
}

// Permit refuses a provider the tenant has no account at, a NetSapiens
// domain or a target outside its allow-lists.
func (r *Registry) Permit(tenant string, req *orchestrator.Request) error {
	t := r.tenant(tenant)
	if t == nil {
		return &api.Forbidden{Field: "provider", Detail: "this tenant has no provider account"}
	}
	if req.Provider != "" && t.providers[req.Provider] == nil {
		return &api.Forbidden{Field: "provider", Detail: fmt.Sprintf("is not one of this tenant's providers %v", t.names)}
	}
	if len(t.cfg.domains) > 0 && req.Provider == "netsapiens" && req.Call.Domain != "" &&
		!t.cfg.domains[strings.ToLower(req.Call.Domain)] {
		return &api.Forbidden{Field: "call.domain", Detail: "is not a domain this tenant may use"}
	}
	// A NetSapiens target may name its domain (user@domain), which the
	// PBX dials in that domain: a tenant kept to its domains may not ring
	// another's users, nor hand its callers to them. A second "@" leaves
	// a domain no allowed one equals.
	if len(t.cfg.domains) > 0 && req.Provider == "netsapiens" {
		if _, domain, ok := strings.Cut(req.Target, "@"); ok && !t.cfg.domains[strings.ToLower(domain)] {
			return &api.Forbidden{Field: "target", Detail: "is in a domain this tenant may not use"}
		}
	}
	if len(t.cfg.targets) > 0 && req.Target != "" {
		for _, re := range t.cfg.targets {
			if re.MatchString(req.Target) {
				return nil
			}
		}
		return &api.Forbidden{Field: "target", Detail: "is not a target this tenant may transfer to"}
	}
	return nil
}

// Limits returns the tenant's limits (the defaults for a tenant the file
// does not know).
func (r *Registry) Limits(tenant string) api.Limits {
	if t := r.tenant(tenant); t != nil {
		return t.cfg.limits
	}
	return r.o.Defaults
}

// CredentialAccounts lists every tenant's provider accounts whose adapter
// can check its credentials, named "<tenant>/<provider>", for the
// credential monitor (which asks again after every reload).
func (r *Registry) CredentialAccounts() []api.CredentialAccount {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []api.CredentialAccount
	for _, tenant := range slices.Sorted(maps.Keys(r.tenants)) {
		ts := r.tenants[tenant]
		for _, name := range ts.names {
			if c, ok := ts.providers[name].(api.CredentialChecker); ok {
				out = append(out, api.CredentialAccount{Provider: name, Account: api.AccountLabel(tenant, name), Checker: c,
					Generation: ts.generations[name]})
			}
		}
	}
	return out
}
