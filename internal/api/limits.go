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
	bucket *bucket
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
// limits (a reload may change them), and that bucket (nil: no start
// rate). The bucket is read here, under l.mu: another request of the
// tenant may replace s.bucket at any time after a reload, and a create
// refunds its token to the bucket it took it from, not to none.
func (l *limiter) state(tenant string, lim Limits) (*tenantLimits, *bucket) {
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
			s.bucket = newBucket(lim.StartRate, burst, time.Now())
		} else {
			s.bucket.set(lim.StartRate, burst, time.Now())
		}
	} else {
		s.bucket = nil
	}
	return s, s.bucket
}

// bucket is a token bucket of starts: burst tokens, refilled at rate a
// second. Unlike golang.org/x/time/rate's Limiter, whose Cancel gives a
// token back only for a reservation not yet due, it takes a token back
// whenever the start it was taken for did not happen (refund).
type bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int, now time.Time) *bucket {
	return &bucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

// refill adds what accrued since last; b.mu is held.
func (b *bucket) refill(now time.Time) {
	if now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
}

// set follows changed limits, keeping what is left (up to the new burst).
func (b *bucket) set(rate float64, burst int, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	b.rate, b.burst = rate, float64(burst)
	b.tokens = min(b.tokens, b.burst)
}

// take takes a token, or, when there is none, takes nothing and returns
// how long until there is one.
func (b *bucket) take(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

// refund gives back a token taken for a start that did not happen.
func (b *bucket) refund() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = min(b.burst, b.tokens+1)
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
//
// A create that starts nothing (refused for the transfers in flight, or
// by the engine: a call with an active transfer, say) gives its token
// back: the rate bounds transfers started, and a client told to retry
// would otherwise find its retry refused for the refusal's token.
func (l *limiter) start(ctx context.Context, eng *orchestrator.Engine, do func() error) (err error) {
	tenant := orchestrator.TenantOf(ctx)
	lim := l.limits(tenant)
	s, b := l.state(tenant, lim)
	if b != nil {
		if d := b.take(time.Now()); d > 0 {
			return &errLimited{detail: fmt.Sprintf("this tenant may start %g transfers a second (bursts of %d)", lim.StartRate, max(lim.StartBurst, 1)), retryAfter: d}
		}
		defer func() {
			if err != nil {
				b.refund()
			}
		}()
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

// wait takes one of the tenant's wait slots (a long poll, a stream, or a
// repeat waiting for the request with its Idempotency-Key); release gives
// it back. Waits are counted with no bound too: a bound a reload sets
// then counts those already held (streams may stay open for hours), which
// went uncounted, the tenant let open as many as the bound more.
func (l *limiter) wait(ctx context.Context) (release func(), err error) {
	tenant := orchestrator.TenantOf(ctx)
	lim := l.limits(tenant)
	s, _ := l.state(tenant, lim)
	l.mu.Lock()
	defer l.mu.Unlock()
	if lim.MaxWaits > 0 && s.waits >= lim.MaxWaits {
		return nil, &errLimited{detail: fmt.Sprintf("this tenant already holds %d long polls, streams or waiting repeats, its limit", lim.MaxWaits), retryAfter: time.Second}
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
