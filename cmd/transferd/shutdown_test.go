package main

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestShutdownEndsEventStreams: an open event stream ends when transferd
// shuts down, after the events of its shutdown (a consult abandoned, the
// caller taken back), with a clean end of the response. Left open, a
// stream's client never leaves by itself: the server's Shutdown waited
// for it for the whole TRANSFERD_SHUTDOWN_TIMEOUT, then cut the
// connection mid-response, so that any replica with an event stream open
// took its full shutdown timeout to stop.
func TestShutdownEndsEventStreams(t *testing.T) {
	api, sim, _, stop := startService(t)
	resp, err := http.Get(api + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := bufio.NewReader(resp.Body)
	// The stream is open once its retry line arrives.
	if line, err := body.ReadString('\n'); err != nil || !strings.HasPrefix(line, "retry:") {
		t.Fatalf("stream began with %q, %v", line, err)
	}
	send(t, "PUT", sim+"/sim/netsapiens/users/TEST/1010/behaviour", `{"mode":"answer"}`)
	send(t, "POST", sim+"/sim/netsapiens/calls", `{"domain":"TEST","user":"1000"}`)
	cresp, tr := send(t, "POST", api+"/v1/transfers",
		`{"provider":"netsapiens","call":{"domain":"TEST","user":"1000"},"target":"1010","completion":"manual"}`, "Prefer", "wait=20")
	if cresp.StatusCode != http.StatusCreated || tr["state"] != "consulting" {
		t.Fatalf("%s %v", cresp.Status, tr)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	rest, err := io.ReadAll(body)
	if err != nil {
		t.Fatalf("the event stream was cut (%v) instead of ending, after %d bytes", err, len(rest))
	}
	if !strings.Contains(string(rest), "event: transfer.failed") || !strings.Contains(string(rest), tr["id"].(string)) {
		t.Errorf("the stream ended without the shutdown's end of transfer %s", tr["id"])
	}
	if err := <-stopped; err != nil {
		t.Fatalf("run returned %v", err)
	}
}
