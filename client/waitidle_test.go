package client_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/transferd/transferd/client"
)

// TestWaitTransferPausesWhenTheServerWaitsForNothing: transferd answers a
// long poll on a manual transfer whose target answered at once, with
// Preference-Applied: wait=0 (it waits for a complete or cancel), and
// WaitTransfer(ctx, id, nil), which waits for the end, polled again at
// once: a busy loop of about three thousand requests a second for as long
// as the consult lasted, up to its consult_timeout (found by review,
// against the demo server). After an answer that waited for nothing it now
// pauses before the next poll; after one that waited, it polls again at
// once.
func TestWaitTransferPausesWhenTheServerWaitsForNothing(t *testing.T) {
	const id = "tr_01M7Z6NZRM4TFF59TDWH9EDD1R"
	// What each poll answers: the state, and the wait the server applied.
	answers := []struct{ state, applied string }{
		{"dialing", "wait=25"},
		{"consulting", "wait=0"},
		{"consulting", "wait=0"},
		{"cancelled", "wait=0"},
	}
	polls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/transfers/"+id || polls == len(answers) {
			http.Error(w, "unexpected request", http.StatusTeapot)
			return
		}
		a := answers[polls]
		polls++
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Preference-Applied", a.applied)
		fmt.Fprintf(w, `{"id":%q,"provider":"netsapiens","state":%q,"completion":"manual","target_answered":true}`, id, a.state)
	}))
	defer srv.Close()

	pauses := 0
	defer client.SetIdlePause(func(context.Context) error { pauses++; return nil })()
	c, err := client.NewClientWithResponses(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := c.WaitTransfer(context.Background(), id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tr.State != client.StateCancelled || polls != len(answers) {
		t.Fatalf("WaitTransfer returned %s after %d polls, want cancelled after %d", tr.State, polls, len(answers))
	}
	// One pause after each non-terminal answer that waited for nothing.
	if pauses != 2 {
		t.Errorf("WaitTransfer paused %d times, want 2 (after each answer with wait=0 that had not ended)", pauses)
	}
}
