package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestDeliveriesListRefusesAMalformedTransferID: the contract types
// ?transfer_id= of GET /v1/webhook-deliveries as a TransferID (as
// GET /v1/events does, which refuses a malformed one); an integrator's
// typo must be a 400 validation-error, not an empty page that reads as
// "no failed deliveries for this transfer".
func TestDeliveriesListRefusesAMalformedTransferID(t *testing.T) {
	e := newEventsEnv(t)
	res := e.req(t, "GET", "/v1/webhook-deliveries?transfer_id=tr_not-a-transfer-id", readKey, "")
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "transfer_id") {
		t.Fatalf("a malformed transfer_id answered %d, want 400 validation-error naming transfer_id:\n%s", res.StatusCode, body)
	}
}

// A parameter given twice, of which only the first would count, is
// refused rather than half ignored.
func TestDeliveriesListRefusesARepeatedParameter(t *testing.T) {
	e := newEventsEnv(t)
	res := e.req(t, "GET", "/v1/webhook-deliveries?limit=5&limit=500", readKey, "")
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "more than once") {
		t.Fatalf("limit given twice answered %d, want 400 validation-error naming limit:\n%s", res.StatusCode, body)
	}
}

// A ?cursor= of GET /v1/webhook-deliveries names one of the tenant's
// deliveries. It was looked up across tenants: with another tenant's key,
// the default tenant's newest delivery as the cursor listed that tenant's
// own deliveries, and a cursor naming no delivery listed none, which told
// whether the default tenant's delivery existed. Both are now the same
// 400 naming cursor; the tenant's own cursor still pages on.
func TestDeliveriesCursorOfAnotherTenantIsRefused(t *testing.T) {
	e := newEventsEnvFor(t, "default", otherTenant)
	e.start(t, otherWriteKey, "1005")
	e.start(t, writeKey, "1006")
	if err := e.disp.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	type page struct {
		Items      []deliveryBody
		NextCursor string `json:"next_cursor"`
	}
	mine := decodeBody[page](t, e.req(t, "GET", "/v1/webhook-deliveries", readKey, ""), http.StatusOK)
	if len(mine.Items) == 0 {
		t.Fatal("the default tenant has no failed deliveries")
	}
	var bodies []string
	for what, cursor := range map[string]string{
		"the default tenant's newest delivery": mine.Items[0].ID,
		"no delivery":                          "dlv_000000000000000000000000",
	} {
		res := e.req(t, "GET", "/v1/webhook-deliveries?cursor="+cursor, otherReadKey, "")
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var p struct{ Errors []struct{ Field string } }
		_ = json.Unmarshal(body, &p)
		if res.StatusCode != http.StatusBadRequest || len(p.Errors) != 1 || p.Errors[0].Field != "cursor" {
			t.Errorf("another tenant's list after %s answered %d, want 400 validation-error naming cursor:\n%s", what, res.StatusCode, body)
		}
		bodies = append(bodies, string(body))
	}
	if bodies[0] != bodies[1] {
		t.Errorf("another tenant's delivery and none as the cursor are told apart:\n%s\n%s", bodies[0], bodies[1])
	}

	first := decodeBody[page](t, e.req(t, "GET", "/v1/webhook-deliveries?limit=1", otherReadKey, ""), http.StatusOK)
	if first.NextCursor == "" {
		t.Fatalf("the other tenant's first page of one: %+v, want a next_cursor", first)
	}
	next := decodeBody[page](t, e.req(t, "GET", "/v1/webhook-deliveries?limit=1&cursor="+first.NextCursor, otherReadKey, ""), http.StatusOK)
	if len(next.Items) != 1 || next.Items[0].ID == first.Items[0].ID {
		t.Errorf("the page after the tenant's own cursor: %+v, want the next delivery", next.Items)
	}
}
