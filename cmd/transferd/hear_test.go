package main

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
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

// An event stream on replica b is sent the events replica a saves as
// they are saved, and b's webhook dispatcher is nudged: b hears a's saves
// (hearOtherReplicas), where it read them only at its poll and scan. b's streams poll once an hour here, and its
// engine saves nothing, so only the notification can bring the event;
// a stream also reads at its keep-alive (15 s), which the deadline stays
// below.
func TestStreamHearsAnotherReplicasEvents(t *testing.T) {
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
	_, engA := replica("a")
	storeB, engB := replica("b")
	streams := new(wake.Tenants)
	var nudges atomic.Int32
	heard := hearOtherReplicas(storeB, streams, func() { nudges.Add(1) }, zerolog.Nop())
	if heard == nil {
		t.Fatal("hearOtherReplicas hears nothing of the PostgreSQL store")
	}
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(api.NewServer(api.Config{Idempotency: storeB, EventsSaved: streams, EventsHeard: heard,
		EventStreamPoll: time.Hour, EventStreamSafetyPoll: time.Hour}, engB, zerolog.Nop(), reg, reg))
	t.Cleanup(srv.Close)
	deadline := time.Now().Add(10 * time.Second)
	for !heard() {
		if time.Now().After(deadline) {
			t.Fatal("b does not listen")
		}
		time.Sleep(5 * time.Millisecond)
	}

	sctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	req, _ := http.NewRequestWithContext(sctx, http.MethodGet, srv.URL+"/v1/events", nil)
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("stream: %d", res.StatusCode)
	}
	sc := bufio.NewScanner(res.Body)
	// The stream starts after its first line (retry:) was sent.
	if !sc.Scan() {
		t.Fatalf("the stream ended: %v", sc.Err())
	}
	tr, err := engA.Start(ctx, orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "acme.example", User: "1001"},
		Target: "1010"}, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "data: ") {
			if !strings.Contains(line, tr.ID) {
				t.Fatalf("the stream sent %s, want an event of %s", line, tr.ID)
			}
			// Once when b started listening, once (at least) for a's
			// create, before its streams were woken.
			if n := nudges.Load(); n < 2 {
				t.Fatalf("b's dispatcher was nudged %d times; want at b's start and at a's create", n)
			}
			return
		}
	}
	t.Fatalf("the stream on b sent no event of a's transfer %s: %v", tr.ID, sc.Err())
}
