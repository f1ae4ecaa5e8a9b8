package bandwidth_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth"
)

// Catapult posts a call's events to the callbackUrl transferd gave it:
// PublicURL + "/callbacks/bandwidth/" + the transfer id. The handler
// remembers a hangup's cause and wakes the transfer, which then reads the
// call's real state.
func ExampleClient_CallbackHandler() {
	c, err := bandwidth.New(bandwidth.Config{UserID: "u-dkjf9094802375s", APIToken: "token", APISecret: "secret",
		PublicURL: "https://transferd.example.com"})
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle(bandwidth.CallbackPath, http.StripPrefix(strings.TrimSuffix(bandwidth.CallbackPath, "/"),
		c.CallbackHandler(func(transferID string) { fmt.Println("wake", transferID[:3]) })))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	id := orchestrator.NewID(time.Now())
	event := `{"eventType":"hangup","callId":"c-zan4g74pprsq","cause":"USER_BUSY","time":"2012-11-14T16:28:31.536Z"}`
	res, err := srv.Client().Post(srv.URL+bandwidth.CallbackPath+id, "application/json; charset=utf-8", strings.NewReader(event))
	if err != nil {
		fmt.Println(err)
		return
	}
	res.Body.Close()
	fmt.Println(res.Status)

	res, err = srv.Client().Post(srv.URL+bandwidth.CallbackPath+"not-a-transfer", "application/json", strings.NewReader(event))
	if err != nil {
		fmt.Println(err)
		return
	}
	res.Body.Close()
	fmt.Println(res.Status)
	// Output:
	// wake tr_
	// 200 OK
	// 400 Bad Request
}
