package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestAHeaderThatMaySayOneThingSentTwiceIsRefused: transferd read the
// first of two Authorization, Idempotency-Key or Content-Type headers and
// ignored the second, where a proxy, gateway or filter in front of it may
// read the other: a request authenticated by the proxy under one key ran
// under another, a retry keyed by the other key acted twice, a body a
// filter skipped as text/plain was run as JSON. Each is refused, the
// refusal says which header, and nothing starts. Prefer may come twice:
// RFC 7240 says the first wait counts.
func TestAHeaderThatMaySayOneThingSentTwiceIsRefused(t *testing.T) {
	e := newEnv(t)
	body := createBody("3000", "auto")
	for _, c := range []struct {
		name    string
		headers [][2]string
		status  int
		problem string
		detail  string
	}{
		{"two Authorization headers of two keys",
			[][2]string{{"Authorization", "Bearer " + writeKey}, {"Authorization", "Bearer " + otherWriteKey}, {"Content-Type", jsonCT}},
			http.StatusUnauthorized, "unauthorized", "send one Authorization header"},
		{"one Authorization header twice",
			[][2]string{{"Authorization", "Bearer " + writeKey}, {"Authorization", "Bearer " + writeKey}, {"Content-Type", jsonCT}},
			http.StatusUnauthorized, "unauthorized", "send one Authorization header"},
		{"an empty Authorization header and a key",
			[][2]string{{"Authorization", ""}, {"Authorization", "Bearer " + writeKey}, {"Content-Type", jsonCT}},
			http.StatusUnauthorized, "unauthorized", "send one Authorization header"},
		{"two Idempotency-Keys",
			[][2]string{{"Authorization", "Bearer " + writeKey}, {"Idempotency-Key", "k-1"}, {"Idempotency-Key", "k-2"}, {"Content-Type", jsonCT}},
			http.StatusBadRequest, "validation-error", "is given more than once"},
		{"two Content-Types",
			[][2]string{{"Authorization", "Bearer " + writeKey}, {"Content-Type", jsonCT}, {"Content-Type", "text/plain"}},
			http.StatusUnsupportedMediaType, "unsupported-media-type", "send one Content-Type"},
		{"an empty Content-Type and another",
			[][2]string{{"Authorization", "Bearer " + writeKey}, {"Content-Type", ""}, {"Content-Type", jsonCT}},
			http.StatusUnsupportedMediaType, "unsupported-media-type", "send one Content-Type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(context.Background(), "POST", e.srv.URL+"/v1/transfers", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range c.headers {
				req.Header.Add(h[0], h[1])
			}
			res, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if res.StatusCode != c.status {
				t.Fatalf("answered %d, want %d:\n%s", res.StatusCode, c.status, got)
			}
			var p struct {
				Type   string `json:"type"`
				Detail string `json:"detail"`
			}
			if err := json.Unmarshal(got, &p); err != nil || !strings.HasSuffix(p.Type, "#"+c.problem) || !strings.Contains(p.Detail, c.detail) {
				t.Errorf("problem %s %q, want %s saying %q (%v):\n%s", p.Type, p.Detail, c.problem, c.detail, err, got)
			}
			if res.Header.Get("X-Request-Id") == "" {
				t.Error("the refusal carries no X-Request-Id")
			}
		})
	}
	if calls := e.fake.Calls(); len(calls) != 0 {
		t.Fatalf("a refused create reached the provider: %v", calls)
	}
	if list := e.do(t, exchange{method: "GET", path: "/v1/transfers"}, false); !strings.Contains(string(list.body), `"items":[]`) {
		t.Fatalf("a refused create saved a transfer: %s", list.body)
	}

	// Prefer twice: the first wait counts, as RFC 7240 §2 says.
	req, err := http.NewRequestWithContext(context.Background(), "POST", e.srv.URL+"/v1/transfers", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+writeKey)
	req.Header.Set("Content-Type", jsonCT)
	req.Header.Add("Prefer", "wait=30")
	req.Header.Add("Prefer", "wait=0")
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if res.StatusCode != http.StatusCreated || res.Header.Get("Preference-Applied") != "wait=30" {
		t.Fatalf("a create with Prefer: wait=30 then wait=0 answered %d, Preference-Applied %q, want 201 after waiting 30 s at most:\n%s",
			res.StatusCode, res.Header.Get("Preference-Applied"), got)
	}
}
