package netsapiens_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

func TestCheckCredentials(t *testing.T) {
	sim := nssim.New(nssim.Config{APIKeys: map[string]nssim.KeyScope{apiKey: {Domain: domain}}})
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
		"a rotated key":       {key: "nsd_rotatedRotatedRotatedRotatedRotatedRotatedRotated00", fails: true, kind: orchestrator.KindProviderAuth},
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
