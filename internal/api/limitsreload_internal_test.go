package api

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
)

// reloadedLimits is a Tenants whose limits a test changes, as a reload of
// the tenants file does.
type reloadedLimits struct {
	mu  sync.Mutex
	lim Limits
}

func (r *reloadedLimits) Permit(string, *orchestrator.Request) error { return nil }

func (r *reloadedLimits) Limits(string) Limits {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lim
}

func (r *reloadedLimits) set(lim Limits) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lim = lim
}

// A create refused after it took a start token gives the token back to
// the bucket it took it from, even when a reload removed the tenant's
// start rate meanwhile and another request of the tenant (a long poll,
// which now always looks at the tenant's state) followed the reload: the
// refund read the tenant's bucket anew, found none and panicked.
func TestARefusedCreateRefundsItsTokenAcrossAReloadThatRemovesTheRate(t *testing.T) {
	tenants := &reloadedLimits{lim: Limits{StartRate: 1, StartBurst: 1}}
	l := newLimiter(tenants, Limits{})
	ctx := orchestrator.WithTenant(context.Background(), "acme")
	refused := errors.New("refused by the engine")
	var s *tenantLimits
	err := l.start(ctx, nil, func() error {
		s = l.m["acme"]
		tenants.set(Limits{}) // the reload: no start rate any more
		release, err := l.wait(ctx)
		if err != nil {
			t.Fatalf("a long poll during the create: %v", err)
		}
		release()
		return refused
	})
	if !errors.Is(err, refused) {
		t.Fatalf("start: %v, want the engine's refusal", err)
	}
	if s.bucket != nil {
		t.Fatal("the tenant still has a start bucket after the reload removed its rate")
	}
}
