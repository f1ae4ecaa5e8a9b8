package api

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
)

// CredentialChecker is a provider adapter that can tell whether the
// provider accepts its credentials, with one cheap authenticated read.
type CredentialChecker interface {
	Name() string
	CheckCredentials(ctx context.Context) error
}

// Credential states, as /status/providers reports them.
const (
	CredentialsOK       = "ok"
	CredentialsRejected = "rejected"
	CredentialsUnknown  = "unknown"
)

// CredentialAccount is one provider account to check. Account names it in
// the metric and on /status/providers (AccountLabel): one series per
// configured account, never more.
type CredentialAccount struct {
	Provider string
	Account  string
	Checker  CredentialChecker
	// Generation changes whenever the account's secrets or settings do
	// (a reload that rotated its key): CheckNew checks it again, as it
	// checks an account a reload added, rather than show the old secret's
	// verdict until the next round.
	Generation uint64
}

// AccountLabel names the account a tenant has at a provider:
// "<tenant>/<provider>". Tenant names cannot hold a '/', so labels of
// different accounts differ.
func AccountLabel(tenant, provider string) string { return tenant + "/" + provider }

// CredentialMonitor checks every provider account's credentials at start
// and then at a slow interval, and keeps the last results for operators:
// the transferd_provider_credentials_ok metric and /status/providers. It
// is deliberately not a readiness check: one account's rotated key must
// not take every replica out of service for the others.
type CredentialMonitor struct {
	accounts func() []CredentialAccount
	interval time.Duration
	timeout  time.Duration
	log      zerolog.Logger
	now      func() time.Time
	poke     chan struct{}

	ok      *prometheus.GaugeVec
	checked *prometheus.GaugeVec

	mu         sync.Mutex
	status     map[string]providerStatusJSON // by account
	generation map[string]uint64             // by account: the Generation status is of
	notChecked string                        // why an account has no result yet
}

// NotChecked says, on /status/providers, why the accounts are not checked
// (demo mode: the simulator's built-in credentials), instead of "not
// checked yet": an unknown with no detail read as a provider that could not
// be reached.
func (m *CredentialMonitor) NotChecked(why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.notChecked = why
}

// NewCredentialMonitor returns a monitor of the accounts that the
// function lists (asked again at every round, as a tenants file reload
// may change them) that checks each one every interval once Run starts,
// each check bounded by timeout.
func NewCredentialMonitor(accounts func() []CredentialAccount, interval, timeout time.Duration, log zerolog.Logger, reg prometheus.Registerer) *CredentialMonitor {
	f := promauto.With(reg)
	return &CredentialMonitor{
		accounts: accounts, interval: interval, timeout: timeout, log: log, now: time.Now, poke: make(chan struct{}, 1),
		ok: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "transferd_provider_credentials_ok",
			Help: "1 when the provider accepted the account's credentials at the last conclusive check, 0 when it refused them (401/403); account is <tenant>/<provider>.",
		}, []string{"provider", "account"}),
		checked: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "transferd_provider_credentials_checked_timestamp_seconds",
			Help: "Unix time of the last credential check of the account, conclusive or not.",
		}, []string{"provider", "account"}),
		status: map[string]providerStatusJSON{}, generation: map[string]uint64{},
	}
}

// Run checks every account at once and then every interval until ctx is
// done; accounts that appear in between (CheckNew) are checked when they
// do. The checks of one round run one after another: they are rare and
// cheap, and an account is never asked twice at once.
func (m *CredentialMonitor) Run(ctx context.Context) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	m.CheckAll(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.CheckAll(ctx)
		case <-m.poke:
			m.check(ctx, true)
		}
	}
}

// CheckNew asks Run to check the accounts never checked yet (a reload
// added them) or checked under another Generation (a reload rotated their
// secrets) without waiting for the next round; it does not block.
func (m *CredentialMonitor) CheckNew() {
	select {
	case m.poke <- struct{}{}:
	default:
	}
}

