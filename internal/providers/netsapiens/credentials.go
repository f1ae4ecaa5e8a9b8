package netsapiens

import (
	"context"
	"net/http"

	"github.com/transferd/transferd/internal/orchestrator"
)

// CheckCredentials asks the PBX one cheap authenticated question: how many
// calls the key's own domain (`~`) has (GET /domains/~/calls/count). A
// 401 or 403 comes back as an error of kind KindProviderAuth; any answer
// at all proves the key works, whatever the count. A key bound to no domain
// (a reseller's or super-user's, which a CRM serving many domains uses, as
// does the simulator's demo key) has no `~` to resolve, and the PBX answers
// 400: then the question is asked of every domain (GET /domains/*/calls/count).
func (c *Client) CheckCredentials(ctx context.Context) error {
	var out struct {
		Total any `json:"total"`
	}
	err := c.do(ctx, request{op: "check_credentials", method: http.MethodGet, path: "/domains/~/calls/count", safe: true}, &out)
	if ev := orchestrator.EvidenceOf(err); ev != nil && ev.Status == http.StatusBadRequest {
		err = c.do(ctx, request{op: "check_credentials", method: http.MethodGet, path: "/domains/*/calls/count", safe: true}, &out)
	}
	return err
}
