package netsapiens_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

func TestCheckCredentials(t *testing.T) {
	const resellerKey = "nsd_resellerResellerResellerResellerResellerReseller00"
	sim := nssim.New(nssim.Config{APIKeys: map[string]nssim.KeyScope{apiKey: {Domain: domain}, resellerKey: {Domain: "*"}}})
	t.Cleanup(sim.Close)
	mux := http.NewServeMux()
	mux.Handle(basePath+"/", http.StripPrefix(basePath, sim.APIHandler()))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	for name, tc := range map[string]struct {
		key   string
		fails bool
		kind  orchestrator.Kind
	}{
		"a key the PBX knows": {key: apiKey},
		// Bound to no domain, it has no "~" (400 "Domain ~ cannot be resolved"): it was
		// reported unknown at every check, as though the PBX could not be reached.
		"a key of every domain": {key: resellerKey},
		"a rotated key":         {key: "nsd_rotatedRotatedRotatedRotatedRotatedRotatedRotated00", fails: true, kind: orchestrator.KindProviderAuth},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + basePath, APIKey: tc.key})
			if err != nil {
				t.Fatal(err)
			}
			err = c.CheckCredentials(context.Background())
			if (err != nil) != tc.fails || tc.fails && orchestrator.KindOf(err) != tc.kind {
				t.Fatalf("CheckCredentials = %v (kind %v), want kind %v", err, orchestrator.KindOf(err), tc.kind)
			}
			if err != nil && strings.Contains(err.Error(), tc.key) {
				t.Errorf("the error shows the key: %v", err)
			}
		})
	}
}

// failingTransport fails every request as a dial would, before an answer.
type failingTransport struct{}

func (failingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("dial tcp: connection refused")
}

// A request that fails in transport is logged (at debug) and returned
// without its URL, as Bandwidth's are: http.Client wraps the failure in a
// *url.Error whose text is the whole request URL, the PBX's host with it.
func TestTransportErrorCarriesNoURL(t *testing.T) {
	const host = "pbx.transport-fails.example"
	c, err := netsapiens.New(netsapiens.Config{BaseURL: "https://" + host + basePath, APIKey: apiKey,
		HTTPClient: &http.Client{Transport: failingTransport{}}, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	ctx := zerolog.New(&logs).Level(zerolog.DebugLevel).WithContext(context.Background())
	err = c.CheckCredentials(ctx)
	if orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("CheckCredentials = %v (kind %v), want the transport's failure, of kind provider-unavailable", err, orchestrator.KindOf(err))
	}
	if strings.Contains(err.Error(), host) {
		t.Errorf("the error carries the URL: %v", err)
	}
	if !strings.Contains(logs.String(), "netsapiens request failed") || !strings.Contains(logs.String(), "connection refused") {
		t.Fatalf("the failure is not logged at debug: %s", logs.String())
	}
	if strings.Contains(logs.String(), host) {
		t.Errorf("the log carries the URL: %s", logs.String())
	}
}
