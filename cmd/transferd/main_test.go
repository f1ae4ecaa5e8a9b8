package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// logWatch collects the service's JSON log lines and lets a test wait for
// one, without sleeping.
type logWatch struct {
	mu      sync.Mutex
	buf     []byte
	lines   []map[string]any
	changed chan struct{}
}

func newLogWatch() *logWatch { return &logWatch{changed: make(chan struct{})} }

func (l *logWatch) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		var m map[string]any
		if json.Unmarshal(l.buf[:i], &m) == nil {
			l.lines = append(l.lines, m)
		}
		l.buf = l.buf[i+1:]
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *logWatch) wait(t *testing.T, match func(map[string]any) bool) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		l.mu.Lock()
		for _, m := range l.lines {
			if match(m) {
				l.mu.Unlock()
				return m
			}
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatal("log line never appeared")
		}
	}
}

func (l *logWatch) all() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]map[string]any(nil), l.lines...)
}

func msg(s string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["message"] == s }
}

// startService runs the whole program in demo mode on free ports.
func startService(t *testing.T) (api, sim string, logs *logWatch, stop func() error) {
	t.Helper()
	t.Setenv("TRANSFERD_LISTEN_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_DEMO_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_POLL_INTERVAL", "5ms")
	t.Setenv("TRANSFERD_POLL_MAX_INTERVAL", "20ms")
	t.Setenv("TRANSFERD_SHUTDOWN_TIMEOUT", "20s")
	t.Setenv("TRANSFERD_DATA_DIR", t.TempDir())
	logs, stop = runInBackground()
	t.Cleanup(func() { _ = stop() })
	api = "http://" + logs.wait(t, msg("listening"))["addr"].(string)
	for _, m := range logs.all() {
		if s, ok := m["simulator"].(string); ok {
			sim = s
		}
	}
	if sim == "" {
		t.Fatal("demo mode did not log the simulator address")
	}
	return api, sim, logs, stop
}

// runInBackground runs the whole program, configured by the environment
// the test set, until stop, which returns what run returned (the same
// again on a later call).
func runInBackground() (logs *logWatch, stop func() error) {
	logs = newLogWatch()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, io.Discard, logs) }()
	var once sync.Once
	var err error
	return logs, func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
}

func send(t *testing.T, method, url, body string, header ...string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(data, &out)
	return resp, out
}

// demoTransfer places a simulated call to agent 1000 and transfers it to
// 1010 with Prefer: wait; it fails the test unless the transfer completed.
func demoTransfer(t *testing.T, api, sim string) (*http.Response, map[string]any) {
	t.Helper()
	if resp, _ := send(t, "POST", sim+"/sim/netsapiens/calls", `{"domain":"TEST","user":"1000"}`); resp.StatusCode != http.StatusCreated {
		t.Fatalf("placing a simulated call: %s", resp.Status)
	}
	resp, tr := send(t, "POST", api+"/v1/transfers",
		`{"provider":"netsapiens","call":{"domain":"TEST","user":"1000"},"target":"1010"}`, "Prefer", "wait=20")
	if resp.StatusCode != http.StatusCreated || tr["state"] != "completed" {
		t.Fatalf("%s %v", resp.Status, tr)
	}
	return resp, tr
}

func TestDemoModeTransfersEndToEnd(t *testing.T) {
	api, sim, logs, stop := startService(t)
	// Targets in demo mode ring for a while; this one answers at once.
	send(t, "PUT", sim+"/sim/netsapiens/users/TEST/1010/behaviour", `{"mode":"answer"}`)
	resp, tr := demoTransfer(t, api, sim)
	if loc := resp.Header.Get("Location"); loc != "/v1/transfers/"+tr["id"].(string) {
		t.Errorf("Location = %q", loc)
	}
	_, calls := send(t, "GET", sim+"/sim/netsapiens/calls?domain=TEST", "")
	_ = calls
	resp, got := send(t, "GET", api+"/v1/transfers/"+tr["id"].(string), "")
	if resp.StatusCode != http.StatusOK || got["state"] != "completed" {
		t.Fatalf("GET: %s %v", resp.Status, got)
	}
	for _, path := range []string{"/healthz", "/readyz", "/openapi.yaml"} {
		if resp, _ := send(t, "GET", api+path, ""); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s", path, resp.Status)
		}
	}
	req, _ := http.NewRequest("GET", api+"/metrics", nil)
	mresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []string{
		`transferd_transfers_total{outcome="completed",provider="netsapiens",reason="transferred"} 1`,
		`transferd_provider_request_duration_seconds_count{code="202",operation="hold",provider="netsapiens"}`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	logs.wait(t, msg("stopped"))
}

