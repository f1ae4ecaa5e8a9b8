package webhooks_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
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

// An endpoint's URL may carry a token (a path segment, a query
// parameter): it is the receiver's credential. An attempt that got no
// response failed with Go's *url.Error, whose text quotes the URL; its
// cause alone goes into the delivery's last error, which the deliveries
// API shows the tenant and the attempt's log line writes. With the URL's
// error kept whole (a mutation no test caught), both carried the token.
func TestAnAttemptWithoutAResponseKeepsTheURLOutOfItsError(t *testing.T) {
	const token = "tok-4f9a2c"
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic(http.ErrAbortHandler) // the connection is cut: no response
	}))
	t.Cleanup(srv.Close)
	s := memory.New()
	seed(t, s, "acme", 0, 1, 1)
	st := memory.NewDeliveries(s)
	ep := webhooks.Endpoint{ID: "crm", URL: srv.URL + "/hooks/" + token + "?key=" + token, Secrets: []string{secretOld}}
	logs := make(lines, 100)
	d := webhooks.New(webhooks.Config{}, st, webhooks.Static{"acme": {ep}}, render,
		zerolog.New(logs).Level(zerolog.DebugLevel), prometheus.NewRegistry())
	ctx := context.Background()
	if err := d.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	ds, _, err := d.Deliveries(ctx, webhooks.DeliveryFilter{Tenant: "acme"})
	if err != nil || len(ds) != 1 {
		t.Fatalf("deliveries %+v, %v; want one", ds, err)
	}
	if ds[0].LastError == "" || ds[0].Status != webhooks.StatusPending || strings.Contains(ds[0].LastError, token) {
		t.Errorf("last error %q (status %s); want a failed attempt whose error does not hold the URL's token", ds[0].LastError, ds[0].Status)
	}
	close(logs)
	for l := range logs {
		if strings.Contains(l, token) {
			t.Errorf("a log line holds the URL's token: %s", l)
		}
	}
}
