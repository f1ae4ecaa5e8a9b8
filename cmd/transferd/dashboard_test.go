package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/pbxsim"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// TestDashboardQueriesExistingMetrics runs transferd against the provider
// simulators (configured as real providers, so that credential checks run
// too), makes one transfer, and checks that every metric a panel of the
// Grafana dashboard or an alerting rule queries is in /metrics.
func TestDashboardQueriesExistingMetrics(t *testing.T) {
	srv, sim := simulators(t)
	t.Setenv("TRANSFERD_NETSAPIENS_BASE_URL", srv.URL+pbxsim.NetSapiensAPIPath)
	t.Setenv("TRANSFERD_NETSAPIENS_API_KEY", pbxsim.DemoNetSapiensKey)
	t.Setenv("TRANSFERD_BANDWIDTH_BASE_URL", srv.URL+pbxsim.BandwidthAPIPath)
	t.Setenv("TRANSFERD_BANDWIDTH_USER_ID", pbxsim.DemoBandwidthUser)
	t.Setenv("TRANSFERD_BANDWIDTH_API_TOKEN", pbxsim.DemoBandwidthTok)
	t.Setenv("TRANSFERD_BANDWIDTH_API_SECRET", pbxsim.DemoBandwidthSec)
	// The metrics are the point here, not the keys (tested elsewhere).
	t.Setenv("TRANSFERD_AUTH", "none")
	// A callback secret, so that transferd_callback_secret_info, which has
	// no series without one, is exposed.
	t.Setenv("TRANSFERD_CALLBACK_SECRET", "dashboard-callback-secret-0123456789abcdef")
	body := metricsAfterATransfer(t, srv, sim)
	exposed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) `).FindAllSubmatch(body, -1) {
		exposed[string(m[1])] = true
	}

	queried := map[string]string{}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	data, err := os.ReadFile("../../deploy/monitoring/transferd-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatal(err)
	}
	metricRE := regexp.MustCompile(`\btransferd_[a-z0-9_]+`)
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range metricRE.FindAllString(tg.Expr, -1) {
				queried[m] = "panel " + p.Title
			}
		}
	}
	for _, v := range dash.Templating.List {
		for _, m := range metricRE.FindAllString(v.Definition, -1) {
			queried[m] = "a dashboard variable"
		}
	}
	rules, err := os.ReadFile("../../deploy/monitoring/transferd-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(rules), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, m := range metricRE.FindAllString(line, -1) {
			queried[m] = "an alerting rule"
		}
	}
	if len(queried) < 10 {
		t.Fatalf("only %d metrics queried: %v", len(queried), queried)
	}
	for m, where := range queried {
		family := m
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if f, ok := strings.CutSuffix(m, suffix); ok && exposed[f] {
				family = f
			}
		}
		if !exposed[family] {
			t.Errorf("%s queries %s, which /metrics does not expose", where, m)
		}
	}
}

// simulators serves the provider simulators, in their demo configuration,
// from one test server.
func simulators(t *testing.T) (*httptest.Server, *pbxsim.Server) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	sim := pbxsim.New(pbxsim.DemoConfig(srv.URL))
	t.Cleanup(sim.Close)
	mux.Handle("/", sim.Handler())
	return srv, sim
}

// metricsAfterATransfer runs transferd with the environment the test set
// (listening on a free port, polling quickly, a data directory of its
// own), waits for both providers' credential checks, makes one NetSapiens
// transfer on srv's simulators (sending headers with the create), and
// returns what /metrics then exposes.
func metricsAfterATransfer(t *testing.T, srv *httptest.Server, sim *pbxsim.Server, headers ...string) []byte {
	t.Helper()
	t.Setenv("TRANSFERD_LISTEN_ADDR", "127.0.0.1:0")
	t.Setenv("TRANSFERD_POLL_INTERVAL", "5ms")
	t.Setenv("TRANSFERD_POLL_MAX_INTERVAL", "20ms")
	t.Setenv("TRANSFERD_DATA_DIR", t.TempDir())
	logs, stop := runInBackground()
	t.Cleanup(func() { _ = stop() })
	api := "http://" + logs.wait(t, msg("listening"))["addr"].(string)
	// Both credential checks have run once they are logged.
	for _, p := range []string{"netsapiens", "bandwidth"} {
		logs.wait(t, func(m map[string]any) bool { return m["message"] == "provider credential check" && m["provider"] == p })
	}

	sim.NetSapiens.SetBehaviour(pbxsim.DemoDomain, "1010", nssim.Behaviour{Mode: nssim.ModeAnswer})
	send(t, "POST", srv.URL+"/sim/netsapiens/calls", `{"domain":"TEST","user":"1000"}`)
	resp, tr := send(t, "POST", api+"/v1/transfers",
		`{"provider":"netsapiens","call":{"domain":"TEST","user":"1000"},"target":"1010"}`,
		append([]string{"Prefer", "wait=30"}, headers...)...)
	if resp.StatusCode != http.StatusCreated || tr["state"] != "completed" {
		t.Fatalf("transfer: %d %v", resp.StatusCode, tr)
	}

	res, err := http.Get(api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	return body
}
