package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// the key's base64 body (which must never be logged).
func selfSigned(t *testing.T) (certFile, keyFile, keyBody string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "transferd-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(keyPEM), "\n")
	return certFile, keyFile, lines[1]
}

func sha(key string) string {
	s := sha256.Sum256([]byte(key))
	return "sha256:" + hex.EncodeToString(s[:])
}

func TestStartRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no keys outside demo mode", map[string]string{"TRANSFERD_NETSAPIENS_BASE_URL": "https://pbx.example/ns-api/v2", "TRANSFERD_NETSAPIENS_API_KEY": "k"},
			"TRANSFERD_AUTH=none"},
		{"keys and a tenants file", map[string]string{"TRANSFERD_API_KEYS": "a-key-of-sixteen-chars", "TRANSFERD_TENANTS_FILE": "/nonexistent"},
			"TRANSFERD_API_KEYS and TRANSFERD_TENANTS_FILE"},
		{"credentials in a provider URL", map[string]string{"TRANSFERD_NETSAPIENS_BASE_URL": "https://u:TopSecretPw@pbx.example/ns-api/v2", "TRANSFERD_NETSAPIENS_API_KEY": "k", "TRANSFERD_AUTH": "none"},
			"must not carry credentials"},
		{"public URL without a callback secret", map[string]string{"TRANSFERD_NETSAPIENS_BASE_URL": "https://pbx.example/ns-api/v2", "TRANSFERD_NETSAPIENS_API_KEY": "k", "TRANSFERD_AUTH": "none", "TRANSFERD_PUBLIC_URL": "https://t.example"},
			"TRANSFERD_CALLBACK_SECRET"},
		{"a short key", map[string]string{"TRANSFERD_API_KEYS": "short"}, "at least 16"},
		{"an accepted callback secret without a signing one", map[string]string{"TRANSFERD_CALLBACK_SECRET_ACCEPTED": "accepted-TopSecretPw-0123456789abcdef"},
			"TRANSFERD_CALLBACK_SECRET_ACCEPTED: needs TRANSFERD_CALLBACK_SECRET"},
		{"a short accepted callback secret", map[string]string{"TRANSFERD_CALLBACK_SECRET": "callback-secret-0123456789abcdef0123",
			"TRANSFERD_CALLBACK_SECRET_ACCEPTED": "TopSecretPw"}, "TRANSFERD_CALLBACK_SECRET_ACCEPTED: must be at least 32 bytes"},
		{"the signing secret accepted", map[string]string{"TRANSFERD_CALLBACK_SECRET": "callback-TopSecretPw-0123456789abcdef",
			"TRANSFERD_CALLBACK_SECRET_ACCEPTED": "callback-TopSecretPw-0123456789abcdef"}, "TRANSFERD_CALLBACK_SECRET_ACCEPTED: is TRANSFERD_CALLBACK_SECRET"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("TRANSFERD_DATA_DIR", t.TempDir())
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			err := run(context.Background(), nil, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "TopSecretPw") {
				t.Errorf("the error shows a password: %v", err)
			}
		})
	}
}

func TestAuthNoneWarnsAtStart(t *testing.T) {
	t.Setenv("TRANSFERD_LISTEN_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_NETSAPIENS_BASE_URL", "http://127.0.0.1:1/ns-api/v2")
	t.Setenv("TRANSFERD_NETSAPIENS_API_KEY", "k")
	t.Setenv("TRANSFERD_AUTH", "none")
	t.Setenv("TRANSFERD_DATA_DIR", t.TempDir())
	logs, stop := runInBackground()
	logs.wait(t, msg("listening"))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	warned := false
	for _, m := range logs.all() {
		if m["level"] == "warn" && strings.HasPrefix(fmt.Sprint(m["message"]), "THE API IS OPEN") {
			warned = true
		}
	}
	if !warned {
		t.Error("TRANSFERD_AUTH=none started without the warning")
	}
}

