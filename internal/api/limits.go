package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/transferd/transferd/internal/orchestrator"
)

// Limits bound what one tenant may ask of transferd; zero means no limit.
type Limits struct {
	// StartRate is transfers started per second (a token bucket of
	// StartBurst).
	StartRate  float64
	StartBurst int
	// MaxInFlight is how many of the tenant's transfers may be unfinished.
	MaxInFlight int
	// MaxWaits is how many long polls (Prefer: wait) and open streams the
	// tenant may hold at once.
	MaxWaits int
}

// Tenants answers per-tenant policy; the tenants registry implements it.
type Tenants interface {
	// Permit returns a *Forbidden error when tenant may not make request
	// r (a provider, NetSapiens domain or target outside its allow-list).
	Permit(tenant string, r *orchestrator.Request) error
	// Limits returns the tenant's limits.
	Limits(tenant string) Limits
}

// Forbidden is a request outside its tenant's allow-list; Field names
// what is not allowed.
type Forbidden struct {
	Field  string
	Detail string
}

func (f *Forbidden) Error() string { return f.Field + " " + f.Detail }

// limiter keeps each tenant's start bucket, waits and in-flight guard.
type limiter struct {
	tenants  Tenants
	defaults Limits
	mu       sync.Mutex
	m        map[string]*tenantLimits
}

type tenantLimits struct {
	bucket *rate.Limiter
	waits  int
	// starting serializes count-then-start so that concurrent creates
	// cannot both pass MaxInFlight.
	starting sync.Mutex
}

func newLimiter(t Tenants, defaults Limits) *limiter {
	return &limiter{tenants: t, defaults: defaults, m: map[string]*tenantLimits{}}
}

func (l *limiter) limits(tenant string) Limits {
	if l.tenants != nil {
		return l.tenants.Limits(tenant)
	}
	return l.defaults
}

// state returns tenant's state with its bucket following the current
// limits (a reload may change them).
func (l *limiter) state(tenant string, lim Limits) *tenantLimits {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.m[tenant]
	if s == nil {
		s = &tenantLimits{}
		l.m[tenant] = s
	}
	if lim.StartRate > 0 {
		burst := max(lim.StartBurst, 1)
		if s.bucket == nil {
			s.bucket = rate.NewLimiter(rate.Limit(lim.StartRate), burst)
		} else if s.bucket.Limit() != rate.Limit(lim.StartRate) || s.bucket.Burst() != burst {
			s.bucket.SetLimit(rate.Limit(lim.StartRate))
			s.bucket.SetBurst(burst)
		}
	} else {
		s.bucket = nil
	}
	return s
}

// errLimited is a tenant over a limit; retryAfter is when to retry.
type errLimited struct {
	detail     string
	retryAfter time.Duration
}

func (e *errLimited) Error() string { return e.detail }

// start takes a token for a new transfer of the tenant of ctx and checks
// its transfers in flight, then calls do while holding the tenant's start
// guard.
func (l *limiter) start(ctx context.Context, eng *orchestrator.Engine, do func() error) error {
	tenant := orchestrator.TenantOf(ctx)
	lim := l.limits(tenant)
	s := l.state(tenant, lim)
	if s.bucket != nil {
		res := s.bucket.Reserve()
		if d := res.Delay(); d > 0 {
			res.Cancel()
			return &errLimited{detail: fmt.Sprintf("this tenant may start %g transfers a second (bursts of %d)", lim.StartRate, max(lim.StartBurst, 1)), retryAfter: d}
		}
	}
	if lim.MaxInFlight <= 0 {
		return do()
	}
	s.starting.Lock()
	defer s.starting.Unlock()
	var open []orchestrator.State
	for _, st := range orchestrator.States {
		if !st.Terminal() {
			open = append(open, st)
		}
	}
	ts, _, err := eng.List(ctx, orchestrator.ListFilter{States: open, Limit: lim.MaxInFlight})
	if err != nil {
		return err
	}
	if len(ts) >= lim.MaxInFlight {
		return &errLimited{detail: fmt.Sprintf("this tenant has %d transfers in flight, its limit", lim.MaxInFlight), retryAfter: time.Second}
	}
	return do()
}

// wait takes one of the tenant's long-poll slots; release gives it back.
func (l *limiter) wait(ctx context.Context) (release func(), err error) {
	tenant := orchestrator.TenantOf(ctx)
	lim := l.limits(tenant)
	if lim.MaxWaits <= 0 {
		return func() {}, nil
	}
	s := l.state(tenant, lim)
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.waits >= lim.MaxWaits {
		return nil, &errLimited{detail: fmt.Sprintf("this tenant already holds %d long polls or streams, its limit", lim.MaxWaits), retryAfter: time.Second}
	}
	s.waits++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			s.waits--
			l.mu.Unlock()
		})
	}, nil
}

// writeLimited answers 429 with Retry-After in whole seconds (at least 1).
func writeLimited(w http.ResponseWriter, r *http.Request, err error) bool {
	var el *errLimited
	if !errors.As(err, &el) {
		return false
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(max(1, math.Ceil(el.retryAfter.Seconds())))))
	p := probRateLimited
	p.Detail = el.detail
	writeProblem(w, r, p)
	return true
}

// writeForbidden answers 403 for a request outside its tenant's
// allow-list.
func writeForbidden(w http.ResponseWriter, r *http.Request, err error) bool {
	var f *Forbidden
	if !errors.As(err, &f) {
		return false
	}
	p := fieldProblem(probForbidden, map[string]string{f.Field: f.Detail})
	writeProblem(w, r, p)
	return true
}
