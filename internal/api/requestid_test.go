package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// TestAnIncomingRequestIdIsKeptOnlyWhenSafe: a gateway's X-Request-Id is
// kept, answered and logged when it is 1 to 64 letters, digits, '.', '_',
// ':' or '-'; anything else (control characters, quotes and backslashes,
// bytes that are not ASCII, a list a proxy joined, an id too long, an
// empty one) is replaced by one transferd makes, so that no client can put
// what it likes into the logs or the response's headers. An id sent twice
// is replaced too: it was the first, where a proxy in front that logs the
// last put the request under the other id, as with the headers of
// TestAHeaderThatMaySayOneThingSentTwiceIsRefused.
func TestAnIncomingRequestIdIsKeptOnlyWhenSafe(t *testing.T) {
	var logs lockedBuffer
	e := newEnvLogging(t, zerolog.New(&logs))
	made := regexp.MustCompile(`^[a-v0-9]{20}$`) // an xid
	for _, c := range []struct {
		name string
		ids  []string
		kept bool
	}{
		{"a gateway's id", []string{"gw-7f3a.b_c:9"}, true},
		{"64 characters", []string{strings.Repeat("a", 64)}, true},
		{"65 characters", []string{strings.Repeat("a", 65)}, false},
		{"a tab", []string{"a\tb"}, false},
		{"quotes and a backslash", []string{`a"b\c`}, false},
		{"bytes that are not ASCII", []string{"r\xc3\xa9q"}, false},
		{"a list a proxy joined", []string{"id-1, id-2"}, false},
		{"an empty id", []string{""}, false},
		{"two ids", []string{"id-1", "id-2"}, false},
		{"one id twice", []string{"id-1", "id-1"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(logs.String())
			req, err := http.NewRequestWithContext(context.Background(), "GET", e.srv.URL+"/v1/transfers", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+readKey)
			for _, id := range c.ids {
				req.Header.Add("X-Request-Id", id)
			}
			res, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("answered %d", res.StatusCode)
			}
			answered := res.Header.Values("X-Request-Id")
			if len(answered) != 1 {
				t.Fatalf("answered X-Request-Id %q, want one", answered)
			}
			got := answered[0]
			if c.kept && got != c.ids[0] {
				t.Errorf("answered X-Request-Id %q, want the request's %q", got, c.ids[0])
			}
			if !c.kept && !made.MatchString(got) {
				t.Errorf("answered X-Request-Id %q, want one transferd made", got)
			}
			logged := false
			for _, line := range strings.Split(logs.String()[before:], "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(line), &m) != nil || m["message"] != "http request" {
					continue
				}
				logged = true
				if m["request_id"] != got {
					t.Errorf("the access log line has request_id %q, want %q: %s", m["request_id"], got, line)
				}
			}
			if !logged {
				t.Error("no access log line")
			}
		})
	}
}