// With a tenants file, the operations routes served on the API listener
// (no TRANSFERD_ADMIN_ADDR) tell any tenant of every other: transferd
// starts, as it did, but warns of what is exposed and of the setting that
// moves it; with TRANSFERD_ADMIN_ADDR it does not warn.
func TestTenantsWithoutAnAdminListenerWarnAtStart(t *testing.T) {
	acme := newTenantSim(t, "nsd_AcmeTopSecretValue", "ACME")
	file := fmt.Sprintf(`tenants:
  - name: acme
    keys: [{name: acme-crm, hash: "%s", scope: write}]
    providers:
      netsapiens: {base_url: "%s/ns-api/v2", api_key: {env: ACME_NS_KEY}}
`, sha("acme-api-key-0000001"), acme.srv.URL)
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		admin string
		warns bool
	}{{"", true}, {"127.0.0.1:0", false}} {
		t.Run("TRANSFERD_ADMIN_ADDR="+tc.admin, func(t *testing.T) {
			t.Setenv("ACME_NS_KEY", acme.key)
			t.Setenv("TRANSFERD_TENANTS_FILE", path)
			t.Setenv("TRANSFERD_LISTEN_ADDR", "127.0.0.1:0")
			t.Setenv("TRANSFERD_ADMIN_ADDR", tc.admin)
			t.Setenv("TRANSFERD_DATA_DIR", t.TempDir())
			logs, stop := runInBackground()
			// Logged before the listeners are.
			logs.wait(t, func(m map[string]any) bool { return m["message"] == "listening" && m["listener"] == "api" })
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			var warning map[string]any
			for _, m := range logs.all() {
				if strings.Contains(fmt.Sprint(m["message"]), "TRANSFERD_ADMIN_ADDR") {
					warning = m
				}
			}
			switch {
			case tc.warns && warning == nil:
				t.Fatal("started with a tenants file and the operations routes on the API listener, without a warning")
			case tc.warns && (warning["level"] != "warn" || !strings.Contains(fmt.Sprint(warning["message"]), "/status/providers") ||
				!strings.Contains(fmt.Sprint(warning["message"]), "/metrics")):
				t.Errorf("the warning %v: want level warn, naming /status/providers and /metrics", warning)
			case !tc.warns && warning != nil:
				t.Errorf("warned with the operations routes on a listener of their own: %v", warning)
			}
		})
	}
}

// tenantSim is one tenant's NetSapiens server.
type tenantSim struct {
	sim    *nssim.Sim
	srv    *httptest.Server
	key    string
	domain string
}

func newTenantSim(t *testing.T, key, domain string) *tenantSim {
	t.Helper()
	sim := nssim.New(nssim.Config{APIKeys: map[string]nssim.KeyScope{key: {Domain: domain}},
		DefaultBehaviour: nssim.Behaviour{Mode: nssim.ModeAnswer}})
	t.Cleanup(sim.Close)
	mux := http.NewServeMux()
	mux.Handle("/ns-api/v2/", http.StripPrefix("/ns-api/v2", sim.APIHandler()))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &tenantSim{sim: sim, srv: srv, key: key, domain: domain}
}

