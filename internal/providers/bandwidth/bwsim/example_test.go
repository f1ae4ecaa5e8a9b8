package bwsim_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"time"

	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// A caller is transferred with the page's Example 1 and the target answers.
func Example() {
	sim := bwsim.New(bwsim.Config{Token: "t", Secret: "s", OwnedNumbers: []string{"+15555550000"}})
	defer sim.Close()
	mux := http.NewServeMux()
	mux.Handle("/v1/", http.StripPrefix("/v1", sim.APIHandler()))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	caller, _ := sim.PlaceCall(bwsim.InboundCall{From: "+15555550100", To: "+15555550000"})
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/users/u-sim/calls/"+caller.ID,
		strings.NewReader(`{"state":"transferring","transferTo":"+19192223333"}`))
	req.SetBasicAuth("t", "s")
	res, err := srv.Client().Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	res.Body.Close()
	newLeg := path.Base(res.Header.Get("Location"))
	fmt.Println(res.Status)

	_ = sim.WaitIdle(context.Background()) // the target answers asynchronously
	b, _ := sim.Call(newLeg)
	a, _ := sim.Call(caller.ID)
	fmt.Println(b.To, b.State, a.State, sim.Connected(caller.ID, newLeg))
	// Output:
	// 201 Created
	// +19192223333 active transferring true
}

// A target that is busy: the B-leg ends with USER_BUSY and, by default, so does the caller.
func ExampleSim_SetBehaviour() {
	sim := bwsim.New(bwsim.Config{})
	defer sim.Close()
	sim.SetBehaviour("+19192223333", bwsim.Behaviour{Mode: bwsim.ModeBusy})
	srv := httptest.NewServer(http.StripPrefix("/v1", sim.APIHandler()))
	defer srv.Close()

	caller, _ := sim.PlaceCall(bwsim.InboundCall{From: "+15555550100", To: "+15555550000"})
	res, err := srv.Client().Post(srv.URL+"/v1/users/u-sim/calls/"+caller.ID, "application/json",
		strings.NewReader(`{"state":"transferring","transferTo":"+19192223333"}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	res.Body.Close()
	b, _ := sim.WaitCallState(context.Background(), path.Base(res.Header.Get("Location")), bwsim.StateCompleted)
	a, _ := sim.Call(caller.ID)
	fmt.Println(b.Cause, a.State)
	// Output: USER_BUSY completed
}

// Accepted updates applied late: the 200 comes at once, the ground truth shows the caller
// held only once the action was applied (here by Settle rather than waiting).
func ExampleSim_Truth() {
	sim := bwsim.New(bwsim.Config{ActionDelay: time.Hour})
	defer sim.Close()
	srv := httptest.NewServer(http.StripPrefix("/v1", sim.APIHandler()))
	defer srv.Close()

	caller, agentLeg, br, _ := sim.PlaceCallWithAgent(bwsim.InboundCall{From: "+15555550100", To: "+15555550000", Agent: "+15555550111"})
	res, err := srv.Client().Post(srv.URL+"/v1/users/u-sim/bridges/"+br.ID, "application/json",
		strings.NewReader(`{"bridgeAudio":false}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	res.Body.Close()
	before := sim.Truth()
	c, _ := before.Call(caller.ID)
	fmt.Println(res.StatusCode, before.PendingActions, c.Held, before.Connected(caller.ID, agentLeg.ID))

	sim.Settle()
	after := sim.Truth()
	c, _ = after.Call(caller.ID)
	fmt.Println(after.PendingActions, c.Held, after.Connected(caller.ID, agentLeg.ID))
	// Output:
	// 200 1 false true
	// 0 true false
}
