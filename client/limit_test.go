package client_test

import (
	"net/http"
	"testing"

	"github.com/transferd/transferd/client"
)

// TestAListWithoutALimitSendsNone: limit was a plain int, and the
// generated code sends every query parameter it has, so a list whose
// params left Limit out went out as ?limit=0, which transferd refuses
// (1 to 200): client.Transfers(ctx, client.ListTransfersParams{}), the
// iterator over every transfer, failed on its first page with a 400, as
// did a list of webhook deliveries without a limit (found by review). A
// limit left out is no parameter, and the server's default (50) applies.
func TestAListWithoutALimitSendsNone(t *testing.T) {
	const server = "http://transferd.test"
	for _, c := range []struct {
		name string
		new  func(limit *int) (*http.Request, error)
	}{
		{"transfers", func(limit *int) (*http.Request, error) {
			return client.NewListTransfersRequest(server, &client.ListTransfersParams{Limit: limit})
		}},
		{"webhook deliveries", func(limit *int) (*http.Request, error) {
			return client.NewListWebhookDeliveriesRequest(server, &client.ListWebhookDeliveriesParams{Limit: limit})
		}},
	} {
		req, err := c.new(nil)
		if err != nil {
			t.Fatal(err)
		}
		if q := req.URL.Query(); q.Has("limit") {
			t.Errorf("a list of %s without a limit sends limit=%q: %s", c.name, q.Get("limit"), req.URL)
		}
		req, err = c.new(new(7))
		if err != nil {
			t.Fatal(err)
		}
		if got := req.URL.Query().Get("limit"); got != "7" {
			t.Errorf("a list of %s with limit 7 sends limit=%q: %s", c.name, got, req.URL)
		}
	}
}
