package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// TestShutdownDelayServesWhileNotReady: with TRANSFERD_SHUTDOWN_DELAY, a
// SIGTERM first has /readyz report not ready while the API serves on, so
// that a load balancer (a Kubernetes Service, whose endpoint goes only
// after the signal) stops sending requests before the listener closes;
// the listener closed at once, and what was still sent was refused. A
// second signal ends the delay.
func TestShutdownDelayServesWhileNotReady(t *testing.T) {
	t.Setenv("TRANSFERD_LISTEN_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_DEMO_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_DATA_DIR", t.TempDir())
	t.Setenv("TRANSFERD_SHUTDOWN_DELAY", "1h") // ended by the second signal below
	logs := newLogWatch()
	ctx, signal := context.WithCancel(context.Background())
	force, again := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(withForce(ctx, force), nil, io.Discard, logs) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { signal(); again(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	api := "http://" + logs.wait(t, msg("listening"))["addr"].(string)
	if resp, _ := send(t, "GET", api+"/readyz", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz before the signal: %s", resp.Status)
	}

	signal()
	logs.wait(t, msg("draining: /readyz reports not ready while the API serves on, before the shutdown"))
	if resp, body := send(t, "GET", api+"/readyz", ""); resp.StatusCode != http.StatusServiceUnavailable || body["detail"] != "not ready: shutting down" {
		t.Errorf("/readyz while draining: %s %v, want 503, not ready: shutting down", resp.Status, body)
	}
	if resp, body := send(t, "GET", api+"/v1/transfers", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("the API while draining: %s %v, want 200", resp.Status, body)
	}
	for _, m := range logs.all() {
		if m["message"] == "shutting down: finishing, handing over or compensating in-flight transfers" {
			t.Fatal("the shutdown began before the delay ended")
		}
	}

	again()
	if err := stop(); err == nil {
		t.Error("run after a second signal returned nil, want the shutdown cut short")
	}
	logs.wait(t, msg("shutting down: finishing, handing over or compensating in-flight transfers"))
}

// A negative TRANSFERD_SHUTDOWN_DELAY is a mistake, refused by name.
func TestANegativeShutdownDelayIsRefused(t *testing.T) {
	t.Setenv("TRANSFERD_SHUTDOWN_DELAY", "-5s")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), "TRANSFERD_SHUTDOWN_DELAY: must be between 0s and") {
		t.Errorf("TRANSFERD_SHUTDOWN_DELAY=-5s: validate = %v, want it refused by name", err)
	}
}

// A tombstone TTL no longer than the visibility window keeps no
// tombstone at all (it runs out as the consult's window does): refused.
func TestATombstoneTTLNoLongerThanTheVisibilityWindowIsRefused(t *testing.T) {
	for _, ttl := range []string{"5s", "3s"} {
		t.Setenv("TRANSFERD_VISIBILITY_WINDOW", "5s")
		t.Setenv("TRANSFERD_TOMBSTONE_TTL", ttl)
		cfg, err := loadConfig()
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), "the tombstone TTL longer than the visibility window") {
			t.Errorf("TRANSFERD_TOMBSTONE_TTL=%s with a 5s window: validate = %v, want it refused", ttl, err)
		}
	}
	t.Setenv("TRANSFERD_TOMBSTONE_TTL", "6s")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(); err != nil {
		t.Errorf("TRANSFERD_TOMBSTONE_TTL=6s with a 5s window: validate = %v, want it taken", err)
	}
}
