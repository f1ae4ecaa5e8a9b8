package storetest

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// benchTransfer is a record of the size the engine saves mid-transfer:
// legs known, four steps done, two undos registered.
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
		Undo: []orchestrator.Undo{{Action: orchestrator.StepUnhold}, {Action: orchestrator.StepHangup}},
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
func BenchUpdate(b *testing.B, s orchestrator.Store) {
	ctx := context.Background()
	t := benchTransfer(time.Now(), "1000")
	if err := s.Create(ctx, t); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
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
}

// BenchUpdateParallel measures transition saves of many transfers at once
// (one per goroutine), the load of a busy replica.
func BenchUpdateParallel(b *testing.B, s orchestrator.Store) {
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
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
}

// BenchCreate measures saving a new transfer (the first write of every
// transfer, which also checks the one-active-transfer-per-call rule).
func BenchCreate(b *testing.B, s orchestrator.Store) {
	ctx := context.Background()
	base := time.Now()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		t := benchTransfer(base.Add(time.Duration(i)*time.Millisecond), strconv.Itoa(i))
		t.State, t.Steps, t.Undo = orchestrator.StatePending, nil, nil
		if err := s.Create(ctx, t); err != nil {
			b.Fatal(err)
		}
	}
}
