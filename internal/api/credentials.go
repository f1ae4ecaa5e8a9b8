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

// CredentialMonitor checks every provider's credentials at start and then
// at a slow interval, and keeps the last results for operators: the
// transferd_provider_credentials_ok metric and /status/providers. It is
// deliberately not a readiness check: one account's rotated key must not
// take every replica out of service for the others.
type CredentialMonitor struct {
	checkers []CredentialChecker
	interval time.Duration
	timeout  time.Duration
	log      zerolog.Logger
	now      func() time.Time

	ok      *prometheus.GaugeVec
	checked *prometheus.GaugeVec

	mu     sync.Mutex
	status map[string]providerStatusJSON
}

// NewCredentialMonitor returns a monitor of checkers that checks each one
// every interval once Run starts, each check bounded by timeout.
func NewCredentialMonitor(checkers []CredentialChecker, interval, timeout time.Duration, log zerolog.Logger, reg prometheus.Registerer) *CredentialMonitor {
	f := promauto.With(reg)
	m := &CredentialMonitor{
		checkers: checkers, interval: interval, timeout: timeout, log: log, now: time.Now,
		ok: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "transferd_provider_credentials_ok",
			Help: "1 when the provider accepted transferd's credentials at the last conclusive check, 0 when it refused them (401/403).",
		}, []string{"provider"}),
		checked: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "transferd_provider_credentials_checked_timestamp_seconds",
			Help: "Unix time of the last credential check of the provider, conclusive or not.",
		}, []string{"provider"}),
		status: map[string]providerStatusJSON{},
	}
	for _, c := range checkers {
		m.status[c.Name()] = providerStatusJSON{Provider: c.Name(), Credentials: CredentialsUnknown}
	}
	return m
}

// Run checks every provider at once and then every interval until ctx is
// done. The checks of one round run one after another: they are rare and
// cheap, and a provider is never asked twice at once.
func (m *CredentialMonitor) Run(ctx context.Context) {
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		m.CheckAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// CheckAll checks every provider once and records the results.
func (m *CredentialMonitor) CheckAll(ctx context.Context) {
	for _, c := range m.checkers {
		if ctx.Err() != nil {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, m.timeout)
		start := m.now()
		err := c.CheckCredentials(cctx)
		cancel()
		m.record(c.Name(), err, m.now().Sub(start))
	}
}

func (m *CredentialMonitor) record(name string, err error, took time.Duration) {
	s := providerStatusJSON{Provider: name, Credentials: CredentialsOK}
	at := m.now().UTC()
	s.CheckedAt = &at
	ev := m.log.Info()
	switch {
	case err == nil:
		m.ok.WithLabelValues(name).Set(1)
	case orchestrator.KindOf(err) == orchestrator.KindProviderAuth:
		s.Credentials, s.Detail = CredentialsRejected, "the provider refused the credentials: "+err.Error()
		m.ok.WithLabelValues(name).Set(0)
		ev = m.log.Error().Err(err)
	default:
		// Not an answer about the credentials (unreachable, 5xx): the
		// metric keeps its last conclusive value.
		s.Credentials, s.Detail = CredentialsUnknown, "the check did not reach a verdict: "+err.Error()
		ev = m.log.Warn().Err(err)
	}
	m.checked.WithLabelValues(name).Set(float64(at.UnixNano()) / 1e9)
	ev.Str("provider", name).Str("credentials", s.Credentials).
		Float64("took_ms", float64(took)/float64(time.Millisecond)).Msg("provider credential check")
	m.mu.Lock()
	m.status[name] = s
	m.mu.Unlock()
}

// providerStatusJSON is openapi.yaml's ProviderStatus.
type providerStatusJSON struct {
	Provider    string     `json:"provider"`
	Credentials string     `json:"credentials"`
	CheckedAt   *time.Time `json:"checked_at,omitempty"`
	Detail      string     `json:"detail,omitempty"`
}

// snapshot returns the last result of every provider, by name; a nil
// monitor has none.
func (m *CredentialMonitor) snapshot() []providerStatusJSON {
	out := []providerStatusJSON{}
	if m == nil {
		return out
	}
	m.mu.Lock()
	for _, s := range m.status {
		out = append(out, s)
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Provider < out[j].Provider })
	return out
}

func handleProviderStatus(m *CredentialMonitor) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, map[string]any{"providers": m.snapshot()})
	})
}
