package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Two transferd processes given one TRANSFERD_INSTANCE_ID on one
// database: the second takes the name's transfers over as it starts, as
// a restart does; the first finds its name taken at its next heartbeat
// and exits with an error that names the setting, while the second serves
// on, ready.
func TestTwoProcessesUnderOneInstanceIDTheFirstExits(t *testing.T) {
	t.Setenv("TRANSFERD_DATABASE_URL", testDatabase(t).String())
	t.Setenv("TRANSFERD_LISTEN_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_DEMO_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_INSTANCE_ID", "twin")
	t.Setenv("TRANSFERD_LEASE_TTL", "2s") // a heartbeat every 500 ms
	logsA := newLogWatch()
	ctxA, stopA := context.WithCancel(context.Background())
	doneA := make(chan error, 1)
	go func() { doneA <- run(ctxA, nil, io.Discard, logsA) }()
	t.Cleanup(func() {
		stopA()
		select {
		case <-doneA:
		default:
		}
	})
	logsA.wait(t, msg("listening"))

	logsB, stopB := runInBackground()
	t.Cleanup(func() { _ = stopB() })
	apiB := "http://" + logsB.wait(t, msg("listening"))["addr"].(string)
	logsB.wait(t, func(m map[string]any) bool {
		return strings.HasPrefix(m["message"].(string), "the heartbeat of an earlier process under this replica's name was still live")
	})

	select {
	case err := <-doneA:
		if err == nil || !strings.Contains(err.Error(), `TRANSFERD_INSTANCE_ID="twin"`) {
			t.Fatalf("the first process exited with %v, want an error naming TRANSFERD_INSTANCE_ID=\"twin\"", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the first process did not exit after the second took its name over")
	}
	resp, err := http.Get(apiB + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the second process's /readyz: %s, want 200", resp.Status)
	}
	if err := stopB(); err != nil {
		t.Errorf("the second process's shutdown: %v", err)
	}
}
