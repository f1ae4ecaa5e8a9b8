package bandwidth

import (
	"context"
	"net/http"
	"net/url"
)

// CheckCredentials asks Catapult one cheap authenticated question: the
// first call of the user's call list (GET /users/{userId}/calls?size=1).
// A 401 or 403 comes back as an error of kind KindProviderAuth; any list
// at all proves the token, secret and user id work together.
func (c *Client) CheckCredentials(ctx context.Context) error {
	var out []map[string]any
	return c.do(ctx, request{op: "check_credentials", method: http.MethodGet, path: "/calls",
		query: url.Values{"size": {"1"}}, safe: true}, &out)
}
