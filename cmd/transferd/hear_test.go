package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/postgres"
	"github.com/transferd/transferd/internal/wake"
)

// acrossReplicas is two replicas of one PostgreSQL database: a, whose
// engine saves transfers, and b, which serves the event streams and
// whose engine saves nothing.
type acrossReplicas struct {
	engA  *orchestrator.Engine
	srvB  *httptest.Server
	heard func() bool
}

// newAcrossReplicas starts the two replicas; b's streams poll every poll
// (while b hears a's saves too), and b hears a's saves (hearOtherReplicas)
// if hear, nudging nudge.
func newAcrossReplicas(t testing.TB, hear bool, poll time.Duration, nudge func()) *acrossReplicas {
	t.Helper()
	dbURL := testDatabase(t).String()
	ctx := context.Background()
	replica := func(name string) (*postgres.Store, *orchestrator.Engine) {
		s, err := postgres.Open(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		eng, err := orchestrator.New(orchestrator.Config{Owner: name, PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond},
			s, []orchestrator.Provider{orchestratortest.NewFake("netsapiens")}, zerolog.Nop(), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = eng.Shutdown(ctx)
		})
		return s, eng
	}
	r := &acrossReplicas{}
	_, r.engA = replica("a")
	storeB, engB := replica("b")
	streams := new(wake.Tenants)
	if hear {
		if r.heard = hearOtherReplicas(storeB, streams, nudge, zerolog.Nop()); r.heard == nil {
			t.Fatal("hearOtherReplicas hears nothing of the PostgreSQL store")
		}
		awaitHearing(t, r.heard)
	}
	reg := prometheus.NewRegistry()
	r.srvB = httptest.NewServer(api.NewServer(api.Config{Idempotency: storeB, EventsSaved: streams, EventsHeard: r.heard,
		EventStreamPoll: poll, EventStreamSafetyPoll: poll}, engB, zerolog.Nop(), reg, reg))
	t.Cleanup(r.srvB.Close)
	return r
}

// awaitHearing waits until heard (a store's Listening) reports that the
// replica hears the others' notifications: its listener heard its probe.
func awaitHearing(t testing.TB, heard func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !heard() {
		if time.Now().After(deadline) {
			t.Fatal("the replica does not hear the others' notifications within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stream opens b's event stream until ctx ends, and returns its scanner
// once the stream has started.
func (r *acrossReplicas) stream(t testing.TB, ctx context.Context) *bufio.Scanner {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.srvB.URL+"/v1/events", nil)
	res, err := r.srvB.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != http.StatusOK {
		t.Fatalf("stream: %d", res.StatusCode)
	}
	sc := bufio.NewScanner(res.Body)
	// The stream has started once its first line (retry:) is sent.
	if !sc.Scan() {
		t.Fatalf("the stream ended: %v", sc.Err())
	}
	return sc
}

// create starts a transfer of user's call on a.
func (r *acrossReplicas) create(t testing.TB, user string) string {
	t.Helper()
	tr, err := r.engA.Start(context.Background(), orchestrator.Request{Provider: "netsapiens",
		Call: orchestrator.CallRef{Domain: "acme.example", User: user}, Target: "1010"}, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.ID
}

// created reads sc up to id's transfer.created event; false if the
// stream ended first.
func created(sc *bufio.Scanner, id string) bool {
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data: ") && strings.Contains(line, id) &&
			strings.Contains(line, `"transfer.created"`) {
			return true
		}
	}
	return false
}

// An event stream on replica b is sent the events replica a saves as
// they are saved, and b's webhook dispatcher is nudged: b hears a's saves
// (hearOtherReplicas), where it read them only at its poll and scan.
// b's streams poll once an hour here, and its engine saves nothing, so
// only the notification can bring the event; a stream also reads at its
// keep-alive (15 s), which the deadline stays below.
func TestStreamHearsAnotherReplicasEvents(t *testing.T) {
	var nudges atomic.Int32
	r := newAcrossReplicas(t, true, time.Hour, func() { nudges.Add(1) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc := r.stream(t, ctx)
	id := r.create(t, "1001")
	if !created(sc, id) {
		t.Fatalf("the stream on b sent no event of a's transfer %s: %v", id, sc.Err())
	}
	// Once when b started listening, once (at least) for a's create,
	// before its streams were woken.
	if n := nudges.Load(); n < 2 {
		t.Fatalf("b's dispatcher was nudged %d times; want at b's start and at a's create", n)
	}
}

// BenchmarkEventAcrossReplicas measures, one transfer at a time, the
// time from a create on replica a to its transfer.created on a stream of
// replica b: b hearing a's saves (notified), and b polling every 200 ms
// as before (polled). Reported as ns/op and as percentiles. Each create
// comes after a quiet spell longer than the poll and the stream's gap
// between reads (100 ms), as a client's sporadic transfer does: right
// after a read, the next would wait for the gap's end.
func BenchmarkEventAcrossReplicas(b *testing.B) {
	for _, notified := range []bool{true, false} {
		b.Run(map[bool]string{true: "notified", false: "polled"}[notified], func(b *testing.B) {
			r := newAcrossReplicas(b, notified, api.DefaultEventStreamPoll, nil)
			sc := r.stream(b, context.Background())
			var took []time.Duration
			n := 0
			for b.Loop() {
				n++
				start := time.Now()
				id := r.create(b, fmt.Sprint(10000+n))
				if !created(sc, id) {
					b.Fatalf("the stream ended: %v", sc.Err())
				}
				took = append(took, time.Since(start))
				b.StopTimer()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if tr, err := r.engA.Wait(ctx, id, func(*orchestrator.Transfer) bool { return false }); err != nil || !tr.State.Terminal() {
					b.Fatalf("transfer %s did not end: %v", id, err)
				}
				cancel()
				time.Sleep(300 * time.Millisecond)
				b.StartTimer()
			}
			slices.Sort(took)
			at := func(p float64) float64 { return float64(took[int(p*float64(len(took)-1))].Microseconds()) / 1000 }
			b.ReportMetric(at(0.5), "p50-ms")
			b.ReportMetric(at(0.99), "p99-ms")
		})
	}
}
