package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd"
	"github.com/transferd/transferd/client"
	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// A manual NetSapiens transfer: create it, wait for the target to answer,
// complete it; then a request the server refuses, as a typed problem.
func Example() {
	url, stop := startTransferd() // your transferd's URL instead, e.g. "http://transferd:8080"
	defer stop()
	ctx := context.Background()

	c, err := client.NewClientWithResponses(url)
	if err != nil {
		panic(err)
	}
	req, _ := client.NewNetSapiensRequest(client.NetSapiensTransferRequest{
		Call:       client.NetSapiensCall{Domain: "acme.example", User: "1000"},
		Target:     "1010",
		Completion: client.CompletionManual,
	})
	created, err := c.CreateTransferWithResponse(ctx, &client.CreateTransferParams{IdempotencyKey: new(client.IdempotencyKey("crm-ticket-4711"))}, req)
	if err != nil || created.JSON202 == nil {
		panic(fmt.Sprint(err, client.ProblemOf(created.HTTPResponse, created.Body)))
	}
	t, err := c.WaitTransfer(ctx, created.JSON202.Id, client.TargetAnswered)
	if err != nil {
		panic(err)
	}
	fmt.Println("target answered:", t.State, t.TargetAnswered)

	done, err := c.CompleteTransferWithResponse(ctx, t.Id, &client.CompleteTransferParams{Prefer: "wait=30"})
	if err != nil || done.JSON200 == nil {
		panic(fmt.Sprint(err, client.ProblemOf(done.HTTPResponse, done.Body)))
	}
	fmt.Println("completed:", done.JSON200.State, done.JSON200.Outcome.Reason)

	bad, _ := client.NewNetSapiensRequest(client.NetSapiensTransferRequest{
		Call: client.NetSapiensCall{Domain: "acme.example", User: "1001"}, Target: "1010", ConsultTimeout: "0s"})
	res, err := c.CreateTransferWithResponse(ctx, nil, bad)
	if err != nil {
		panic(err)
	}
	var p *client.Problem
	if errors.As(client.ProblemOf(res.HTTPResponse, res.Body), &p) && p.Type == client.ProblemTypeValidationError {
		fmt.Println("refused:", p.Status, p.Errors[0].Field)
	}
	// Output:
	// target answered: consulting true
	// completed: completed transferred
	// refused: 400 consult_timeout
}

// startTransferd serves transferd's API in process over a simulated
// provider, so that the example runs anywhere.
func startTransferd() (url string, stop func()) {
	store := memory.New()
	reg := prometheus.NewRegistry()
	eng, err := orchestrator.New(orchestrator.Config{}, store,
		[]orchestrator.Provider{orchestratortest.NewFake("netsapiens")}, zerolog.Nop(), reg)
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(api.NewServer(api.Config{OpenAPI: transferd.OpenAPI, Idempotency: store}, eng, zerolog.Nop(), reg, reg))
	return srv.URL, func() {
		srv.Close()
		_ = eng.Shutdown(context.Background())
	}
}
