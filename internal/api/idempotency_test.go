package api_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	transferd "github.com/transferd/transferd"
	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// instance is one transferd process: an engine and its HTTP server.
type instance struct {
	eng *orchestrator.Engine
	srv *httptest.Server
}

func newInstance(t *testing.T, store orchestrator.Store, fake *orchestratortest.Fake) *instance {
	t.Helper()
	eng, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		VisibilityWindow: 20 * time.Millisecond},
		store, []orchestrator.Provider{fake}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	srv := httptest.NewServer(api.NewServer(api.Config{OpenAPI: transferd.OpenAPI, Idempotency: store}, eng, zerolog.Nop(), reg, reg))
	t.Cleanup(func() {
		srv.Close()
		_ = eng.Shutdown(context.Background())
	})
	return &instance{eng: eng, srv: srv}
}

type reply struct {
	status   int
	location string
	replayed string
	body     string
}

func post(t *testing.T, url, key, body string, header ...string) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("Idempotent-Replayed"), string(b)}
}

const manualBody = `{"provider":"netsapiens","call":{"domain":"TEST","user":"1000"},"target":"1010","completion":"manual"}`

func TestIdempotentCreateReplaysAcrossRestarts(t *testing.T) {
	store := memory.New()
	fake := orchestratortest.NewFake("netsapiens")
	first := newInstance(t, store, fake)
	a := post(t, first.srv.URL+"/v1/transfers", "key-1", manualBody)
	if a.status != http.StatusAccepted || a.location == "" {
		t.Fatalf("first: %+v", a)
	}
	b := post(t, first.srv.URL+"/v1/transfers", "key-1", manualBody)
	if b.status != a.status || b.location != a.location || b.body != a.body || b.replayed != "true" {
		t.Fatalf("repeat differs:\n%+v\n%+v", a, b)
	}
	// Another process on the same store: the key still holds.
	second := newInstance(t, store, fake)
	c := post(t, second.srv.URL+"/v1/transfers", "key-1", manualBody)
	if c.location != a.location || c.body != a.body {
		t.Fatalf("after a restart: %+v", c)
	}
	d := post(t, second.srv.URL+"/v1/transfers", "key-1", strings.Replace(manualBody, "1010", "1011", 1))
	if d.status != http.StatusUnprocessableEntity || !strings.Contains(d.body, "idempotency-key-reused") {
		t.Fatalf("same key, other body: %+v", d)
	}
	ts, _, _ := store.List(context.Background(), orchestrator.ListFilter{Limit: 10})
	if len(ts) != 1 {
		t.Fatalf("%d transfers, want 1", len(ts))
	}
}

func TestConcurrentDuplicatesCreateOneTransfer(t *testing.T) {
	store := memory.New()
	fake := orchestratortest.NewFake("netsapiens")
	gate := fake.Block(orchestratortest.MethodLocate) // keep the first request's wait going
	inst := newInstance(t, store, fake)
	const n = 8
	replies := make([]reply, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = post(t, inst.srv.URL+"/v1/transfers", "dup", manualBody, "Prefer", "wait=5")
		}()
	}
	<-gate.Entered()
	gate.Release()
	wg.Wait()
	for i, r := range replies {
		if r.location == "" || r.location != replies[0].location {
			t.Fatalf("reply %d: %+v, want the transfer at %s", i, r, replies[0].location)
		}
	}
	ts, _, _ := store.List(context.Background(), orchestrator.ListFilter{Limit: 10})
	if len(ts) != 1 {
		t.Fatalf("%d transfers created, want 1", len(ts))
	}
}

func TestIdempotentCancel(t *testing.T) {
	store := memory.New()
	fake := orchestratortest.NewFake("netsapiens")
	inst := newInstance(t, store, fake)
	created := post(t, inst.srv.URL+"/v1/transfers", "", manualBody, "Prefer", "wait=5")
	if created.status != http.StatusCreated {
		t.Fatalf("create: %+v", created)
	}
	url := inst.srv.URL + created.location + "/cancel"
	a := post(t, url, "cancel-1", "", "Prefer", "wait=5")
	b := post(t, url, "cancel-1", "", "Prefer", "wait=5")
	if a.status != http.StatusOK || b.status != a.status || b.body != a.body || b.replayed != "true" {
		t.Fatalf("cancel then its repeat:\n%+v\n%+v", a, b)
	}
	// Without the key, a second cancel is a conflict: the transfer ended.
	if c := post(t, url, "", ""); c.status != http.StatusConflict {
		t.Fatalf("unkeyed repeat: %+v", c)
	}
}

func TestIdempotencyKeyIsValidated(t *testing.T) {
	inst := newInstance(t, memory.New(), orchestratortest.NewFake("netsapiens"))
	r := post(t, inst.srv.URL+"/v1/transfers", strings.Repeat("k", 256), manualBody)
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "Idempotency-Key") {
		t.Fatalf("%+v", r)
	}
}
