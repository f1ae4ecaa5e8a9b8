package bandwidth_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// A refusal whose text repeats what the request carried (a 401 naming the
// API token it refuses, a proxy's error page echoing the request's
// Authorization header) took the account's credentials into the step's
// detail, the outcome's evidence (both shown by the API, webhooks and
// events) and the log. The 401 body is a guess (notes §12.8 unknown 6),
// and a page in front of the API is nobody's to vouch for: provider text
// has the credentials the request was sent with cut, in any form a body
// can carry them.
func TestAProviderMessageQuotingTheCredentialsDoesNotCarryThem(t *testing.T) {
	basic := base64.StdEncoding.EncodeToString([]byte(apiToken + ":" + apiSecret))
	for _, c := range []struct {
		name, contentType, body string
		status                  int
	}{
		{name: "a 401 naming the token", status: http.StatusUnauthorized, contentType: "application/json",
			body: `{"category":"authentication","code":"unauthorized","message":"The API token ` + "`" + apiToken + "`" +
				` is not valid for user u-transferd"}`},
		{name: "a 401 naming both, escaped", status: http.StatusUnauthorized, contentType: "application/json",
			body: `{"category":"authentication","code":"unauthorized","message":"credentials ` +
				url.QueryEscape(apiToken+":"+apiSecret) + ` refused"}`},
		{name: "a proxy's page echoing the header", status: http.StatusForbidden, contentType: "text/html",
			body: "<html><body><h1>403 Forbidden</h1><pre>POST /calls\nAuthorization: Basic " + basic + "\n</pre></body></html>"},
	} {
		t.Run(c.name, func(t *testing.T) {
			wrap := func(_ *bwsim.Sim, api http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/calls") {
						api.ServeHTTP(w, r)
						return
					}
					_, _ = io.Copy(io.Discard, r.Body)
					w.Header().Set("Content-Type", c.contentType)
					w.WriteHeader(c.status)
					_, _ = io.Copy(w, bytes.NewReader([]byte(c.body)))
				})
			}
			h := setup(t, options{wrap: wrap, engine: briefWindow})
			a, g, _ := h.placeBridged(t)
			tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
			if tr.Outcome == nil || tr.Outcome.Reason != orchestrator.ReasonProviderError {
				t.Fatalf("state %s outcome %+v; want provider_error", tr.State, tr.Outcome)
			}
			record, err := json.Marshal(tr)
			if err != nil {
				t.Fatal(err)
			}
			texts := map[string]string{"the transfer's record": string(record), "the log": h.logs.String()}
			for name, text := range texts {
				for _, secret := range []string{apiToken, apiSecret, basic, url.QueryEscape(apiSecret)} {
					if strings.Contains(text, secret) {
						t.Errorf("%s carries a credential (%.8s…)", name, secret)
					}
				}
			}
			if !strings.Contains(string(record), `"status":`+itoa(c.status)) {
				t.Errorf("the record lost the refusal's status: %s", record)
			}
		})
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// The account's credential check (the providers' status endpoint and its
// log) says why the credentials were refused in the provider's words,
// which may name the token refused: it is cut there too.
func TestACredentialCheckRefusedNamingTheTokenDoesNotCarryIt(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"category":"authentication","code":"unauthorized","message":"Token `+apiToken+` is not valid"}`)
	}))
	defer srv.Close()
	c, err := bandwidth.New(bandwidth.Config{BaseURL: srv.URL + basePath, UserID: userID, APIToken: apiToken, APISecret: apiSecret})
	if err != nil {
		t.Fatal(err)
	}
	err = c.CheckCredentials(context.Background())
	if orchestrator.KindOf(err) != orchestrator.KindProviderAuth {
		t.Fatalf("CheckCredentials = %v, want a refusal of the credentials", err)
	}
	if strings.Contains(err.Error(), apiToken) {
		t.Errorf("the check's error carries the token: %v", err)
	}
	if !strings.Contains(err.Error(), "is not valid") {
		t.Errorf("the check's error lost the provider's words: %v", err)
	}
}
