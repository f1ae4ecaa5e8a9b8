package main

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestLongPollsOnOthersTransfersAnswerAsTheShutdownBegins: a long poll
// that a replica serves on another replica's transfer answers as the
// replica's shutdown begins, not once its engine has shut down. It ended
// with the servers, after the engine: an engine held by a provider that
// does not answer took the whole TRANSFERD_SHUTDOWN_TIMEOUT, the servers
// had no time left, and the long poll was cut without an answer. Here
// replica b's own transfer holds its engine's shutdown until a second
// signal.
func TestLongPollsOnOthersTransfersAnswerAsTheShutdownBegins(t *testing.T) {
	// a's consult rings on for longer than the test.
	t.Setenv("TRANSFERD_CONSULT_TIMEOUT", "5m")
	apiA, simA := replicaA(t)
	// b's shutdown ends only by a second signal (force).
	t.Setenv("TRANSFERD_INSTANCE_ID", "b")
	t.Setenv("TRANSFERD_SHUTDOWN_TIMEOUT", "1h")
	t.Setenv("TRANSFERD_TENANT_MAX_WAITS", "1")
	logsB := newLogWatch()
	ctxB, signalB := context.WithCancel(context.Background())
	forceB, againB := context.WithCancel(context.Background())
	doneB := make(chan error, 1)
	go func() { doneB <- run(withForce(ctxB, forceB), nil, io.Discard, logsB) }()
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { signalB(); againB(); <-doneB }) })
	apiB := "http://" + logsB.wait(t, msg("listening"))["addr"].(string)
	simB := logsB.wait(t, func(m map[string]any) bool { return m["simulator"] != nil })["simulator"].(string)

	// The replicas share the store: each moves a call of its own.
	consult := func(api, sim, user string) map[string]any {
		t.Helper()
		send(t, "PUT", sim+"/sim/netsapiens/users/TEST/1010/behaviour", `{"mode":"never"}`)
		send(t, "POST", sim+"/sim/netsapiens/calls", `{"domain":"TEST","user":"`+user+`"}`)
		resp, tr := send(t, "POST", api+"/v1/transfers",
			`{"provider":"netsapiens","call":{"domain":"TEST","user":"`+user+`"},"target":"1010","completion":"manual"}`, "Prefer", "wait=20")
		if resp.StatusCode != http.StatusCreated || tr["state"] != "consulting" {
			t.Fatalf("%s %v", resp.Status, tr)
		}
		return tr
	}
	tr := consult(apiA, simA, "1000")
	consult(apiB, simB, "2000")
	// b's provider answers nothing from now on: its engine's shutdown,
	// giving its consult back, waits.
	if resp, _ := send(t, "POST", simB+"/sim/netsapiens/faults", `{"latency":"1h"}`); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("fault: %s", resp.Status)
	}

	long := waitingLongPoll(t, apiB+"/v1/transfers/"+tr["id"].(string), 600)
	signalB()
	var a pollAnswer
	select {
	case a = <-long:
	// Well within a's consult's ring (the simulator's ring timeout is a
	// minute): only b's shutdown can end this wait.
	case <-time.After(30 * time.Second):
		t.Fatal("the long poll did not answer while b's engine shut down")
	}
	if a.err != nil || a.status != http.StatusOK || a.body["state"] != "consulting" {
		t.Fatalf("the long poll got %d %v, %v; want 200 with the transfer, consulting", a.status, a.body, a.err)
	}
	select {
	case err := <-doneB:
		t.Fatalf("b stopped (%v) before its engine's shutdown was cut short", err)
	default:
	}
	againB()
	if err := <-doneB; err == nil {
		t.Error("b's run cut short by a second signal returned nil")
	}
	once.Do(func() {})
}
