package orchestratortest_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// A provider outage while dialling the target: the dial's effect is
// unknown, so the engine watches for the consult; when none appears within
// the visibility window it hangs up any leg of ours blind, takes the caller
// off hold, and reports the dial's failure with the caller back with the
// agent.
func ExampleFake() {
	ctx := context.Background()
	f := orchestratortest.NewFake("pbx")
	f.FailOn(orchestratortest.MethodDial,
		orchestrator.E("pbx.Dial", orchestrator.KindProviderUnavailable, errors.New("503 Service Unavailable")), 1)

	e, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond,
		VisibilityWindow: 20 * time.Millisecond},
		memory.New(), []orchestrator.Provider{f}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		panic(err)
	}
	defer e.Shutdown(ctx)

	tr, err := e.Start(ctx, orchestrator.Request{
		Provider: "pbx",
		Call:     orchestrator.CallRef{Domain: "TEST", User: "1000"},
		Target:   "1010",
	}, orchestrator.StartOptions{})
	if err != nil {
		panic(err)
	}
	tr, _ = e.Wait(ctx, tr.ID, func(*orchestrator.Transfer) bool { return false })
	call, _ := f.State(tr.ID)

	fmt.Println(tr.State, tr.Outcome.Reason, "caller_restored:", tr.Outcome.CallerRestored)
	fmt.Println(f.Actions())
	fmt.Println("caller connected:", call.Caller == orchestrator.CallerConnected)
	// Output:
	// failed provider_unavailable caller_restored: true
	// [Locate Hold Dial HangupConsult Unhold]
	// caller connected: true
}
