package bandwidth_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// A refusal whose message repeats the request's callbackUrl (errors.md's
// callback-invalid-url; any validation message that quotes the property
// it refuses) carried the transfer's callback token, the credential of
// its callbacks, into the step's detail, the outcome's evidence (both
// shown by the API, webhooks and events) and the log. The token is cut
// from provider text as the access log cuts it.
func TestAProviderMessageQuotingTheCallbackURLDoesNotCarryItsToken(t *testing.T) {
	for _, c := range []struct {
		name, token string
		message     func(callbackURL string) string
	}{
		{"as written", "cbtok-Zq8rT2vW5yX9aB3cD6eF", func(u string) string { return "The callbackUrl `" + u + "` is not a valid URL" }},
		// Escaped, as a validator printing the value as a query parameter
		// would: the path's slashes then read %2F, which the cut of a
		// quoted callback URL did not see.
		{"escaped", "acme.Zq8rT2vW5yX9aB3cD6eF_Gh-Jk", func(u string) string { return "Invalid value for callbackUrl=" + url.QueryEscape(u) }},
	} {
		t.Run(c.name, func(t *testing.T) { refusalQuotingTheCallbackURL(t, c.token, c.message) })
	}
}

func refusalQuotingTheCallbackURL(t *testing.T, token string, message func(string) string) {
	var quoted string
	wrap := func(_ *bwsim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var b struct {
				State       string `json:"state"`
				CallbackURL string `json:"callbackUrl"`
			}
			if r.Method != http.MethodPost || json.Unmarshal(body, &b) != nil || b.State != bwsim.StateTransferring {
				api.ServeHTTP(w, r)
				return
			}
			quoted = b.CallbackURL
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]any{"category": "bad-request", "code": "callback-invalid-url",
				"message": message(b.CallbackURL)})
		})
	}
	h := setup(t, options{callbacks: true, wrap: wrap, callbackToken: func(string) string { return token }})
	a := h.placeCall(t)
	tr := h.end(t, h.start(t, announcedReq(a, target)).ID)
	if !strings.Contains(quoted, token) {
		t.Fatalf("setup: the transfer's callbackUrl %q does not carry the token", quoted)
	}
	if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonProviderError {
		t.Fatalf("state %s outcome %+v; want failed, provider_error", tr.State, tr.Outcome)
	}
	record, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(record), token) {
		t.Errorf("the transfer's record carries the callback token: %s", record)
	}
	if !strings.Contains(string(record), "callback-invalid-url") {
		t.Errorf("the record lost the refusal's code: %s", record)
	}
	if logs := h.logs.String(); strings.Contains(logs, token) {
		t.Errorf("the log carries the callback token: %s", logs)
	}
}
