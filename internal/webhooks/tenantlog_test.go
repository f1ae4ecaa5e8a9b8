package webhooks_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// Two tenants may name their endpoints alike ("crm"): every log line of
// an attempt names its tenant, so that an operator can tell whose
// endpoint fails, and an alert on one tenant's line never points at the
// other.
func TestAttemptLogLinesNameTheTenant(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	s := memory.New()
	seed(t, s, "acme", 0, 1, 1)
	seed(t, s, "zeta", 1, 1, 1)
	st := memory.NewDeliveries(s)
	ep := webhooks.Endpoint{ID: "crm", URL: srv.URL, Secrets: []string{secretOld}}
	dir := webhooks.Static{"acme": {ep}, "zeta": {ep}}
	logs := make(lines, 10000)
	d := webhooks.New(webhooks.Config{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, ScanInterval: 2 * time.Millisecond},
		st, dir, render, zerolog.New(logs).Level(zerolog.DebugLevel), prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	want := map[string]string{"tr_00000000000000000000000000": "acme", "tr_00000000000000000000000001": "zeta"}
	seen := map[string]bool{}
	timeout := time.After(10 * time.Second)
	for len(seen) < 2 {
		select {
		case l := <-logs:
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil || m["message"] != "webhook attempt" {
				continue
			}
			tr, _ := m["transfer_id"].(string)
			if m["tenant"] != want[tr] {
				t.Fatalf("an attempt of %s's endpoint %s logged tenant %v: %s", want[tr], m["endpoint"], m["tenant"], l)
			}
			seen[tr] = true
		case <-timeout:
			t.Fatalf("attempts logged for %v only", seen)
		}
	}
}
