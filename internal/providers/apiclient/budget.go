package apiclient

import (
	"fmt"
	"net/http"
	"sync"
	"weak"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/time/rate"
)

// Budget is one provider account's request budget: a token bucket that
// keeps transferd below the provider's rate limit whatever its clients
// do. A request over budget waits for a token, bounded by its context
// (a step's deadline), rather than failing: the provider would only have
// refused it. Published limits, where known (see the README):
//   - Bandwidth Catapult v1: POST /calls 1 per second per account and per
//     number, averaged over 10 s (403 call-rate-limit); /calls and
//     /bridges otherwise "1 per 1000 ms" (429 with X-RateLimit-Reset);
//     the limits are "subject to change".
//   - NetSapiens publishes no NS API request limit; an operator sets one
//     to stay clear of the PBX's own protections.
//
// Every adapter of the account shares the Budget, so its watchers and
// its transfers' steps draw from the same bucket.
type Budget struct {
	lim      *rate.Limiter
	provider string
	waits    prometheus.Counter
}

// BudgetMetrics counts requests that had to wait for their account's
// budget. One instance is shared by a process.
type BudgetMetrics struct {
	waits *prometheus.CounterVec
}

// NewBudgetMetrics registers the budget metrics on reg.
func NewBudgetMetrics(reg prometheus.Registerer) *BudgetMetrics {
	return &BudgetMetrics{waits: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "transferd_provider_budget_waits_total",
		Help: "Provider requests that waited for their account's request budget (TRANSFERD_*_REQUEST_BUDGET), by provider.",
	}, []string{"provider"})}
}

// NewBudget returns a budget of perSecond requests a second with bursts
// of burst (at least 1), or nil (no budget) when perSecond is 0. m may be
// nil.
func NewBudget(provider string, perSecond float64, burst int, m *BudgetMetrics) (*Budget, error) {
	switch {
	case perSecond == 0:
		return nil, nil
	case perSecond < 0:
		return nil, fmt.Errorf("%s request budget: %v requests per second is negative", provider, perSecond)
	}
	if burst < 1 {
		burst = 1
	}
	b := &Budget{lim: rate.NewLimiter(rate.Limit(perSecond), burst), provider: provider}
	if m != nil {
		b.waits = m.waits.WithLabelValues(provider)
	}
	return b, nil
}

// Client returns an HTTP client that spends b on every request it sends
// (retries included) through base's transport, keeping base's timeout.
// A nil b returns base unchanged.
func (b *Budget) Client(base *http.Client) *http.Client {
	if b == nil {
		return base
	}
	if base == nil {
		base = &http.Client{}
	}
	c := *base
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c.Transport = budgetTransport{b: b, next: next}
	return &c
}

type budgetTransport struct {
	b    *Budget
	next http.RoundTripper
}

// RoundTrip waits for a token, at most until the request's context is
// done; a request that cannot get one in time is not sent.
func (t budgetTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.b.lim.Allow() {
		if t.b.waits != nil {
			t.b.waits.Inc()
		}
		if err := t.b.lim.Wait(req.Context()); err != nil {
			if req.Body != nil {
				_ = req.Body.Close()
			}
			return nil, fmt.Errorf("%s request budget: no request may be sent before the step's deadline: %w", t.b.provider, err)
		}
	}
	return t.next.RoundTrip(req)
}

// Waits returns the counter of the budget waits of provider's accounts.
func (m *BudgetMetrics) Waits(provider string) prometheus.Counter {
	return m.waits.WithLabelValues(provider)
}

// Budgets keeps each account's budget for every adapter built for it.
// A reload of the tenants file that changes another of an account's
// settings (a budget, a URL) builds it anew, and the adapter it replaces
// drives the transfers in flight until they end: each with a bucket of
// its own, the two sent up to twice the budget to the provider
// (Bandwidth's 403 call-rate-limit), and a budget lowered to stop that
// was not held until the old transfers ended.
//
// A budget is held by its adapters, not by Budgets (a weak pointer): once
// the last is released (a tenant removed, its transfers ended), it goes
// with them, as it did when each adapter had its own, rather than being
// kept for every account the process was ever given.
type Budgets struct {
	m  *BudgetMetrics
	mu sync.Mutex
	by map[string]weak.Pointer[Budget]
}

// NewBudgets returns the budgets of a process's accounts; m may be nil.
func NewBudgets(m *BudgetMetrics) *Budgets {
	return &Budgets{m: m, by: map[string]weak.Pointer[Budget]{}}
}

// For returns the budget of account (its tenant and provider) at
// perSecond requests a second with bursts of burst, as NewBudget: the
// one its earlier adapters spend, set to these, or a new one. With no
// budget (perSecond 0) it is nil and forgotten: the earlier adapters
// keep the one they had.
func (bs *Budgets) For(account, provider string, perSecond float64, burst int) (*Budget, error) {
	b, err := NewBudget(provider, perSecond, burst, bs.m)
	if b == nil || err != nil {
		bs.mu.Lock()
		delete(bs.by, account)
		bs.mu.Unlock()
		return b, err
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	// The accounts whose adapters are all gone are forgotten here, at a
	// build: one pass over the accounts, at a reload's pace.
	for k, w := range bs.by {
		if w.Value() == nil {
			delete(bs.by, k)
		}
	}
	if old := bs.by[account].Value(); old != nil && old.provider == provider {
		old.lim.SetLimit(b.lim.Limit())
		old.lim.SetBurst(b.lim.Burst())
		return old, nil
	}
	bs.by[account] = weak.Make(b)
	return b, nil
}
