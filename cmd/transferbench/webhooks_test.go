package main

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
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
	defer r.Close()
	res, err := http.Post(r.url, "application/json", strings.NewReader(`{}`))
	if err != nil || res.StatusCode != http.StatusNoContent || r.received.Load() != 1 {
		t.Fatalf("the receiver answered %v (%v), counted %d", res, err, r.received.Load())
	}
	res.Body.Close()
	if r.conns.Load() != 1 || r.String() != "webhook deliveries received: 1 over 1 new connections (1.000 per delivery)" {
		t.Fatalf("the receiver counted %d connections: %s", r.conns.Load(), r)
	}
	// tls: the same over HTTPS, trusted through the certificate file
	// transferd is given, which the receiver's Close removes.
	env, r, err = webhookEnv("tls")
	if err != nil || r == nil || len(env) != 3 || env[0] != "SSL_CERT_FILE="+r.certFile || env[1] != "TRANSFERD_WEBHOOK_URL="+r.url || !strings.HasPrefix(r.url, "https://127.0.0.1:") {
		t.Fatalf("tls: %v %v %v", env, r, err)
	}
	pemBytes, err := os.ReadFile(r.certFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemBytes) {
		t.Fatal("the certificate file holds no certificate")
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	res, err = hc.Post(r.url, "application/json", strings.NewReader(`{}`))
	if err != nil || res.StatusCode != http.StatusNoContent || r.received.Load() != 1 || r.conns.Load() != 1 {
		t.Fatalf("the TLS receiver answered %v (%v), counted %s", res, err, r)
	}
	res.Body.Close()
	r.Close()
	if _, err := os.Stat(r.certFile); !os.IsNotExist(err) {
		t.Fatalf("the certificate file outlived the receiver: %v", err)
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
