package bandwidth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

func TestCheckCredentials(t *testing.T) {
	sim := bwsim.New(bwsim.Config{UserID: userID, Token: apiToken, Secret: apiSecret, OwnedNumbers: []string{owned}})
	t.Cleanup(sim.Close)
	mux := http.NewServeMux()
	mux.Handle(basePath+"/", http.StripPrefix(basePath, sim.APIHandler()))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	for name, tc := range map[string]struct {
		secret string
		fails  bool
		kind   orchestrator.Kind
	}{
		"credentials Catapult knows": {secret: apiSecret},
		"a rotated secret":           {secret: "s-rotated-rotated", fails: true, kind: orchestrator.KindProviderAuth},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := bandwidth.New(bandwidth.Config{BaseURL: srv.URL + basePath, UserID: userID, APIToken: apiToken, APISecret: tc.secret})
			if err != nil {
				t.Fatal(err)
			}
			err = c.CheckCredentials(context.Background())
			if (err != nil) != tc.fails || tc.fails && orchestrator.KindOf(err) != tc.kind {
				t.Fatalf("CheckCredentials = %v (kind %v), want failure %v of kind %v", err, orchestrator.KindOf(err), tc.fails, tc.kind)
			}
			if err != nil && (strings.Contains(err.Error(), tc.secret) || strings.Contains(err.Error(), apiToken)) {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
}
