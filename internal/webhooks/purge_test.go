package webhooks_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// lines hands each log line written to it to a channel, and drops those
// it has no room for (after the test stopped reading).
type lines chan string

func (l lines) Write(p []byte) (int, error) {
	select {
	case l <- string(bytes.TrimSpace(p)):
	default:
	}
	return len(p), nil
}

// The engine's retention purge, which a replica runs when it opens and
// every PurgeInterval, deletes the store's delivered and dead deliveries
// finished before Retention (7 days by default), and says how many; a
// young one and a pending one, made as long ago, stay.
func TestEnginePurgesFinishedDeliveries(t *testing.T) {
	ctx := context.Background()
	s := memory.NewDeliveries(memory.New())
	now := time.Now().UTC()
	made := now.Add(-30 * 24 * time.Hour)
	key := webhooks.EndpointKey("acme", "crm")
	var ds []webhooks.Delivery
	for i, tr := range []string{"tr_delivered", "tr_dead", "tr_young", "tr_pending"} {
		ev := "evt_" + tr
		ds = append(ds, webhooks.Delivery{ID: webhooks.DeliveryID(key, ev), Tenant: "acme", Endpoint: "crm", EventID: ev,
			TransferID: tr, Seq: 1, Pos: int64(i + 1), Type: orchestrator.EventStateChanged, Payload: []byte(`{}`),
			Status: webhooks.StatusPending, NextAttempt: made, Deadline: now.Add(time.Hour), CreatedAt: made, UpdatedAt: made})
	}
	if err := s.EnqueueDeliveries(ctx, key, 0, int64(len(ds)), ds); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.ClaimDeliveries(ctx, "r1", made, time.Minute, 10, nil)
	if err != nil || len(claimed) != len(ds) {
		t.Fatalf("claimed %d (%v)", len(claimed), err)
	}
	for _, d := range claimed {
		switch d.TransferID {
		case "tr_delivered":
			d.Status, d.UpdatedAt = webhooks.StatusDelivered, now.Add(-9*24*time.Hour)
		case "tr_dead":
			d.Status, d.UpdatedAt = webhooks.StatusDead, now.Add(-8*24*time.Hour)
		case "tr_young":
			d.Status, d.UpdatedAt = webhooks.StatusDelivered, now.Add(-time.Hour)
		default:
			d.UpdatedAt, d.NextAttempt, d.LastError = now.Add(-8*24*time.Hour), now.Add(time.Hour), "the endpoint answered 500"
		}
		if _, ok, err := s.FinishDelivery(ctx, d); !ok || err != nil {
			t.Fatalf("finish %s: %v %v", d.TransferID, ok, err)
		}
	}

	logs := make(lines, 1000)
	e, err := orchestrator.New(orchestrator.Config{Owner: "a"}, s, []orchestrator.Provider{orchestratortest.NewFake("fake")},
		zerolog.New(logs), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	shutdown := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = e.Shutdown(ctx)
		})
	}
	t.Cleanup(shutdown)
	if err := e.Open(ctx); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for purged := false; !purged; {
		select {
		case l := <-logs:
			if strings.Contains(l, "webhook deliveries") {
				if !strings.Contains(l, `"deliveries":2`) || !strings.Contains(l, `"level":"info"`) {
					t.Fatalf("the purge logged %s, want 2 deliveries purged", l)
				}
				purged = true
			}
		case <-timeout:
			t.Fatal("the engine's purge said nothing of webhook deliveries")
		}
	}
	shutdown()
	list, _, err := s.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, d := range list {
		left = append(left, d.TransferID)
	}
	if got := strings.Join(left, " "); got != "tr_pending tr_young" {
		t.Errorf("%s stored after the purge, want tr_pending tr_young", got)
	}
}