// Two tenants, each with its own NetSapiens server and key, run transfers
// at the same time in one transferd; each server sees only its tenant's
// requests, with its tenant's key; each tenant sees only its transfers; the
// secrets of the tenants file reach no log line; split listeners serve
// the API over TLS, callbacks and metrics apart.
func TestTwoTenantsWithTheirOwnNetSapiens(t *testing.T) {
	acme := newTenantSim(t, "nsd_AcmeTopSecretValue", "ACME")
	beta := newTenantSim(t, "nsd_BetaTopSecretValue", "BETA")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "beta-ns-key"), []byte(beta.key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := fmt.Sprintf(`tenants:
  - name: acme
    keys: [{name: acme-crm, hash: "%s", scope: write}]
    providers:
      netsapiens: {base_url: "%s/ns-api/v2", api_key: {env: ACME_NS_KEY}, request_budget: 1000}
    allow: {domains: [acme]}
  - name: beta
    keys: [{name: beta-crm, hash: "%s", scope: write}]
    providers:
      netsapiens: {base_url: "%s/ns-api/v2", api_key: {file: %s}}
`, sha("acme-api-key-0000001"), acme.srv.URL, sha("beta-api-key-0000001"), beta.srv.URL, filepath.Join(dir, "beta-ns-key"))
	path := filepath.Join(dir, "tenants.yaml")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, keyBody := selfSigned(t)
	t.Setenv("ACME_NS_KEY", acme.key)
	t.Setenv("TRANSFERD_TENANTS_FILE", path)
	t.Setenv("TRANSFERD_LISTEN_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_CALLBACK_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_ADMIN_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_TLS_CERT_FILE", certFile)
	t.Setenv("TRANSFERD_TLS_KEY_FILE", keyFile)
	t.Setenv("TRANSFERD_POLL_INTERVAL", "5ms")
	t.Setenv("TRANSFERD_POLL_MAX_INTERVAL", "20ms")
	t.Setenv("TRANSFERD_DATA_DIR", t.TempDir())
	logs, stop := runInBackground()
	addr := func(name string) string {
		return logs.wait(t, func(m map[string]any) bool { return m["message"] == "listening" && m["listener"] == name })["addr"].(string)
	}
	apiURL, adminURL, cbURL := "https://"+addr("api"), "https://"+addr("admin"), "https://"+addr("callbacks")
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	// Each tenant's account is credential-checked at start, with its own
	// key on its own server.
	for _, account := range []string{"acme/netsapiens", "beta/netsapiens"} {
		logs.wait(t, func(m map[string]any) bool {
			return m["message"] == "provider credential check" && m["account"] == account && m["credentials"] == "ok"
		})
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	call := func(method, url, key, body string, hdr ...string) (int, map[string]any) {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(res.Body).Decode(&out)
		return res.StatusCode, out
	}

	// Both tenants transfer at once, each on its own server.
	tenants := []struct {
		sim *tenantSim
		key string
	}{{acme, "acme-api-key-0000001"}, {beta, "beta-api-key-0000001"}}
	ids := make([]string, len(tenants))
	var wg sync.WaitGroup
	for i, tn := range tenants {
		if _, err := tn.sim.sim.PlaceCall(nssim.InboundCall{Domain: tn.sim.domain, User: "1000"}); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, tr := call("POST", apiURL+"/v1/transfers", tn.key,
				`{"provider":"netsapiens","call":{"domain":"`+tn.sim.domain+`","user":"1000"},"target":"1010"}`, "Prefer", "wait=30")
			if status != http.StatusCreated || tr["state"] != "completed" {
				t.Errorf("tenant %d: %d %v", i, status, tr)
				return
			}
			ids[i] = tr["id"].(string)
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i, tn := range tenants {
		reqs := tn.sim.sim.Requests()
		if len(reqs) == 0 {
			t.Errorf("tenant %d's server saw no request", i)
		}
		for _, r := range reqs {
			// The credential check reads the key's own domain (~).
			if !r.Authorization || r.Status == http.StatusUnauthorized || r.Status == http.StatusForbidden ||
				!strings.Contains(r.Path, "/domains/"+tn.sim.domain+"/") && !strings.HasSuffix(r.Path, "/domains/~/calls/count") {
				t.Errorf("tenant %d's server saw %s %s -> %d (authorization %v): not its tenant's, or not with its key", i, r.Method, r.Path, r.Status, r.Authorization)
			}
		}
		other := tenants[1-i]
		// Another tenant's transfer is not found, for a read and a signal.
		if status, _ := call("GET", apiURL+"/v1/transfers/"+ids[i], other.key, ""); status != http.StatusNotFound {
			t.Errorf("tenant %d's transfer read by the other: %d, want 404", i, status)
		}
		if status, _ := call("POST", apiURL+"/v1/transfers/"+ids[i]+"/cancel", other.key, ""); status != http.StatusNotFound {
			t.Errorf("tenant %d's transfer cancelled by the other: %d, want 404", i, status)
		}
		if status, _ := call("POST", apiURL+"/v1/transfers/"+ids[i]+"/complete", other.key, ""); status != http.StatusNotFound {
			t.Errorf("tenant %d's transfer completed by the other: %d, want 404", i, status)
		}
		_, list := call("GET", apiURL+"/v1/transfers", tn.key, "")
		if items, _ := list["items"].([]any); len(items) != 1 {
			t.Errorf("tenant %d lists %d transfers, want its 1", i, len(items))
		}
	}
	// acme may not reach beta's domain (allow-list), nor another tenant's.
	if status, p := call("POST", apiURL+"/v1/transfers", "acme-api-key-0000001",
		`{"provider":"netsapiens","call":{"domain":"BETA","user":"1000"},"target":"1010"}`); status != http.StatusForbidden {
		t.Errorf("acme into BETA: %d %v, want 403", status, p)
	}
	// The listeners are apart: no metrics on the API, no API on the admin.
	if status, _ := call("GET", apiURL+"/metrics", "", ""); status != http.StatusNotFound {
		t.Errorf("/metrics on the API listener: %d, want 404", status)
	}
	if status, _ := call("GET", adminURL+"/v1/transfers", "acme-api-key-0000001", ""); status != http.StatusNotFound {
		t.Errorf("/v1 on the admin listener: %d, want 404", status)
	}
	if status, _ := call("GET", apiURL+"/v1/transfers", "", ""); status != http.StatusUnauthorized {
		t.Errorf("no key: %d, want 401", status)
	}
	if status, _ := call("POST", cbURL+"/callbacks/netsapiens/"+ids[0]+"/acme.forged", "", `{"eventType":"hangup"}`); status != http.StatusNotFound {
		t.Errorf("a forged callback: %d, want 404", status)
	}
	// The checks' verdicts, per account, on the admin listener.
	if status, st := call("GET", adminURL+"/status/providers", "", ""); status != http.StatusOK {
		t.Errorf("/status/providers: %d", status)
	} else {
		var got []string
		for _, p := range st["providers"].([]any) {
			p := p.(map[string]any)
			got = append(got, fmt.Sprint(p["account"], " ", p["credentials"]))
		}
		if want := []string{"acme/netsapiens ok", "beta/netsapiens ok"}; !slices.Equal(got, want) {
			t.Errorf("/status/providers: %v, want %v", got, want)
		}
	}
	res, err := client.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(metrics), `transferd_http_auth_refused_total{reason="missing"} 1`) {
		t.Error("the refused authentication is not counted by reason")
	}
	for _, series := range []string{`transferd_provider_credentials_ok{account="acme/netsapiens",provider="netsapiens"} 1`,
		`transferd_provider_credentials_ok{account="beta/netsapiens",provider="netsapiens"} 1`} {
		if !strings.Contains(string(metrics), series) {
			t.Errorf("metrics lack %s", series)
		}
	}
	audits := 0
	for _, m := range logs.all() {
		b, _ := json.Marshal(m)
		for _, s := range []string{"TopSecretValue", "api-key-0000001", keyBody} {
			if strings.Contains(string(b), s) || strings.Contains(string(metrics), s) {
				t.Errorf("a secret (%q) in %s", s, b)
			}
		}
		if m["audit"] == "create" && m["key"] != nil && m["tenant"] != nil && m["request_id"] != nil && m["transfer_id"] != nil {
			audits++
		}
	}
	if audits != 2 {
		t.Errorf("%d audit lines for the 2 creates", audits)
	}
}
