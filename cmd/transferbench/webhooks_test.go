package main

import (
	"net/http"
	"strings"
	"testing"
)

// -webhooks ok points transferd at a receiver that answers 204 and
// counts; down at an address that refuses connections; anything else is
// refused.
func TestWebhookEnv(t *testing.T) {
	env, r, err := webhookEnv("ok")
	if err != nil || r == nil || len(env) != 2 || env[0] != "TRANSFERD_WEBHOOK_URL="+r.url || !strings.HasPrefix(env[1], "TRANSFERD_WEBHOOK_SECRET=whsec_") {
		t.Fatalf("ok: %v %v %v", env, r, err)
	}
	defer r.srv.Close()
	res, err := http.Post(r.url, "application/json", strings.NewReader(`{}`))
	if err != nil || res.StatusCode != http.StatusNoContent || r.received.Load() != 1 {
		t.Fatalf("the receiver answered %v (%v), counted %d", res, err, r.received.Load())
	}
	res.Body.Close()
	if r.conns.Load() != 1 || r.String() != "webhook deliveries received: 1 over 1 new connections (1.000 per delivery)" {
		t.Fatalf("the receiver counted %d connections: %s", r.conns.Load(), r)
	}
	env, r, err = webhookEnv("down")
	if err != nil || r != nil || len(env) != 2 {
		t.Fatalf("down: %v %v %v", env, r, err)
	}
	if res, err := http.Post(strings.TrimPrefix(env[0], "TRANSFERD_WEBHOOK_URL="), "application/json", strings.NewReader(`{}`)); err == nil {
		res.Body.Close()
		t.Fatal("the down endpoint answered")
	}
	if _, _, err := webhookEnv("maybe"); err == nil {
		t.Fatal("-webhooks maybe was accepted")
	}
}
