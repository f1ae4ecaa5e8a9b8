package netsapiens

import (
	"context"
	"net/http"
)

// CheckCredentials asks the PBX one cheap authenticated question: how many
// calls the key's own domain (`~`) has (GET /domains/~/calls/count). A
// 401 or 403 comes back as an error of kind KindProviderAuth; any answer
// at all proves the key works, whatever the count.
func (c *Client) CheckCredentials(ctx context.Context) error {
	var out struct {
		Total any `json:"total"`
	}
	return c.do(ctx, request{op: "check_credentials", method: http.MethodGet, path: "/domains/~/calls/count", safe: true}, &out)
}
