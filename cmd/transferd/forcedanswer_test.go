package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestASecondSignalStillAnswersAWaitingCreate: a create that waits
// (Prefer: wait) on a transfer its replica drives is answered when a
// second signal cuts the shutdown short, with the transfer as it is then
// (a 202: its hold never got an answer). The second signal ended the
// servers' shutdown at once and closed every connection: the create's
// wait ended with the servers, and its answer, already decided, was cut
// (the access log recorded the 202 the client never read). A client then
// does not know whether its transfer was made. The create is held at its
// audit line (heldLines) until the servers' shutdown has begun, which
// orders it after the second signal without a sleep.
func TestASecondSignalStillAnswersAWaitingCreate(t *testing.T) {
	// Longer than the test: only the create's answer ends the servers'
	// shutdown.
	answerGrace = time.Hour
	stopping := make(chan struct{})
	serversStopping = func() { close(stopping) }
	t.Cleanup(func() { answerGrace, serversStopping = time.Second, nil })
	t.Setenv("TRANSFERD_LISTEN_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_DEMO_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_DATA_DIR", t.TempDir())
	// Only the second signal ends the shutdown.
	t.Setenv("TRANSFERD_SHUTDOWN_TIMEOUT", "1h")
	logs := newLogWatch()
	held := &heldLines{to: logs, match: `"audit":"create"`, reached: make(chan struct{}), release: stopping}
	ctx, signal := context.WithCancel(context.Background())
	force, again := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(withForce(ctx, force), nil, io.Discard, held) }()
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { signal(); again(); <-done }) })
	api := "http://" + logs.wait(t, msg("listening"))["addr"].(string)
	sim := logs.wait(t, func(m map[string]any) bool { return m["simulator"] != nil })["simulator"].(string)

	send(t, "POST", sim+"/sim/netsapiens/calls", `{"domain":"TEST","user":"1000"}`)
	// The provider answers nothing from now on: the transfer's hold
	// waits, so does the create, and so does the engine's shutdown.
	if resp, _ := send(t, "POST", sim+"/sim/netsapiens/faults", `{"latency":"1h"}`); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("fault: %s", resp.Status)
	}
	type answer struct {
		status int
		body   map[string]any
		err    error
	}
	created := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("POST", api+"/v1/transfers", strings.NewReader(
			`{"provider":"netsapiens","call":{"domain":"TEST","user":"1000"},"target":"1010","completion":"manual"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Prefer", "wait=60")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			created <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		a := answer{status: resp.StatusCode}
		a.err = json.NewDecoder(resp.Body).Decode(&a.body)
		created <- a
	}()
	// The transfer saved, its create is held before its wait.
	<-held.reached
	// The transfer's first request to the provider waits for its answer:
	// the engine's shutdown cannot end before the second signal.
	for inFlight := false; !inFlight; {
		req, _ := http.NewRequest("GET", sim+"/sim/netsapiens/requests", nil)
		rr, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var reqs []struct{ Operation string }
		err = json.NewDecoder(rr.Body).Decode(&reqs)
		rr.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		// The simulator records each API request as it arrives (its
		// control requests, the call placed above, are not).
		inFlight = len(reqs) > 0
	}
	signal()
	logs.wait(t, func(m map[string]any) bool {
		s, _ := m["message"].(string)
		return strings.HasPrefix(s, "shutting down")
	})
	select {
	case a := <-created:
		t.Fatalf("the create answered %d %v, %v before the second signal", a.status, a.body, a.err)
	default:
	}
	// The servers' shutdown lets the create go on; its wait, begun
	// once every wait was told to end, ends at once.
	again()
	if err := <-done; err == nil {
		t.Error("a run cut short by a second signal returned nil")
	}
	once.Do(func() {})
	a := <-created
	if a.err != nil || a.status != http.StatusAccepted || a.body["id"] == nil {
		t.Fatalf("the create got %d %v, %v; want 202 with the transfer", a.status, a.body, a.err)
	}
}

// heldLines passes log lines on to to, except the first holding match:
// that one is held (reached closed) until release is closed.
type heldLines struct {
	to      io.Writer
	match   string
	once    sync.Once
	reached chan struct{}
	release <-chan struct{}
}

func (h *heldLines) Write(p []byte) (int, error) {
	if strings.Contains(string(p), h.match) {
		h.once.Do(func() {
			close(h.reached)
			<-h.release
		})
	}
	return h.to.Write(p)
}