func TestShutdownLeavesNoCallerOnHold(t *testing.T) {
	t.Setenv("TRANSFERD_LOG_LEVEL", "debug") // provider requests are debug lines
	api, sim, logs, stop := startService(t)
	send(t, "PUT", sim+"/sim/netsapiens/users/TEST/1010/behaviour", `{"mode":"answer"}`)
	send(t, "POST", sim+"/sim/netsapiens/calls", `{"domain":"TEST","user":"1000"}`)
	resp, tr := send(t, "POST", api+"/v1/transfers",
		`{"provider":"netsapiens","call":{"domain":"TEST","user":"1000"},"target":"1010","completion":"manual"}`, "Prefer", "wait=20")
	if resp.StatusCode != http.StatusCreated || tr["state"] != "consulting" {
		t.Fatalf("%s %v", resp.Status, tr)
	}
	if err := stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	id := tr["id"].(string)
	end := logs.wait(t, func(m map[string]any) bool { return m["transfer_id"] == id && m["to"] == "failed" })
	if end["reason"] != "shutdown" || end["caller_restored"] != true {
		t.Fatalf("shutdown ended the transfer with %v", end)
	}
	var unheld bool
	for _, m := range logs.all() {
		if m["transfer_id"] == id && m["op"] == "unhold" && m["status"] == float64(202) {
			unheld = true
		}
	}
	if !unheld {
		t.Error("the caller was not taken off hold before exit")
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-h"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeOf(config{})
	for i := range typ.NumField() {
		if name := typ.Field(i).Tag.Get("envconfig"); name != "" && !strings.Contains(out.String(), name) {
			t.Errorf("-h does not list %s", name)
		}
	}
}

func TestBadConfigurationIsRefused(t *testing.T) {
	for name, env := range map[string][2]string{
		"bad duration":     {"TRANSFERD_CONSULT_TIMEOUT", "soon"},
		"timeout too long": {"TRANSFERD_CONSULT_TIMEOUT", "1h"},
		"key without url":  {"TRANSFERD_NETSAPIENS_API_KEY", "nsd_x"},
		"bad level":        {"TRANSFERD_LOG_LEVEL", "loud"},
		"step timeout":     {"TRANSFERD_STEP_TIMEOUT", "10ms"},
		"join hostname":    {"TRANSFERD_NETSAPIENS_JOIN_HOSTNAME", "core1.example"},
		"list limit":       {"TRANSFERD_NETSAPIENS_LIST_LIMIT", "0"},
		"webhook timeout":  {"TRANSFERD_WEBHOOK_TIMEOUT", "500ms"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(env[0], env[1])
			err := run(context.Background(), nil, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), env[0]) {
				t.Fatalf("err = %v, want it to name %s", err, env[0])
			}
		})
	}
}

func TestSecretsAreMaskedInTheConfigLog(t *testing.T) {
	t.Setenv("TRANSFERD_LISTEN_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_NETSAPIENS_BASE_URL", "http://127.0.0.1:1/ns-api/v2")
	t.Setenv("TRANSFERD_NETSAPIENS_API_KEY", "nsd_TopSecretValue")
	t.Setenv("TRANSFERD_DATA_DIR", t.TempDir())
	// The new secrets: API keys, the callback secret and a TLS key.
	t.Setenv("TRANSFERD_API_KEYS", "api-key-TopSecretValue-1,sha256:"+strings.Repeat("ab", 32))
	t.Setenv("TRANSFERD_PUBLIC_URL", "https://transferd.example.com")
	t.Setenv("TRANSFERD_CALLBACK_SECRET", "callback-TopSecretValue-0123456789abcdef")
	t.Setenv("TRANSFERD_CALLBACK_SECRET_ACCEPTED", "accepted-TopSecretValue-0123456789abcdef")
	certFile, keyFile, keyPEM := selfSigned(t)
	t.Setenv("TRANSFERD_TLS_CERT_FILE", certFile)
	t.Setenv("TRANSFERD_TLS_KEY_FILE", keyFile)
	logs, stop := runInBackground()
	logs.wait(t, msg("listening"))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, m := range logs.all() {
		b, _ := json.Marshal(m)
		if strings.Contains(string(b), "TopSecretValue") || strings.Contains(string(b), keyPEM) {
			t.Fatalf("secret in log line %s", b)
		}
	}
}

