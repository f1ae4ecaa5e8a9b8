package nssim_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// A client holds an inbound call over HTTP; the 202 is only an acceptance, and WaitIdle
// waits until the hold has taken effect.
func Example() {
	sim := nssim.New(nssim.Config{APIKeys: map[string]nssim.KeyScope{"nsd_example": {Domain: "TEST"}}})
	defer sim.Close()
	mux := http.NewServeMux()
	mux.Handle("/ns-api/v2/", http.StripPrefix("/ns-api/v2", sim.APIHandler()))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	call, err := sim.PlaceCall(nssim.InboundCall{Domain: "TEST", User: "1000"})
	if err != nil {
		fmt.Println(err)
		return
	}
	req, err := http.NewRequest(http.MethodPatch,
		srv.URL+"/ns-api/v2/domains/TEST/users/1000/calls/"+call.TermCallID+"/hold", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	req.Header.Set("Authorization", "Bearer nsd_example")
	resp, err := srv.Client().Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))

	if err := sim.WaitIdle(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	c := sim.Sessions("TEST")[0]
	fmt.Println("caller:", c.OrigInfo, "user:", c.TermInfo)
	// Output:
	// 202 {"code":202,"message":"Accepted"}
	// caller: held user: active
}
