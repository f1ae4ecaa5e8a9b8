package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// A manual transfer whose target answered waits for the client: a long
// poll on it must answer at once, not wait for a change that only the
// client itself can cause.
func TestLongPollDoesNotWaitOnATransferAwaitingTheClient(t *testing.T) {
	inst := newInstance(t, memory.New(), orchestratortest.NewFake("netsapiens"))
	created := post(t, inst.srv.URL+"/v1/transfers", "", manualBody)
	var tr struct{ ID string }
	if err := json.Unmarshal([]byte(created.body), &tr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := inst.eng.Wait(ctx, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered }); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, inst.srv.URL+created.location, nil)
	req.Header.Set("Prefer", "wait=60")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		State          string `json:"state"`
		TargetAnswered bool   `json:"target_answered"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.State != "consulting" || !got.TargetAnswered || resp.Header.Get("Preference-Applied") != "" {
		t.Fatalf("state %s answered %v, Preference-Applied %q: the poll waited", got.State, got.TargetAnswered, resp.Header.Get("Preference-Applied"))
	}
}
