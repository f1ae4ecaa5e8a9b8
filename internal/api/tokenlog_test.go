package api_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// lockedBuffer is a log sink the server's goroutines may share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCallbackTokenIsNotLogged: a provider callback is
// authenticated by the unguessable token in its URL, which stands in for
// an API key ("provider callbacks carry an unguessable token instead of a
// key"). The access log wrote every request's path, and with it the
// token, for anyone who reads the logs to replay.
func TestCallbackTokenIsNotLogged(t *testing.T) {
	var logs lockedBuffer
	srv := newEnvLogging(t, zerolog.New(&logs)).srv
	const id = "tr_01M7Z6DTQ5JMRNV7E9Z0C1HT0H"
	token := testCallbackToken("default", id)
	_, mac, _ := strings.Cut(token, ".")
	// The callback itself, then the same with a trailing slash or a
	// segment more (a proxy's doing; answered 404): the token must not be
	// logged either way (the first redaction kept only the last segment
	// out, found by review).
	for _, suffix := range []string{"", "/", "/x"} {
		before := len(logs.String())
		res, err := srv.Client().Post(srv.URL+"/callbacks/netsapiens/"+id+"/"+token+suffix, "application/json",
			strings.NewReader(`{"eventType":"hangup"}`))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if suffix == "" && res.StatusCode != http.StatusNoContent {
			t.Fatalf("callback: %d", res.StatusCode)
		}
		// The access log line is written before the response is finished.
		logged := logs.String()[before:]
		for _, line := range strings.Split(logged, "\n") {
			if strings.Contains(line, mac) {
				t.Errorf("path .../<token>%s (answered %d): the callback token is in the log:\n%s", suffix, res.StatusCode, line)
			}
		}
		// The request is still logged, with what identifies it.
		if !strings.Contains(logged, `"path":"/callbacks/netsapiens/`+id+`/redacted"`) {
			t.Errorf("path .../<token>%s: no access log line names the callback's transfer:\n%s", suffix, logged)
		}
	}
}

// A callback whose path comes with something before /callbacks/ (a
// TRANSFERD_PUBLIC_URL with a path prefix that the gateway in front does
// not strip, or a doubled slash) is answered 404, as any unknown path,
// and its token is not logged either: the provider sends the token it
// holds with every event, and each one was written to the access log.
func TestCallbackTokenAfterAPrefixIsNotLogged(t *testing.T) {
	var logs lockedBuffer
	srv := newEnvLogging(t, zerolog.New(&logs)).srv
	const id = "tr_01M7Z6DTQ5JMRNV7E9Z0C1HT0H"
	token := testCallbackToken("default", id)
	_, mac, _ := strings.Cut(token, ".")
	for _, prefix := range []string{"/", "/transferd", "/hooks/v1"} {
		for _, rest := range []string{"/callbacks/netsapiens/" + id + "/" + token, "/callbacks/netsapiens/subscriptions/acme.example/" + token} {
			before := len(logs.String())
			res, err := srv.Client().Post(srv.URL+prefix+rest, "application/json", strings.NewReader(`{"eventType":"hangup"}`))
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusNotFound {
				t.Errorf("%s%s: %d, want 404", prefix, rest, res.StatusCode)
			}
			for _, line := range strings.Split(logs.String()[before:], "\n") {
				if strings.Contains(line, mac) {
					t.Errorf("%s before the callback path: the callback token is in the log:\n%s", prefix, line)
				}
			}
		}
	}
}
