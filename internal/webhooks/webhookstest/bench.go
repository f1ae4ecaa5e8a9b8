package webhookstest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/benchutil"
	"github.com/transferd/transferd/internal/webhooks"
)

// Backlogs are the stores a claim benchmark runs on: a healthy endpoint
// with deliveries due, alone or beside a backlog of 10,000 transfers of
// five events each (50,000 deliveries) to an endpoint that is down. "dead"
// has the backlog in back-off (each transfer's first delivery failed and
// waits; its later ones wait behind it); "hung" has it due, and the
// endpoint skipped because it holds its share of attempts.
var Backlogs = []string{"healthy", "dead", "hung"}

// BenchClaimPastABacklog measures a claim of 8 deliveries of the healthy
// endpoint, skipping the hung one, with the backlog Backlogs names. Each
// claimed delivery is then finished as failing and due again at once, out
// of the timing, so that every claim finds as many due. cpu-ns/op is the
// process's CPU time during the claims alone.
func BenchClaimPastABacklog(b *testing.B, s webhooks.Store, backlog string) {
	ctx := context.Background()
	down := webhooks.EndpointKey("acme", "down")
	pos := FillBacklog(b, s, backlog)
	live := webhooks.EndpointKey("beta", "crm")
	var ds []webhooks.Delivery
	for tr := range 200 {
		ds = append(ds, mk("beta", "crm", fmt.Sprintf("tr_%05d", tr), 1, pos+int64(tr)+1))
	}
	if err := s.EnqueueDeliveries(ctx, live, 0, pos+200, ds); err != nil {
		b.Fatal(err)
	}
	skip := []string{down}
	var cpu time.Duration
	b.ResetTimer()
	for range b.N {
		start := benchutil.CPUTime()
		got, err := s.ClaimDeliveries(ctx, "r1", now, time.Minute, 8, skip)
		cpu += benchutil.CPUTime() - start
		if err != nil || len(got) != 8 || got[0].Endpoint != "crm" {
			b.Fatalf("claimed %d (%v)", len(got), err)
		}
		b.StopTimer()
		for _, d := range got {
			d.LastError, d.UpdatedAt = "the endpoint answered 503", now
			if _, ok, err := s.FinishDelivery(ctx, d); !ok || err != nil {
				b.Fatalf("finish: %v %v", ok, err)
			}
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}

// FillBacklog enqueues the backlog Backlogs names to the endpoint "down"
// of tenant "acme" (none for "healthy") and returns the last position it
// used.
func FillBacklog(b *testing.B, s webhooks.Store, backlog string) int64 {
	ctx := context.Background()
	down := webhooks.EndpointKey("acme", "down")
	pos := int64(0)
	if backlog == "healthy" {
		return pos
	}
	const transfers, events = 10000, 5
	for i := 0; i < transfers; i += 500 {
		var ds []webhooks.Delivery
		from := pos
		for tr := i; tr < i+500; tr++ {
			for seq := int64(1); seq <= events; seq++ {
				pos++
				d := mk("acme", "down", fmt.Sprintf("tr_%05d", tr), seq, pos)
				d.NextAttempt = now.Add(-time.Hour)
				if backlog == "dead" && seq == 1 {
					d.NextAttempt = now.Add(time.Hour)
				}
				ds = append(ds, d)
			}
		}
		if err := s.EnqueueDeliveries(ctx, down, from, pos, ds); err != nil {
			b.Fatal(err)
		}
	}
	return pos
}
