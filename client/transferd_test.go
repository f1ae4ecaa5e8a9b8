package client_test

import (
	"net/http"
	"testing"

	"github.com/transferd/transferd/client"
)

// TestARequestWithoutAKeySendsNoIdempotencyKey: the POSTs' parameters
// once held the key as a plain string, and the generated code sent the
// header whenever a request had parameters, so a complete with only
// Prefer: wait=30 went out with "Idempotency-Key: " (empty), which
// transferd refuses (openapi.yaml's minLength 1). A key left out is no
// header; a key given is sent.
func TestARequestWithoutAKeySendsNoIdempotencyKey(t *testing.T) {
	const server, id = "http://transferd.test", "tr_01M7Z6NZRM4TFF59TDWH9EDD1R"
	key := client.IdempotencyKey("k-1")
	for _, c := range []struct {
		name string
		new  func(key *client.IdempotencyKey) (*http.Request, error)
	}{
		{"create", func(key *client.IdempotencyKey) (*http.Request, error) {
			return client.NewCreateTransferRequestWithBody(server, &client.CreateTransferParams{Prefer: "wait=30", IdempotencyKey: key}, "application/json", http.NoBody)
		}},
		{"complete", func(key *client.IdempotencyKey) (*http.Request, error) {
			return client.NewCompleteTransferRequest(server, id, &client.CompleteTransferParams{Prefer: "wait=30", IdempotencyKey: key})
		}},
		{"cancel", func(key *client.IdempotencyKey) (*http.Request, error) {
			return client.NewCancelTransferRequest(server, id, &client.CancelTransferParams{Prefer: "wait=30", IdempotencyKey: key})
		}},
		{"redeliver", func(key *client.IdempotencyKey) (*http.Request, error) {
			return client.NewRedeliverWebhookRequest(server, "dlv_0123456789abcdef01234567", &client.RedeliverWebhookParams{IdempotencyKey: key})
		}},
	} {
		without, err := c.new(nil)
		if err != nil {
			t.Fatal(err)
		}
		if v, ok := without.Header["Idempotency-Key"]; ok {
			t.Errorf("a %s without a key sends Idempotency-Key %q", c.name, v)
		}
		with, err := c.new(&key)
		if err != nil {
			t.Fatal(err)
		}
		if got := with.Header.Get("Idempotency-Key"); got != "k-1" {
			t.Errorf("a %s with the key k-1 sends Idempotency-Key %q", c.name, got)
		}
	}
}
