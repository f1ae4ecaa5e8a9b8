package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// A read makes no audit line: its access log line is the only record of
// it, and names the tenant and the key that made it, so that what a key
// read can be told (a leaked one's reads among them). A request refused
// authentication names neither.
func TestAccessLogNamesTenantAndKey(t *testing.T) {
	var logs lockedBuffer
	e := newEnvLogging(t, zerolog.New(&logs))
	for _, tc := range []struct {
		auth, tenant, key string
		status            int
	}{
		{"Bearer " + otherReadKey, otherTenant, "other-wallboard", http.StatusOK},
		{"Bearer " + writeKey, "default", "crm", http.StatusOK},
		{"Bearer no-such-key-0000000001", "", "", http.StatusUnauthorized},
	} {
		before := len(logs.String())
		r := e.do(t, exchange{method: "GET", path: "/v1/transfers", header: map[string]string{"Authorization": tc.auth}}, false)
		if r.status != tc.status {
			t.Fatalf("%s: %d, want %d", tc.auth, r.status, tc.status)
		}
		found := false
		for _, line := range strings.Split(logs.String()[before:], "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) != nil || m["message"] != "http request" {
				continue
			}
			found = true
			got := [2]any{m["tenant"], m["key"]}
			want := [2]any{tc.tenant, tc.key}
			if tc.tenant == "" {
				want = [2]any{nil, nil}
			}
			if got != want {
				t.Errorf("%s: the access log line names tenant and key %v, want %v: %s", tc.auth, got, want, line)
			}
		}
		if !found {
			t.Errorf("%s: no access log line", tc.auth)
		}
	}
}
