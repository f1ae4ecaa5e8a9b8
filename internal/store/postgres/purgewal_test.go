package postgres_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
	"github.com/transferd/transferd/internal/webhooks"
	"github.com/transferd/transferd/internal/webhooks/webhookstest"
)

// A purge rests after a full batch for the WAL the batch wrote, read from
// the server, even when the batch took no time: on a clock that never
// moves, every rest after a full batch of the transfers', the
// idempotency records' and the webhook deliveries' purges is longer than
// nothing.
func TestPurgeRestsForTheServersWAL(t *testing.T) {
	ctx := context.Background()
	s := open(t)
	postgres.SetPurgeBatch(s, 2)
	frozen := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var rests []time.Duration
	postgres.SetPurgePace(s, func() time.Time { return frozen },
		func(_ context.Context, d time.Duration) error { rests = append(rests, d); return nil })
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	for i := range 3 {
		tr := &orchestrator.Transfer{ID: orchestrator.NewID(at), State: orchestrator.StateCompleted,
			Request:   orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "D", User: "1000"}},
			CreatedAt: at, UpdatedAt: at}
		if err := s.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.ReserveIdempotency(ctx, orchestrator.IdempotencyRecord{Scope: "s", Key: strconv.Itoa(i), CreatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, want int) {
		t.Helper()
		if len(rests) != want {
			t.Errorf("%s: %d rests, want %d", what, len(rests), want)
		}
		for i, d := range rests {
			if d <= 0 {
				t.Errorf("%s: rest %d took %v, want the time of the WAL its batch wrote", what, i, d)
			}
		}
		rests = nil
	}
	// Transfers: 2, then 1; keys: 2, then 1.
	if n, err := s.Purge(ctx, at.Add(time.Hour), 0); n != 3 || err != nil {
		t.Fatalf("Purge = %d, %v; want 3", n, err)
	}
	check("Purge", 2)
	webhookstest.Finished(t, s, map[string]webhookstest.Finish{
		"tr_a": {Status: webhooks.StatusDelivered, At: time.Now().Add(-48 * time.Hour)},
		"tr_b": {Status: webhooks.StatusDead, At: time.Now().Add(-48 * time.Hour)},
		"tr_c": {Status: webhooks.StatusDelivered, At: time.Now().Add(-48 * time.Hour)},
	})
	if n, err := s.PurgeDeliveries(ctx, time.Now(), 0); n != 3 || err != nil {
		t.Fatalf("PurgeDeliveries = %d, %v; want 3", n, err)
	}
	check("PurgeDeliveries", 1)
}

// A purge's rest after a full batch is the longer of the batch's time and
// the time the server takes to absorb its WAL at the purge's share, and
// at most MaxPurgeRest: on a clock that moves 7 ms a batch, with the WAL
// budget 1 MB a second, a batch that wrote 1 kB rests 7 ms, one that
// wrote 3 MB rests 3 s, one that wrote a terabyte rests MaxPurgeRest;
// after the transfers', the idempotency records' and the deliveries'
// batches alike.
func TestPurgeRestsForItsWAL(t *testing.T) {
	for _, c := range []struct {
		wrote int64
		rest  time.Duration
	}{
		{1 << 10, 7 * time.Millisecond},
		{3 << 20, 3 * time.Second},
		{1 << 40, postgres.MaxPurgeRest},
	} {
		t.Run(strconv.FormatInt(c.wrote, 10), func(t *testing.T) {
			ctx := context.Background()
			s := open(t)
			postgres.SetPurgeBatch(s, 2)
			// Every batch reads the clock before and after its statement:
			// 7 ms; and the WAL position: c.wrote bytes.
			tick := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
			var rests []time.Duration
			postgres.SetPurgePace(s, func() time.Time { tick = tick.Add(7 * time.Millisecond); return tick },
				func(_ context.Context, d time.Duration) error { rests = append(rests, d); return nil })
			var pos int64
			postgres.SetPurgeWAL(s, func(context.Context) (int64, float64, error) {
				pos += c.wrote
				return pos, 1 << 20, nil
			})
			at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
			for i := range 3 {
				tr := &orchestrator.Transfer{ID: orchestrator.NewID(at), State: orchestrator.StateCompleted,
					Request:   orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "D", User: "1000"}},
					CreatedAt: at, UpdatedAt: at}
				if err := s.Create(ctx, tr); err != nil {
					t.Fatal(err)
				}
				if _, _, err := s.ReserveIdempotency(ctx, orchestrator.IdempotencyRecord{Scope: "s", Key: strconv.Itoa(i), CreatedAt: at}); err != nil {
					t.Fatal(err)
				}
			}
			check := func(what string, want int) {
				t.Helper()
				if len(rests) != want {
					t.Errorf("%s: %d rests, want %d", what, len(rests), want)
				}
				for i, d := range rests {
					if d != c.rest {
						t.Errorf("%s: rest %d took %v, want %v", what, i, d, c.rest)
					}
				}
				rests = nil
			}
			// Transfers: 2, then 1; keys: 2, then 1.
			if n, err := s.Purge(ctx, at.Add(time.Hour), 0); n != 3 || err != nil {
				t.Fatalf("Purge = %d, %v; want 3", n, err)
			}
			check("Purge", 2)
			webhookstest.Finished(t, s, map[string]webhookstest.Finish{
				"tr_a": {Status: webhooks.StatusDelivered, At: time.Now().Add(-48 * time.Hour)},
				"tr_b": {Status: webhooks.StatusDead, At: time.Now().Add(-48 * time.Hour)},
				"tr_c": {Status: webhooks.StatusDelivered, At: time.Now().Add(-48 * time.Hour)},
			})
			if n, err := s.PurgeDeliveries(ctx, time.Now(), 0); n != 3 || err != nil {
				t.Fatalf("PurgeDeliveries = %d, %v; want 3", n, err)
			}
			check("PurgeDeliveries", 1)
		})
	}
}
