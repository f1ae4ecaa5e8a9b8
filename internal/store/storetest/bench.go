package storetest

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/benchutil"
	"github.com/transferd/transferd/internal/orchestrator"
)

// benchTransfer is a record of the size the engine saves mid-transfer:
// legs known, four steps done, hold and dial sent, the hold seen.
func benchTransfer(now time.Time, user string) *orchestrator.Transfer {
	t := &orchestrator.Transfer{ID: orchestrator.NewID(now), State: orchestrator.StateConsulting,
		CreatedAt: now, UpdatedAt: now, ConsultDeadline: now.Add(30 * time.Second),
		Request: orchestrator.Request{Provider: "netsapiens", Mode: orchestrator.ModeAttended,
			Call:   orchestrator.CallRef{Domain: "TEST", User: user},
			Target: "1010", Completion: orchestrator.CompletionManual, ConsultTimeout: 30 * time.Second},
		Legs: orchestrator.Legs{
			Caller:  orchestrator.LegRef{CallID: "20251121093000-1a2b3c4d5e6f", SessionID: "20251121093000000001", Server: "core1-phx.example.com"},
			Agent:   orchestrator.LegRef{CallID: "20251121093000-7a8b9c0d1e2f"},
			Consult: orchestrator.LegRef{CallID: "tr_consult-" + user, SessionID: "20251121093001000002"},
		},
		Sent:  orchestrator.Sent{Hold: now.Add(40 * time.Millisecond), Dial: now.Add(80 * time.Millisecond)},
		Seen:  orchestrator.Seen{Held: true},
		Owner: "replica-a",
	}
	for i, name := range []string{orchestrator.StepLocate, orchestrator.StepHold, orchestrator.StepDial, orchestrator.StepAnswered} {
		at := now.Add(time.Duration(i) * 40 * time.Millisecond)
		t.Steps = append(t.Steps, orchestrator.Step{Name: name, Status: orchestrator.StepSucceeded, StartedAt: at, EndedAt: at.Add(35 * time.Millisecond)})
	}
	return t
}

// BenchUpdate measures one transition save, the storage cost the engine
// pays twice per provider step (intent, then result): Update of a
// mid-transfer record, alternating a step between started and succeeded so
// that the record keeps its size.
func BenchUpdate(b *testing.B, s orchestrator.Store) { benchUpdate(b, s, "") }

// BenchUpdateWithToken is BenchUpdate with each save carrying its
// process's token (Transfer.Token), as the engine's do: the store checks
// it against the owner's heartbeat.
func BenchUpdateWithToken(b *testing.B, s orchestrator.Store) {
	if _, err := s.Heartbeat(context.Background(), "replica-a", "token-a", time.Now(), time.Hour, true); err != nil {
		b.Fatal(err)
	}
	benchUpdate(b, s, "token-a")
}

func benchUpdate(b *testing.B, s orchestrator.Store, token string) {
	ctx := context.Background()
	t := benchTransfer(time.Now(), "1000")
	t.Token = token
	if err := s.Create(ctx, t); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	cpu := benchutil.CPUTime()
	for b.Loop() {
		last := &t.Steps[len(t.Steps)-1]
		if last.Status == orchestrator.StepSucceeded {
			last.Status, last.EndedAt = orchestrator.StepStarted, time.Time{}
		} else {
			last.Status, last.EndedAt = orchestrator.StepSucceeded, time.Now()
		}
		t.UpdatedAt = time.Now()
		if err := s.Update(ctx, t); err != nil {
			b.Fatal(err)
		}
	}
	benchutil.ReportCPU(b, cpu)
}

// BenchUpdateParallel measures transition saves of many transfers at once
// (one per goroutine), the load of a busy replica.
func BenchUpdateParallel(b *testing.B, s orchestrator.Store) {
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	cpu := benchutil.CPUTime()
	b.RunParallel(func(pb *testing.PB) {
		t := benchTransfer(time.Now(), "p"+strconv.FormatInt(n.Add(1), 10))
		if err := s.Create(ctx, t); err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			t.UpdatedAt = time.Now()
			if err := s.Update(ctx, t); err != nil {
				b.Error(err)
				return
			}
		}
	})
	benchutil.ReportCPU(b, cpu)
}

// BenchCreate measures saving a new transfer (the first write of every
// transfer, which also checks the one-active-transfer-per-call rule).
func BenchCreate(b *testing.B, s orchestrator.Store) {
	ctx := context.Background()
	base := time.Now()
	i := 0
	b.ReportAllocs()
	cpu := benchutil.CPUTime()
	for b.Loop() {
		i++
		t := benchTransfer(base.Add(time.Duration(i)*time.Millisecond), strconv.Itoa(i))
		t.State, t.Steps, t.Sent, t.Seen = orchestrator.StatePending, nil, orchestrator.Sent{}, orchestrator.Seen{}
		if err := s.Create(ctx, t); err != nil {
			b.Fatal(err)
		}
	}
	benchutil.ReportCPU(b, cpu)
}

// BenchHeartbeat measures one replica's heartbeat, the only write that
// keeps its ownership of all its transfers.
func BenchHeartbeat(b *testing.B, s orchestrator.Store) {
	ctx := context.Background()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Second)
		if _, err := s.Heartbeat(ctx, "replica-a", "token-a", now, 10*time.Second, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchClaimIdle measures the Claim every replica runs periodically when
// there is nothing to take: `open` transfers of a live replica, which the store must pass over.
func BenchClaimIdle(b *testing.B, s orchestrator.Store, open int) {
	ctx := context.Background()
	now := time.Now()
	if _, err := s.Heartbeat(ctx, "replica-a", "token-a", now, time.Hour, false); err != nil {
		b.Fatal(err)
	}
	for i := range open {
		if err := s.Create(ctx, benchTransfer(now.Add(time.Duration(i)*time.Millisecond), strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		ts, err := s.Claim(ctx, "replica-b", "", now, false, 100)
		if err != nil {
			b.Fatal(err)
		}
		if len(ts) != 0 {
			b.Fatalf("Claim took %d transfers of a live replica", len(ts))
		}
	}
}
