package apiclient_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/transferd/transferd/internal/providers/apiclient"
)

// A provider's https answer that redirects to http (a proxy's canonical
// URL, a misconfigured PBX) is not followed: Go's client sends the
// request again, its Authorization header included, to a host of the
// same name, so that the account's credentials would cross the network
// in clear, which an https base URL was written to prevent (an http one
// is warned about at start; a redirect was not). The redirect is
// answered as it came, as a command's is.
func TestCredentialsAreNotRedirectedToPlainHTTP(t *testing.T) {
	var leaked atomic.Value
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Store(r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusOK)
	}))
	defer plain.Close()
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The same host name (127.0.0.1), another port, plain http.
		http.Redirect(w, r, plain.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer secure.Close()
	tr := apiclient.Transport{HTTPClient: secure.Client()}.WithDefaults()
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		req, _ := http.NewRequest(method, secure.URL+"/ns-api/v2/domains/~/calls/count", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer nsd_TopSecretValue")
		res, err := tr.HTTPClient.Do(req)
		if err == nil {
			res.Body.Close()
		}
		if v, _ := leaked.Load().(string); v != "" {
			t.Fatalf("%s: the https request's credentials were sent again over plain http: %q", method, v)
		}
		if err == nil && res.StatusCode != http.StatusTemporaryRedirect {
			t.Errorf("%s: %d, want the redirect answered as it came", method, res.StatusCode)
		}
	}
}
