package netsapiens_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/benchutil"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/store/sqlite"
)

// benchRig is the zero-latency simulator over loopback HTTP with an
// engine in front of it, as DESIGN.md §7's throughput target describes.
type benchRig struct {
	sim  *nssim.Sim
	srv  *httptest.Server
	eng  *orchestrator.Engine
	base string
}

func newBenchRig(b *testing.B) *benchRig {
	return newBenchRigWith(b, memory.New())
}

func newBenchRigWith(b *testing.B, store orchestrator.Store) *benchRig {
	b.Helper()
	sim := nssim.New(nssim.Config{APIKeys: map[string]nssim.KeyScope{apiKey: {Domain: "*"}}, HistoryLimit: 1000})
	mux := http.NewServeMux()
	mux.Handle(basePath+"/", http.StripPrefix(basePath, sim.APIHandler()))
	srv := httptest.NewServer(mux)
	transport := &http.Transport{MaxIdleConnsPerHost: 256}
	client, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + basePath, APIKey: apiKey,
		HTTPClient: &http.Client{Transport: transport, Timeout: 10 * time.Second}})
	if err != nil {
		b.Fatal(err)
	}
	eng, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond},
		store, []orchestrator.Provider{client}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = eng.Shutdown(context.Background())
		srv.Close()
		sim.Close()
		transport.CloseIdleConnections()
	})
	return &benchRig{sim: sim, srv: srv, eng: eng, base: srv.URL + basePath}
}

// transfer places a call in its own domain (so listings stay small, as
// on a PBX where a domain is one customer) and transfers it.
func (r *benchRig) transfer(b *testing.B, domain string) {
	call, err := r.sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"})
	if err != nil {
		b.Fatal(err)
	}
	tr, err := r.eng.Start(context.Background(), orchestrator.Request{Provider: netsapiens.Name,
		Call: orchestrator.CallRef{Domain: domain, User: "1000"}, Target: "1010"}, orchestrator.StartOptions{})
	if err != nil {
		b.Fatal(err)
	}
	tr, err = r.eng.Wait(context.Background(), tr.ID, func(*orchestrator.Transfer) bool { return false })
	if err != nil || tr.State != orchestrator.StateCompleted {
		b.Fatalf("transfer ended %s: %v %+v", tr.State, err, tr.Outcome)
	}
	// The caller and the target finish their conversation, so that the
	// PBX holds as many live calls as a real one would, not every call
	// the benchmark ever made.
	if err := r.sim.Hangup(call.SessionID, "orig"); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkNetSapiensTransfer runs whole attended transfers one after
// another and reports the provider requests each took (DESIGN §7: the
// guide's five plus polling) and the CPU per transfer, simulator included.
func BenchmarkNetSapiensTransfer(b *testing.B) {
	r := newBenchRig(b)
	var requests atomic.Int64
	r.srv.Config.Handler = countRequests(r.srv.Config.Handler, &requests)
	b.ReportAllocs()
	cpu := benchutil.CPUTime()
	i := 0
	for b.Loop() {
		r.transfer(b, fmt.Sprintf("D%d", i))
		i++
	}
	benchutil.ReportCPU(b, cpu)
	b.ReportMetric(float64(requests.Load())/float64(b.N), "requests/op")
}

// BenchmarkNetSapiensTransferSQLite is the same on the default embedded
// store, where every save is a durable (fsync'd) SQLite transaction.
func BenchmarkNetSapiensTransferSQLite(b *testing.B) {
	store, err := sqlite.Open(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	r := newBenchRigWith(b, store)
	var saves atomic.Int64
	cpu := benchutil.CPUTime()
	i := 0
	for b.Loop() {
		r.transfer(b, fmt.Sprintf("S%d", i))
		i++
	}
	benchutil.ReportCPU(b, cpu)
	ts, _, _ := store.List(context.Background(), orchestrator.ListFilter{Limit: 1})
	if len(ts) == 1 {
		saves.Store(ts[0].Version)
	}
	b.ReportMetric(float64(saves.Load()), "saves/transfer")
}

// BenchmarkNetSapiensThroughput runs transfers 32 at a time and reports
// transfers per second; compare with BenchmarkSimulatorRawRequests divided
// by requests/op (DESIGN §7: within 2×).
func BenchmarkNetSapiensThroughput(b *testing.B) {
	r := newBenchRig(b)
	var next atomic.Int64
	start := time.Now()
	b.SetParallelism(16) // 16 × GOMAXPROCS(2) = 32 transfers in flight
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.transfer(b, fmt.Sprintf("P%d", next.Add(1)))
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "transfers/s")
}

// BenchmarkNetSapiensThroughputSQLite is the throughput run on the
// durable default store, reporting CPU per transfer under concurrency.
func BenchmarkNetSapiensThroughputSQLite(b *testing.B) {
	store, err := sqlite.Open(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	r := newBenchRigWith(b, store)
	var next atomic.Int64
	start, cpu := time.Now(), benchutil.CPUTime()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.transfer(b, fmt.Sprintf("Q%d", next.Add(1)))
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "transfers/s")
	benchutil.ReportCPU(b, cpu)
}

// BenchmarkSimulatorRawRequests is the baseline: the simulator's plain
// request throughput for the read transferd makes most, over the same
// loopback HTTP, with the same concurrency.
func BenchmarkSimulatorRawRequests(b *testing.B) {
	r := newBenchRig(b)
	if _, err := r.sim.PlaceCall(nssim.InboundCall{Domain: "RAW", User: "1000"}); err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	var once sync.Once
	start := time.Now()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, r.base+"/domains/RAW/calls", nil)
			req.Header.Set("Authorization", "Bearer "+apiKey)
			resp, err := client.Do(req)
			if err != nil {
				once.Do(func() { b.Error(err) })
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "requests/s")
}

func countRequests(h http.Handler, n *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	})
}