// bandwidthRequests returns the bodies of the update requests the
// Bandwidth simulator received for call id.
func bandwidthRequests(t *testing.T, sim, callID string) []map[string]any {
	t.Helper()
	resp, err := http.Get(sim + "/sim/bandwidth/requests")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var reqs []struct{ Method, Path, Body string }
	if err := json.NewDecoder(resp.Body).Decode(&reqs); err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, r := range reqs {
		if r.Method == "POST" && strings.HasSuffix(r.Path, "/calls/"+callID) {
			var m map[string]any
			if err := json.Unmarshal([]byte(r.Body), &m); err != nil {
				t.Fatalf("body %q: %v", r.Body, err)
			}
			out = append(out, m)
		}
	}
	return out
}

func placeBandwidthCall(t *testing.T, sim string) string {
	t.Helper()
	resp, body := send(t, "POST", sim+"/sim/bandwidth/calls", `{"from":"+15555550123","to":"+15555550100"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("placing a Bandwidth call: %s", resp.Status)
	}
	return body["call"].(map[string]any)["id"].(string)
}

func TestBandwidthPageExamplesThroughTheAPI(t *testing.T) {
	api, sim, _, _ := startService(t)
	for _, n := range []string{"+19192223333", "+18382947878", "+19195554444"} {
		send(t, "PUT", sim+"/sim/bandwidth/numbers/"+n+"/behaviour", `{"mode":"answer"}`)
	}
	cases := []struct {
		name    string
		options string
		want    map[string]any
	}{
		{"example 1: the transferred party's caller id", `"target":"+19192223333"`,
			map[string]any{"state": "transferring", "transferTo": "+19192223333"}},
		{"example 2: private caller id and a whisper", `"target":"+18382947878","caller_id":"private","whisper":{"sentence":"Hello! You have an incoming call"}`,
			map[string]any{"state": "transferring", "transferTo": "+18382947878", "transferCallerId": "private",
				"whisperAudio": map[string]any{"sentence": "Hello! You have an incoming call"}}},
		{"example 3: diversion stack with do-not-disturb", `"target":"+19195554444","diversion":{"treatment":"stack","reason":"do-not-disturb"}`,
			map[string]any{"state": "transferring", "transferTo": "+19195554444", "diversionTreatment": "stack", "diversionReason": "do-not-disturb"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := placeBandwidthCall(t, sim)
			resp, tr := send(t, "POST", api+"/v1/transfers",
				`{"provider":"bandwidth","mode":"announced","call":{"call_id":"`+a+`"},`+tc.options+`}`, "Prefer", "wait=20")
			if resp.StatusCode != http.StatusCreated || tr["state"] != "completed" {
				t.Fatalf("%s %v", resp.Status, tr)
			}
			got := bandwidthRequests(t, sim, a)
			if len(got) != 1 || !reflect.DeepEqual(got[0], tc.want) {
				t.Fatalf("Catapult received %v, want exactly [%v]", got, tc.want)
			}
		})
	}
}

func TestBandwidthInvalidOptionsNeverReachTheProvider(t *testing.T) {
	api, sim, _, _ := startService(t)
	a := placeBandwidthCall(t, sim)
	for body, field := range map[string]string{
		`"target":"+18382947878","diversion":{"treatment":"stack","reason":"on-vacation"}`: "diversion.reason",
		`"target":"+18382947878","diversion":{"treatment":"sideways"}`:                     "diversion.treatment",
		`"target":"+18382947878","whisper":{"sentence":"hi","voice":"HAL"}`:                "whisper.voice",
		`"target":"+18382947878","whisper":{"sentence":"hi","gender":"robot"}`:             "whisper.gender",
		`"target":"+18382947878","recording":{"enabled":true,"file_format":"ogg"}`:         "recording.file_format",
		`"target":"+18382947878","caller_id":"anonymous"`:                                  "caller_id",
		`"target":"not a number"`: "target",
	} {
		resp, problem := send(t, "POST", api+"/v1/transfers", `{"provider":"bandwidth","mode":"announced","call":{"call_id":"`+a+`"},`+body+`}`)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %s", field, resp.Status)
			continue
		}
		named := false
		for _, e := range problem["errors"].([]any) {
			named = named || e.(map[string]any)["field"] == field
		}
		if !named {
			t.Errorf("problem does not name %s: %v", field, problem)
		}
	}
	// A whisper on a NetSapiens transfer cannot be honoured: 422.
	resp, problem := send(t, "POST", api+"/v1/transfers",
		`{"provider":"netsapiens","call":{"domain":"TEST","user":"1000"},"target":"1010","whisper":{"sentence":"hi"}}`)
	if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(fmt.Sprint(problem["errors"]), "whisper") {
		t.Errorf("whisper on netsapiens: %s %v", resp.Status, problem)
	}
	resp, err := http.Get(sim + "/sim/bandwidth/requests")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var reqs []any
	_ = json.NewDecoder(resp.Body).Decode(&reqs)
	if len(reqs) != 0 {
		t.Errorf("invalid requests reached the provider: %v", reqs)
	}
}

// TRANSFERD_NETSAPIENS_JOIN_HOSTNAME reaches the adapter: on a PBX that
// wants the consult's core server in the join and ignores any other
// (the demo simulator's guesses set so), a transfer between calls on two
// cores completes, its join naming the consult's core.
func TestJoinHostnameSettingReachesTheAdapter(t *testing.T) {
	t.Setenv("TRANSFERD_NETSAPIENS_JOIN_HOSTNAME", "consult")
	api, sim, _, stop := startService(t)
	send(t, "PUT", sim+"/sim/netsapiens/users/TEST/1010/behaviour", `{"mode":"answer"}`)
	if resp, _ := send(t, "PUT", sim+"/sim/netsapiens/config/guesses", `{"hostname_match":"destination","wrong_hostname":"ignore"}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("setting the simulator's guesses: %s", resp.Status)
	}
	demoTransfer(t, api, sim)
	req, _ := http.NewRequest("GET", sim+"/sim/netsapiens/requests", nil)
	rr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var reqs []struct{ Method, Path, Body string }
	err = json.NewDecoder(rr.Body).Decode(&reqs)
	rr.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var joins []string
	for _, r := range reqs {
		if r.Method == http.MethodPatch && strings.HasSuffix(r.Path, "/transfer") {
			joins = append(joins, r.Body)
		}
	}
	if len(joins) != 1 || !strings.Contains(joins[0], `"hostname":"core2-sim`) {
		t.Errorf("joins %q; want one naming the consult's core (core2, the second call placed)", joins)
	}
	if err := stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
}

// TRANSFERD_NETSAPIENS_LIST_LIMIT reaches the adapter: the demo
// simulator's listings are asked for pages of that many calls.
func TestListLimitSettingReachesTheAdapter(t *testing.T) {
	t.Setenv("TRANSFERD_NETSAPIENS_LIST_LIMIT", "7")
	api, sim, _, stop := startService(t)
	send(t, "PUT", sim+"/sim/netsapiens/users/TEST/1010/behaviour", `{"mode":"answer"}`)
	demoTransfer(t, api, sim)
	req, _ := http.NewRequest("GET", sim+"/sim/netsapiens/requests", nil)
	rr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var reqs []struct{ Method, Path, Query, Operation string }
	err = json.NewDecoder(rr.Body).Decode(&reqs)
	rr.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	lists := 0
	for _, r := range reqs {
		if r.Operation == "list" {
			lists++
			if r.Query != "limit=7" {
				t.Errorf("listing %s?%s; want limit=7", r.Path, r.Query)
			}
		}
	}
	if lists == 0 {
		t.Error("no listing was read")
	}
	if err := stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
}
