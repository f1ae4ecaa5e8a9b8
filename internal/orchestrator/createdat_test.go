package orchestrator_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// A transfer is created at the microsecond (CreatedResolution), what
// PostgreSQL keeps: the created_at a client reads is the time every store
// compares the list's bounds with, so a created_after of a created_at plus
// a nanosecond finds that transfer on every store alike.
func TestATransferIsCreatedToTheMicrosecond(t *testing.T) {
	cfg := testConfig()
	cfg.Clock = func() time.Time {
		now := time.Now()
		return now.Add(time.Duration(789 - now.Nanosecond()%1000)) // 789 ns into a microsecond
	}
	h := newHarness(t, cfg)
	h.f.SetTarget(orchestratortest.TargetRings)
	tr, err := h.e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := tr.CreatedAt; !got.Equal(got.Truncate(orchestrator.CreatedResolution)) {
		t.Fatalf("created at %s, not to the microsecond", got.Format(time.RFC3339Nano))
	}
	listed, _, err := h.e.List(context.Background(), orchestrator.ListFilter{CreatedAfter: tr.CreatedAt.Add(time.Nanosecond), Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].ID != tr.ID {
		t.Fatalf("created_after a nanosecond past its created_at listed %d transfers, want %s", len(listed), tr.ID)
	}
}
