package orchestrator_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/benchutil"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

func benchEngine(b *testing.B, cfg orchestrator.Config, f *orchestratortest.Fake) *orchestrator.Engine {
	b.Helper()
	f.SetRecording(false)
	e, err := orchestrator.New(cfg, memory.New(), []orchestrator.Provider{f}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkTransferAuto measures one attended transfer from Start to its
// terminal state against a zero-latency provider: the orchestration
// overhead per transfer (DESIGN §7: ≤ 2 ms CPU), including its saves to the
// memory store.
func BenchmarkTransferAuto(b *testing.B) {
	e := benchEngine(b, orchestrator.Config{PollInterval: time.Microsecond, PollMaxInterval: time.Microsecond},
		orchestratortest.NewFake("fake"))
	defer e.Shutdown(context.Background())
	ctx := context.Background()
	r := request("fake", "1000")
	never := func(*orchestrator.Transfer) bool { return false }
	b.ReportAllocs()
	cpu := benchutil.CPUTime()
	defer benchutil.ReportCPU(b, cpu)
	for b.Loop() {
		tr, err := e.Start(ctx, r, orchestrator.StartOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if tr, err = e.Wait(ctx, tr.ID, never); err != nil || tr.State != orchestrator.StateCompleted {
			b.Fatalf("transfer ended %v, %v", tr.State, err)
		}
	}
}

// BenchmarkConsultingMemory parks b.N manual transfers in consulting (the
// target answered, the client has not completed) and reports the memory
// they hold: DESIGN §7 wants 10,000 in flight in ≤ 256 MiB. Run it with
// -benchtime=10000x for exactly that load. The figures include the memory
// store's records and the Fake's call state, so they bound the engine's
// own share from above.
func BenchmarkConsultingMemory(b *testing.B) {
	// Parked transfers poll ever more rarely, so they mostly sleep.
	e := benchEngine(b, orchestrator.Config{PollInterval: 10 * time.Millisecond, PollMaxInterval: time.Hour,
		ConsultTimeout: 10 * time.Minute}, orchestratortest.NewFake("fake"))
	ctx := context.Background()
	answered := func(t *orchestrator.Transfer) bool { return t.Answered }
	r := request("fake", "")
	r.Completion = orchestrator.CompletionManual
	ids := make([]string, b.N)
	users := make([]string, b.N)
	for i := range users {
		users[i] = fmt.Sprint(100000 + i)
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := range b.N {
		r.Call.User = users[i]
		tr, err := e.Start(ctx, r, orchestrator.StartOptions{})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = tr.ID
	}
	for _, id := range ids {
		if tr, err := e.Wait(ctx, id, answered); err != nil || tr.State != orchestrator.StateConsulting {
			b.Fatalf("transfer %s is %v (%v), want consulting", id, tr.State, err)
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)

	n := float64(b.N)
	heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	stack := float64(after.StackInuse) - float64(before.StackInuse)
	b.ReportMetric(heap/n, "heap-B/transfer")
	b.ReportMetric(stack/n, "stack-B/transfer")
	b.ReportMetric((heap+stack)/n*10000/(1<<20), "MiB/10k-transfers")
	if len(e.Running()) != b.N {
		b.Fatalf("%d transfers running, want %d", len(e.Running()), b.N)
	}
	if err := e.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
}
