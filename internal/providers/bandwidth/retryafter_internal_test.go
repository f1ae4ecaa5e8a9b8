package bandwidth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// A safe request answered 503 with a Retry-After that outlasts the step's
// deadline is returned at once, a retryable error, rather than slept on
// until the context ends (the 429's wait was already bounded so; the
// transient failure's was not). The context's deadline tells: the request
// returns with it still open, after one try.
func TestARetryAfterPastTheDeadlineReturnsAtOnce(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c, err := New(Config{BaseURL: srv.URL + "/v1", UserID: "u-1", APIToken: "tok", APISecret: "sec",
		RetryBase: time.Millisecond, Attempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = c.do(ctx, request{op: "get_call", method: http.MethodGet, path: "/calls/c-1", safe: true}, nil)
	if ctx.Err() != nil {
		t.Errorf("the request returned once its context had ended (%v): it waited the Retry-After out", ctx.Err())
	}
	if orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
		t.Errorf("%v (kind %v), want a retryable error (provider unavailable)", err, orchestrator.KindOf(err))
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("%d tries, want 1", n)
	}
}
