package webhooks_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// repairing is a store with RepairHeads, which it counts.
type repairing struct {
	webhooks.Store
	repairs atomic.Int32
	first   chan struct{}
}

func (r *repairing) RepairHeads(context.Context) (int, error) {
	if r.repairs.Add(1) == 1 {
		close(r.first)
	}
	return 0, nil
}

// A store that an older replica may share (webhooks.HeadRepairer) is set
// right at the dispatcher's first scan, then at most once a minute: it
// reads every pending delivery.
func TestDispatcherRepairsHeadsOnceAMinute(t *testing.T) {
	ctx := context.Background()
	st := &repairing{Store: memory.NewDeliveries(memory.New()), first: make(chan struct{})}
	dir := webhooks.Static{"default": {{ID: "crm", URL: "http://127.0.0.1:9/", Secrets: []string{secretOld}}}}
	d := webhooks.New(webhooks.Config{}, st, dir, render, zerolog.Nop(), prometheus.NewRegistry())
	clock := time.Now().UTC()
	webhooks.SetClock(d, func() time.Time { return clock })
	start := clock
	for _, c := range []struct {
		after time.Duration
		want  int32
	}{{0, 1}, {time.Second, 1}, {59 * time.Second, 1}, {time.Minute, 2}, {90 * time.Second, 2}, {2 * time.Minute, 3}} {
		clock = start.Add(c.after)
		webhooks.Repair(ctx, d)
		if n := st.repairs.Load(); n != c.want {
			t.Fatalf("after %s: %d repairs, want %d", c.after, n, c.want)
		}
	}
	// Run repairs at its first scan.
	st2 := &repairing{Store: memory.NewDeliveries(memory.New()), first: make(chan struct{})}
	d2 := webhooks.New(webhooks.Config{}, st2, dir, render, zerolog.Nop(), prometheus.NewRegistry())
	runCtx, cancel := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { d2.Run(runCtx); close(ran) }()
	<-st2.first
	cancel()
	<-ran
}
