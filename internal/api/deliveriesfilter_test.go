package api_test

import (
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