// CheckAll checks every account once and records the results; the
// results of accounts no longer configured are dropped.
func (m *CredentialMonitor) CheckAll(ctx context.Context) { m.check(ctx, false) }

func (m *CredentialMonitor) check(ctx context.Context, onlyNew bool) {
	accounts := m.accounts()
	m.prune(accounts)
	for _, a := range accounts {
		if ctx.Err() != nil {
			return
		}
		if onlyNew {
			m.mu.Lock()
			_, seen := m.status[a.Account]
			seen = seen && m.generation[a.Account] == a.Generation
			m.mu.Unlock()
			if seen {
				continue
			}
		}
		cctx, cancel := context.WithTimeout(ctx, m.timeout)
		start := m.now()
		err := a.Checker.CheckCredentials(cctx)
		cancel()
		m.record(a, err, m.now().Sub(start))
	}
}

// prune forgets accounts that are no longer configured, metric series
// included, so that a removed tenant leaves no alert behind.
func (m *CredentialMonitor) prune(current []CredentialAccount) {
	keep := make(map[string]bool, len(current))
	for _, a := range current {
		keep[a.Account] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for account, s := range m.status {
		if !keep[account] {
			delete(m.status, account)
			delete(m.generation, account)
			m.ok.DeleteLabelValues(s.Provider, account)
			m.checked.DeleteLabelValues(s.Provider, account)
		}
	}
}

func (m *CredentialMonitor) record(a CredentialAccount, err error, took time.Duration) {
	s := providerStatusJSON{Provider: a.Provider, Account: a.Account, Credentials: CredentialsOK}
	at := m.now().UTC()
	s.CheckedAt = &at
	ev := m.log.Info()
	switch {
	case err == nil:
		m.ok.WithLabelValues(a.Provider, a.Account).Set(1)
	case orchestrator.KindOf(err) == orchestrator.KindProviderAuth:
		s.Credentials, s.Detail = CredentialsRejected, "the provider refused the credentials: "+err.Error()
		m.ok.WithLabelValues(a.Provider, a.Account).Set(0)
		ev = m.log.Error().Err(err)
	default:
		// Not an answer about the credentials (unreachable, 5xx): the
		// metric keeps its last conclusive value.
		s.Credentials, s.Detail = CredentialsUnknown, "the check did not reach a verdict: "+err.Error()
		ev = m.log.Warn().Err(err)
	}
	m.checked.WithLabelValues(a.Provider, a.Account).Set(float64(at.UnixNano()) / 1e9)
	ev.Str("provider", a.Provider).Str("account", a.Account).Str("credentials", s.Credentials).
		Float64("took_ms", float64(took)/float64(time.Millisecond)).Msg("provider credential check")
	m.mu.Lock()
	m.status[a.Account] = s
	m.generation[a.Account] = a.Generation
	m.mu.Unlock()
}

// providerStatusJSON is openapi.yaml's ProviderStatus.
type providerStatusJSON struct {
	Provider    string     `json:"provider"`
	Account     string     `json:"account"`
	Credentials string     `json:"credentials"`
	CheckedAt   *time.Time `json:"checked_at,omitempty"`
	Detail      string     `json:"detail,omitempty"`
}

// snapshot returns the last result of every account configured now, by
// account (unknown when not checked yet); a nil monitor has none.
func (m *CredentialMonitor) snapshot() []providerStatusJSON {
	out := []providerStatusJSON{}
	if m == nil {
		return out
	}
	accounts := m.accounts()
	m.mu.Lock()
	for _, a := range accounts {
		s, ok := m.status[a.Account]
		if !ok {
			why := m.notChecked
			if why == "" {
				why = "not checked yet"
			}
			s = providerStatusJSON{Provider: a.Provider, Account: a.Account, Credentials: CredentialsUnknown, Detail: why}
		}
		out = append(out, s)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Account < out[j].Account })
	return out
}

func handleProviderStatus(m *CredentialMonitor) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, map[string]any{"providers": m.snapshot()})
	})
}
