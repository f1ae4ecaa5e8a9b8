package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// A second SIGTERM during a graceful shutdown ends the process now, with
// exit status 1 and a line in the log, as a supervisor signalling again or
// an operator pressing Ctrl-C twice expects. It was caught and dropped:
// the process went on waiting for up to TRANSFERD_SHUTDOWN_TIMEOUT. The
// test re-runs itself as transferd (main); a request whose body never
// comes holds its shutdown.
func TestMainExitsOnASecondSignal(t *testing.T) {
	if os.Getenv("TRANSFERD_TEST_RUN_MAIN") == "1" {
		os.Args = os.Args[:1]
		main()
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMainExitsOnASecondSignal$", "-test.count=1")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TRANSFERD_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "TRANSFERD_TEST_RUN_MAIN=1", "TRANSFERD_DATA_DIR="+t.TempDir(),
		"TRANSFERD_LISTEN_ADDR=127.0.0.1:0", "TRANSFERD_DEMO_ADDR=127.0.0.1:0",
		// Long enough that only the second signal can end the wait.
		"TRANSFERD_SHUTDOWN_TIMEOUT=30s", "TRANSFERD_READ_TIMEOUT=2m", "TRANSFERD_BODY_READ_TIMEOUT=2m")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan map[string]any, 100)
	var last string
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			last = sc.Text()
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				lines <- m
			}
		}
	}()
	var logged []map[string]any
	waitFor := func(match func(map[string]any) bool) map[string]any {
		t.Helper()
		for m := range lines {
			logged = append(logged, m)
			if match(m) {
				return m
			}
		}
		t.Fatalf("transferd exited before the log line; stderr ended with %s", last)
		return nil
	}
	addr := waitFor(func(m map[string]any) bool { return m["message"] == "listening" && m["listener"] == "api" })["addr"].(string)

	// A create whose body never comes: its handler waits in the body's
	// read, which the 100 Continue tells has begun.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("POST /v1/transfers HTTP/1.1\r\nHost: transferd\r\nContent-Type: application/json\r\n" +
		"Content-Length: 100\r\nExpect: 100-continue\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if status, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.HasPrefix(status, "HTTP/1.1 100") {
		t.Fatalf("the create answered %q, %v; want 100 Continue", status, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(func(m map[string]any) bool {
		s, _ := m["message"].(string)
		return strings.HasPrefix(s, "shutting down")
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for m := range lines {
		logged = append(logged, m)
	}
	<-scanned
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Errorf("transferd after a second SIGTERM: %v, want exit status 1", err)
	}
	if want := "transferd: a second signal cut the shutdown short"; last != want {
		t.Errorf("the last line on stderr is %q, want %q", last, want)
	}
	said := false
	for _, m := range logged {
		s, _ := m["message"].(string)
		said = said || strings.HasPrefix(s, "second signal: stopping now")
	}
	if !said {
		t.Error("the second signal was not logged")
	}
}
