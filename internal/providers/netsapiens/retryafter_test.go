package netsapiens_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// A 429 (or 5xx) whose Retry-After outlasts the step's deadline is
// returned at once, a retryable error (provider unavailable) that the
// engine's back-off tries again: slept, Retry-After: 3600 held the step
// until its context ended. The context's deadline tells: the read returns
// with it still open, after one request.
func TestARetryAfterPastTheDeadlineReturnsAtOnce(t *testing.T) {
	sim, srv := newSimServer(t, nssim.Config{}, nil)
	if _, err := sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"}); err != nil {
		t.Fatal(err)
	}
	c, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + basePath, APIKey: apiKey, Attempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, status := range []int{429, 503} {
		sim.ResetRequests()
		sim.InjectFault(nssim.Fault{Operation: nssim.OpList, Status: status, RetryAfter: "3600", Count: 1})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := c.Locate(ctx, &orchestrator.Transfer{ID: "tr_01JRETRYAFTERXXXXXXXXXXXXX0",
			Request: orchestrator.Request{Provider: netsapiens.Name, Call: orchestrator.CallRef{Domain: domain, User: "1000"}, Target: "1010"}})
		if ctx.Err() != nil {
			t.Errorf("%d: the locate returned once its context had ended (%v): it waited the Retry-After out", status, ctx.Err())
		}
		cancel()
		if orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
			t.Errorf("%d: %v (kind %v), want a retryable error (provider unavailable)", status, err, orchestrator.KindOf(err))
		}
		if n := len(sim.Requests()); n != 1 {
			t.Errorf("%d: %d requests, want 1: nothing is tried again within the step", status, n)
		}
	}
}
