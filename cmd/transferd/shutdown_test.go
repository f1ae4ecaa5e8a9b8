package main

import (
	"bufio"
	"encoding/json"
	"fmt"
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

// TestShutdownAnswersLongPolls: a long poll (Prefer: wait) that a
// replica serves on another replica's transfer (replicas sharing
// PostgreSQL, behind one balancer) answers with the transfer as it is
// when the replica shuts down. Its wait outlived the engine's shutdown:
// the server's Shutdown waited for it for the whole
// TRANSFERD_SHUTDOWN_TIMEOUT, then cut the connection, and the client got
// no answer at all.
func TestShutdownAnswersLongPolls(t *testing.T) {
	// Replica a drives the transfer.
	apiA, simA := replicaA(t)
	// Replica b serves the long poll. One wait slot: a second long poll
	// refused with 429 tells that the first is waiting.
	t.Setenv("TRANSFERD_INSTANCE_ID", "b")
	t.Setenv("TRANSFERD_SHUTDOWN_TIMEOUT", "5s")
	t.Setenv("TRANSFERD_STEP_TIMEOUT", "5s") // the shutdown's floor
	t.Setenv("TRANSFERD_TENANT_MAX_WAITS", "1")
	logsB, stopB := runInBackground()
	t.Cleanup(func() { _ = stopB() })
	apiB := "http://" + logsB.wait(t, msg("listening"))["addr"].(string)

	send(t, "PUT", simA+"/sim/netsapiens/users/TEST/1010/behaviour", `{"mode":"never"}`)
	send(t, "POST", simA+"/sim/netsapiens/calls", `{"domain":"TEST","user":"1000"}`)
	resp, tr := send(t, "POST", apiA+"/v1/transfers",
		`{"provider":"netsapiens","call":{"domain":"TEST","user":"1000"},"target":"1010","completion":"manual"}`, "Prefer", "wait=20")
	if resp.StatusCode != http.StatusCreated || tr["state"] != "consulting" {
		t.Fatalf("%s %v", resp.Status, tr)
	}
	long := waitingLongPoll(t, apiB+"/v1/transfers/"+tr["id"].(string), 60)
	if err := stopB(); err != nil {
		t.Fatalf("b's run returned %v", err)
	}
	a := <-long
	if a.err != nil || a.status != http.StatusOK || a.body["state"] != "consulting" {
		t.Fatalf("the long poll got %d %v, %v; want 200 with the transfer, consulting", a.status, a.body, a.err)
	}
}

// pollAnswer is what a long poll got.
type pollAnswer struct {
	status int
	body   map[string]any
	err    error
}

// waitingLongPoll starts a long poll of url (Prefer: wait=wait) and
// returns its answer's channel once the poll is known to wait: it holds
// the tenant's only wait slot (TRANSFERD_TENANT_MAX_WAITS=1 in the tests
// that call it), so a probe of its own is refused 429. A poll refused
// while a probe held the slot is started again.
func waitingLongPoll(t *testing.T, url string, wait int) <-chan pollAnswer {
	t.Helper()
	poll := func() <-chan pollAnswer {
		ch := make(chan pollAnswer, 1)
		go func() {
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("Prefer", fmt.Sprintf("wait=%d", wait))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				ch <- pollAnswer{err: err}
				return
			}
			defer resp.Body.Close()
			var a pollAnswer
			a.status = resp.StatusCode
			a.err = json.NewDecoder(resp.Body).Decode(&a.body)
			ch <- a
		}()
		return ch
	}
	long := poll()
	for {
		probe, _ := send(t, "GET", url, "", "Prefer", "wait=1")
		if probe.StatusCode == http.StatusTooManyRequests {
			return long // the long poll holds the slot: it waits
		}
		select {
		case a := <-long:
			if a.status != http.StatusTooManyRequests {
				t.Fatalf("the long poll answered %d %v, %v before it could wait", a.status, a.body, a.err)
			}
			long = poll()
		default:
		}
	}
}

// replicaA starts replica a of the two-replica shutdown tests, on a fresh
// PostgreSQL database with fast polling and a 20 s shutdown, and returns
// its API's and its simulator's addresses. The environment it sets stays
// for replica b, which the test starts next under another instance id.
func replicaA(t *testing.T) (api, sim string) {
	t.Helper()
	t.Setenv("TRANSFERD_DATABASE_URL", testDatabase(t).String())
	t.Setenv("TRANSFERD_LISTEN_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_DEMO_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_POLL_INTERVAL", "5ms")
	t.Setenv("TRANSFERD_POLL_MAX_INTERVAL", "20ms")
	t.Setenv("TRANSFERD_INSTANCE_ID", "a")
	t.Setenv("TRANSFERD_SHUTDOWN_TIMEOUT", "20s")
	logsA, stopA := runInBackground()
	t.Cleanup(func() { _ = stopA() })
	apiA := "http://" + logsA.wait(t, msg("listening"))["addr"].(string)
	simA := logsA.wait(t, func(m map[string]any) bool { return m["simulator"] != nil })["simulator"].(string)
	return apiA, simA
}
