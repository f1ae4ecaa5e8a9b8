package bandwidth_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
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
	const token = "cbtok-Zq8rT2vW5yX9aB3cD6eF"
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
				"message": "The callbackUrl `" + b.CallbackURL + "` is not a valid URL"})
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
