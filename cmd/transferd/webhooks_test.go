package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestWebhooksEndToEnd: with TRANSFERD_WEBHOOK_URL and a rotation's pair
// of secrets, every event of a transfer reaches the receiver signed by
// both (checked by plain HMAC), in seq order, and the shutdown drains
// what is still due; the logs show neither secret nor the URL's tokens
// (in its query and in its path).
func TestWebhooksEndToEnd(t *testing.T) {
	old := "whsec_" + base64.StdEncoding.EncodeToString([]byte("old-secret-of-thirty-two-bytes!!"))
	next := "whsec_" + base64.StdEncoding.EncodeToString([]byte("new-secret-of-thirty-two-bytes!!"))
	var (
		mu  sync.Mutex
		got []map[string]any
	)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		for _, sec := range []string{old, next} {
			key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sec, "whsec_"))
			mac := hmac.New(sha256.New, key)
			fmt.Fprintf(mac, "%s.%s.%s", r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), body)
			want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
			if !strings.Contains(" "+r.Header.Get("webhook-signature")+" ", " "+want+" ") {
				t.Errorf("no signature by one of the secrets: %q", r.Header.Get("webhook-signature"))
			}
		}
		var ev map[string]any
		if err := json.Unmarshal(body, &ev); err != nil || ev["id"] != r.Header.Get("webhook-id") {
			t.Errorf("payload %s: %v", body, err)
		}
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	t.Setenv("TRANSFERD_WEBHOOK_URL", rcv.URL+"/hooks/path-token?token=receiver-token")
	t.Setenv("TRANSFERD_WEBHOOK_SECRET", old+","+next)
	api, sim, logs, stop := startService(t)
	send(t, "PUT", sim+"/sim/netsapiens/users/TEST/1010/behaviour", `{"mode":"answer"}`)
	_, tr := demoTransfer(t, api, sim)
	_, history := send(t, "GET", api+"/v1/transfers/"+tr["id"].(string)+"/events", "")
	if err := stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	want, _ := history["items"].([]any)
	mu.Lock()
	defer mu.Unlock()
	if len(want) < 3 || len(got) != len(want) {
		t.Fatalf("%d webhooks arrived, the transfer has %d events", len(got), len(want))
	}
	for i, ev := range got {
		w := want[i].(map[string]any)
		if ev["id"] != w["id"] || ev["seq"] != float64(i+1) || ev["transfer_id"] != tr["id"] {
			t.Errorf("webhook %d: %v, want event %v", i, ev, w)
		}
	}
	if got[len(got)-1]["type"] != "transfer.completed" {
		t.Errorf("the last webhook is %v, want transfer.completed", got[len(got)-1]["type"])
	}
	for _, m := range logs.all() {
		line := fmt.Sprint(m)
		if strings.Contains(line, "receiver-token") || strings.Contains(line, "path-token") || strings.Contains(line, strings.TrimPrefix(old, "whsec_")) {
			t.Errorf("a log line shows a webhook secret or the URL's token: %s", line)
		}
	}
}

// TestWebhookURLPrintsSchemeAndHostOnly: TRANSFERD_WEBHOOK_URL prints (in
// the configuration log and the "webhooks to" line) as its scheme and host
// and the length of the rest: a token may be in the path (Slack, Discord)
// as well as in the query or the user information.
func TestWebhookURLPrintsSchemeAndHostOnly(t *testing.T) {
	for raw, want := range map[string]string{
		"https://hooks.slack.com/services/T0001/B0001/slack-token": "https://hooks.slack.com (path and query hidden: 33 characters)",
		"https://discord.com/api/webhooks/1234/discord-token":      "https://discord.com (path and query hidden: 32 characters)",
		"https://crm.example:8443/hooks?token=query-token":         "https://crm.example:8443 (path and query hidden: 24 characters)",
		"https://user:user-token@crm.example/":                     "https://crm.example",
		"http://crm.example":                                       "http://crm.example",
		"not a url":                                                "(not an absolute URL)",
		"":                                                         "",
	} {
		got := webhookURL(raw).String()
		if got != want {
			t.Errorf("%q prints as %q, want %q", raw, got, want)
		}
		if strings.Contains(got, "token") {
			t.Errorf("%q prints a token: %q", raw, got)
		}
	}
}

// TestWebhookTimeoutReachesTheDispatcher: TRANSFERD_WEBHOOK_TIMEOUT is
// the dispatcher's attempt timeout (and so its claims' lease), read from
// the environment as the program reads it.
func TestWebhookTimeoutReachesTheDispatcher(t *testing.T) {
	for _, c := range []struct {
		env  string
		want time.Duration
	}{{"", 10 * time.Second}, {"3s", 3 * time.Second}} {
		env, want := c.env, c.want
		if env != "" {
			t.Setenv("TRANSFERD_WEBHOOK_TIMEOUT", env)
		}
		cfg, err := loadConfig()
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.webhookConfig("r1", time.Now).Timeout; got != want {
			t.Errorf("TRANSFERD_WEBHOOK_TIMEOUT=%q: the dispatcher's timeout is %s, want %s", env, got, want)
		}
	}
}

// TestWebhookUnconfiguredGraceReachesTheDispatcher:
// TRANSFERD_WEBHOOK_UNCONFIGURED_GRACE is how long the dispatcher keeps a
// removed endpoint's deliveries before giving them up unsent; it had no
// variable, and a rolling change of the tenants file slower than 10
// minutes could not be given the time it takes.
func TestWebhookUnconfiguredGraceReachesTheDispatcher(t *testing.T) {
	for _, c := range []struct {
		env  string
		want time.Duration
	}{{"", 10 * time.Minute}, {"1m", time.Minute}, {"2h", 2 * time.Hour}, {"24h", 24 * time.Hour}} {
		t.Run(c.env, func(t *testing.T) {
			if c.env != "" {
				t.Setenv("TRANSFERD_WEBHOOK_UNCONFIGURED_GRACE", c.env)
			}
			cfg, err := loadConfig()
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.validate(); err != nil {
				t.Fatalf("validate = %v", err)
			}
			if got := cfg.webhookConfig("r1", time.Now).UnconfiguredGrace; got != c.want {
				t.Errorf("TRANSFERD_WEBHOOK_UNCONFIGURED_GRACE=%q: the dispatcher's grace is %s, want %s", c.env, got, c.want)
			}
		})
	}
}

// TestWebhookUnconfiguredGraceOutOfBoundsIsRefused: a grace of 0 would be
// read by the dispatcher as its 10m default, and one under a minute gives
// a replica with the old configuration (a reload on its way) too little
// time to send what it still can; one over a day outlives the default
// TRANSFERD_WEBHOOK_MAX_AGE that ends a delivery anyway. Each is refused
// at start, by name, with the bounds.
func TestWebhookUnconfiguredGraceOutOfBoundsIsRefused(t *testing.T) {
	for _, v := range []string{"0", "-1m", "30s", "25h"} {
		t.Run(v, func(t *testing.T) {
			t.Setenv("TRANSFERD_WEBHOOK_UNCONFIGURED_GRACE", v)
			cfg, err := loadConfig()
			if err != nil {
				t.Fatal(err)
			}
			err = cfg.validate()
			if err == nil || !strings.Contains(err.Error(), "TRANSFERD_WEBHOOK_UNCONFIGURED_GRACE: must be from 1m to 24h") {
				t.Errorf("validate = %v, want TRANSFERD_WEBHOOK_UNCONFIGURED_GRACE refused with its bounds", err)
			}
		})
	}
}
