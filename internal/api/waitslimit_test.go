package api_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// reloadedLimits are a tenants file's limits, which a reload changes.
type reloadedLimits struct{ maxWaits atomic.Int64 }

func (*reloadedLimits) Permit(string, *orchestrator.Request) error { return nil }

func (l *reloadedLimits) Limits(string) api.Limits {
	return api.Limits{MaxWaits: int(l.maxWaits.Load())}
}

// A bound of waits (max_waits) that a reload sets counts the streams and
// long polls the tenant opened while it had none: they were not counted,
// and a tenant holding a hundred streams from before was let open as many
// as the new bound more.
func TestAWaitsBoundSetByAReloadCountsTheWaitsHeldBefore(t *testing.T) {
	limits := &reloadedLimits{}
	e := newLimitedEnv(t, orchestratortest.NewFake("netsapiens"), api.Config{Tenants: limits})
	for range 2 {
		t.Cleanup(openStream(t, e, readKey))
	}
	limits.maxWaits.Store(2)
	if status := streamStatus(t, e); status != http.StatusTooManyRequests {
		t.Errorf("a third stream under a bound of 2 set while two were open: %d, want 429", status)
	}
	// Each that ends gives its slot back as any other.
	limits.maxWaits.Store(3)
	t.Cleanup(openStream(t, e, readKey))
	if status := streamStatus(t, e); status != http.StatusTooManyRequests {
		t.Errorf("a fourth stream under a bound of 3: %d, want 429", status)
	}
}

// streamStatus opens GET /v1/events with the read key and returns its
// status, ending the stream at once if one began.
func streamStatus(t *testing.T, e *env) int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.srv.URL+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+readKey)
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}
