package main

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/transferd/transferd/client"
)

// TestGoClientDrivesATransfer is the integrating team's first day, through
// the generated client only: create a manual NetSapiens transfer, wait for
// the target to answer, read it, find it in the list, complete it, and
// decode a validation error into its typed problem.
func TestGoClientDrivesATransfer(t *testing.T) {
	// Demo mode with a key: the API is closed, and the client presents it.
	const key = "client-e2e-key-0000001"
	t.Setenv("TRANSFERD_API_KEYS", key)
	api, sim, _, _ := startService(t)
	// The demo simulator: the target answers at once, the agent is on a call.
	send(t, "PUT", sim+"/sim/netsapiens/users/TEST/1010/behaviour", `{"mode":"answer"}`)
	if resp, _ := send(t, "POST", sim+"/sim/netsapiens/calls", `{"domain":"TEST","user":"1000"}`); resp.StatusCode != http.StatusCreated {
		t.Fatalf("placing the simulated call: %s", resp.Status)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if resp, _ := send(t, "GET", api+"/v1/transfers", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no key: %s, want 401", resp.Status)
	}
	c, err := client.NewClientWithResponses(api, client.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+key)
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}

	body, err := client.NewNetSapiensRequest(client.NetSapiensTransferRequest{
		Call:       client.NetSapiensCall{Domain: "TEST", User: "1000"},
		Target:     "1010",
		Completion: client.CompletionManual,
	})
	if err != nil {
		t.Fatal(err)
	}
	created, err := c.CreateTransferWithResponse(ctx, &client.CreateTransferParams{IdempotencyKey: new(client.IdempotencyKey("client-e2e-1"))}, body)
	if err != nil {
		t.Fatal(err)
	}
	if created.JSON202 == nil {
		t.Fatalf("create: %v\n%s", client.ProblemOf(created.HTTPResponse, created.Body), created.Body)
	}
	id := created.JSON202.Id
	if loc := created.Headers202.Location; loc != "/v1/transfers/"+id {
		t.Errorf("Location = %q, want /v1/transfers/%s", loc, id)
	}

	answered, err := c.WaitTransfer(ctx, id, client.TargetAnswered)
	if err != nil {
		t.Fatal(err)
	}
	if answered.State != client.StateConsulting || !answered.TargetAnswered {
		t.Fatalf("after the answer: state %s, target_answered %v", answered.State, answered.TargetAnswered)
	}

	got, err := c.GetTransferWithResponse(ctx, id, nil)
	if err != nil || got.JSON200 == nil {
		t.Fatalf("get: %v %v", err, got)
	}
	if got.JSON200.Call.User != "1000" || got.JSON200.Provider != "netsapiens" {
		t.Errorf("get: call %+v, provider %q", got.JSON200.Call, got.JSON200.Provider)
	}
	// HEAD, declared in openapi.yaml: the generated client sends it and
	// reads its answer, the JSON Content-Type with no body, without error.
	head, err := c.HeadTransferWithResponse(ctx, id)
	if err != nil || head.StatusCode() != http.StatusOK || len(head.Body) != 0 || head.Headers200.XRequestId == "" {
		t.Errorf("head: %v %+v", err, head)
	}

	found := false
	for tr, err := range c.Transfers(ctx, client.ListTransfersParams{State: []client.State{client.StateConsulting}, Limit: new(1)}) {
		if err != nil {
			t.Fatal(err)
		}
		found = found || tr.Id == id
	}
	if !found {
		t.Errorf("the list of consulting transfers does not have %s", id)
	}

	done, err := c.CompleteTransferWithResponse(ctx, id, &client.CompleteTransferParams{Prefer: "wait=30"})
	if err != nil {
		t.Fatal(err)
	}
	if done.JSON200 == nil {
		t.Fatalf("complete: %v\n%s", client.ProblemOf(done.HTTPResponse, done.Body), done.Body)
	}
	if done.Headers200.PreferenceApplied != "wait=30" {
		t.Errorf("Preference-Applied = %q", done.Headers200.PreferenceApplied)
	}
	o := done.JSON200.Outcome
	if done.JSON200.State != client.StateCompleted || o == nil || o.Reason != client.ReasonTransferred {
		t.Fatalf("after complete: state %s, outcome %+v", done.JSON200.State, o)
	}

	// A bad request comes back as a typed problem naming every bad field.
	bad, err := client.NewNetSapiensRequest(client.NetSapiensTransferRequest{
		Call: client.NetSapiensCall{Domain: "TEST", User: "1000"}, Target: "1010", ConsultTimeout: "0s",
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.CreateTransferWithResponse(ctx, nil, bad)
	if err != nil {
		t.Fatal(err)
	}
	var p *client.Problem
	if !errors.As(client.ProblemOf(res.HTTPResponse, res.Body), &p) || res.ApplicationproblemJSON400 == nil {
		t.Fatalf("a bad create answered %s\n%s", res.HTTPResponse.Status, res.Body)
	}
	if p.Type != client.ProblemTypeValidationError || len(p.Errors) != 1 || p.Errors[0].Field != "consult_timeout" {
		t.Errorf("problem = %+v", p)
	}
}
