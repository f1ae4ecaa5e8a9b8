package main

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/pbxsim"
)

// targetLabels are the labels Prometheus adds to every series of a
// target; the rules may group by them whatever the metric.
var targetLabels = []string{"namespace", "job", "instance"}

// TestMetricsAreDocumented runs transferd as fully configured as one
// process can be (a tenants file with both providers' accounts and a
// request budget, a callback secret), makes a transfer, scrapes /metrics,
// and holds the README to it: every transferd_ metric exposed is named in
// the README with exactly its labels (name{label,…}, or its bare name when
// it has none), and every metric the README, deploy/README.md, the
// alerting rules and the dashboard name is exposed, with the labels they
// name (a selector's, a "by"'s).
func TestMetricsAreDocumented(t *testing.T) {
	exposed := scrapeConfiguredServer(t)
	if len(exposed) < 20 {
		t.Fatalf("only %d transferd metrics exposed: %v", len(exposed), slices.Sorted(maps.Keys(exposed)))
	}
	family := func(name string) (string, bool) {
		if _, ok := exposed[name]; ok {
			return name, true
		}
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if f, ok := strings.CutSuffix(name, suffix); ok {
				if _, ok := exposed[f]; ok {
					return f, true
				}
			}
		}
		return "", false
	}

	readme := readRepoFile(t, "README.md")
	mention := regexp.MustCompile(`\btransferd_[a-z0-9_]*[a-z0-9](\{[^}\s]*\})?`)
	documented := map[string]bool{} // families named with exactly their labels
	for _, doc := range []string{"README.md", "deploy/README.md"} {
		text := readme
		if doc != "README.md" {
			text = readRepoFile(t, doc)
		}
		for _, m := range mention.FindAllStringSubmatch(text, -1) {
			name, braces := strings.TrimSuffix(m[0], m[1]), m[1]
			f, ok := family(name)
			if !ok {
				t.Errorf("%s names %s, which /metrics does not expose", doc, m[0])
				continue
			}
			labels := exposed[f]
			switch {
			case braces == "":
				if len(labels) == 0 {
					documented[f] = true
				}
			case strings.ContainsAny(braces, "=~!"):
				// A selector: its labels must be the metric's.
				for _, l := range selectorLabels(braces) {
					if !slices.Contains(labels, l) {
						t.Errorf("%s selects %s on label %q, which %s does not have (it has %v)", doc, m[0], l, f, labels)
					}
				}
			default:
				named := strings.Split(strings.Trim(braces, "{}"), ",")
				slices.Sort(named)
				if !slices.Equal(named, labels) {
					t.Errorf("%s names %s, but %s has the labels %v", doc, m[0], f, labels)
				} else {
					documented[f] = true
				}
			}
		}
	}
	for _, f := range slices.Sorted(maps.Keys(exposed)) {
		if !documented[f] {
			want := f
			if l := exposed[f]; len(l) > 0 {
				want += "{" + strings.Join(l, ",") + "}"
			}
			t.Errorf("/metrics exposes %s, which the README does not document as `%s`", f, want)
		}
	}

	// The rules' and the dashboard's expressions: each metric exists, and
	// each label a selector or a "by" names is one of its metrics'.
	var exprs []string
	for _, line := range strings.Split(readRepoFile(t, "deploy/monitoring/transferd-rules.yaml"), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			exprs = append(exprs, line)
		}
	}
	rules := strings.Join(exprs, "\n")
	for _, expr := range regexp.MustCompile(`(?s)expr: (\|\n.*?\n\s+for:|[^\n]*)`).FindAllString(rules, -1) {
		checkExpr(t, "the rule expression "+strings.TrimSpace(expr), expr, exposed, family)
	}
	for _, m := range regexp.MustCompile(`"expr": "((?:[^"\\]|\\.)*)"`).FindAllStringSubmatch(readRepoFile(t, "deploy/monitoring/transferd-dashboard.json"), -1) {
		expr := strings.ReplaceAll(m[1], `\"`, `"`)
		checkExpr(t, "the dashboard query "+expr, expr, exposed, family)
	}
}

// checkExpr checks one PromQL expression against the exposed families.
func checkExpr(t *testing.T, what, expr string, exposed map[string][]string, family func(string) (string, bool)) {
	t.Helper()
	var used []string // the labels of every metric the expression reads
	for _, m := range regexp.MustCompile(`\b(transferd_[a-z0-9_]*[a-z0-9])(\{[^}]*\})?`).FindAllStringSubmatch(expr, -1) {
		f, ok := family(m[1])
		if !ok {
			t.Errorf("%s: %s is not exposed", what, m[1])
			continue
		}
		labels := exposed[f]
		if strings.HasSuffix(m[1], "_bucket") {
			labels = append(slices.Clone(labels), "le")
		}
		used = append(used, labels...)
		for _, l := range selectorLabels(m[2]) {
			if !slices.Contains(labels, l) && !slices.Contains(targetLabels, l) {
				t.Errorf("%s: selects %s on label %q, which it does not have (it has %v)", what, m[1], l, labels)
			}
		}
	}
	for _, m := range regexp.MustCompile(`\b(?:by|on)\s*\(([^)]*)\)`).FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(m[1], ",") {
			l = strings.TrimSpace(l)
			if l != "" && !slices.Contains(used, l) && !slices.Contains(targetLabels, l) {
				t.Errorf("%s: groups by %q, which none of its metrics has", what, l)
			}
		}
	}
}

// selectorLabels returns the label names of a selector's braces.
func selectorLabels(braces string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`).FindAllStringSubmatch(braces, -1) {
		out = append(out, m[1])
	}
	return out
}

func readRepoFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", path))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// scrapeConfiguredServer runs transferd against the provider simulators
// with a tenants file (so that the tenants, budget and credential metrics
// exist) and a callback secret, makes one transfer, and returns the
// transferd_ families /metrics exposes, each with its sorted label names
// (a histogram's without le).
func scrapeConfiguredServer(t *testing.T) map[string][]string {
	t.Helper()
	srv, sim := simulators(t)
	const apiKey = "metrics-doc-api-key-0001"
	file := fmt.Sprintf(`tenants:
  - name: acme
    keys: [{name: acme-crm, hash: "%s", scope: write}]
    providers:
      netsapiens: {base_url: "%s", api_key: {env: ACME_NS_KEY}, request_budget: 1000}
      bandwidth: {base_url: "%s", user_id: %s, api_token: {env: ACME_BW_TOKEN}, api_secret: {env: ACME_BW_SECRET}, request_budget: 1000}
`, sha(apiKey), srv.URL+pbxsim.NetSapiensAPIPath, srv.URL+pbxsim.BandwidthAPIPath, pbxsim.DemoBandwidthUser)
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ACME_NS_KEY", pbxsim.DemoNetSapiensKey)
	t.Setenv("ACME_BW_TOKEN", pbxsim.DemoBandwidthTok)
	t.Setenv("ACME_BW_SECRET", pbxsim.DemoBandwidthSec)
	t.Setenv("TRANSFERD_TENANTS_FILE", path)
	t.Setenv("TRANSFERD_CALLBACK_SECRET", "metrics-doc-callback-secret-0123456789abcdef")
	body := metricsAfterATransfer(t, srv, sim, "Authorization", "Bearer "+apiKey)
	families := map[string][]string{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (transferd_\S+) (\S+)$`).FindAllStringSubmatch(string(body), -1) {
		families[m[1]] = nil
	}
	series := regexp.MustCompile(`(?m)^(transferd_[a-z0-9_]+)(?:\{(.*)\})? \S+$`)
	label := regexp.MustCompile(`(?:^|,)([a-zA-Z_][a-zA-Z0-9_]*)="`)
	for _, m := range series.FindAllStringSubmatch(string(body), -1) {
		name := m[1]
		if _, ok := families[name]; !ok {
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				if f, ok := strings.CutSuffix(name, suffix); ok {
					if _, ok := families[f]; ok {
						name = f
					}
				}
			}
		}
		for _, l := range label.FindAllStringSubmatch(m[2], -1) {
			if l[1] != "le" && !slices.Contains(families[name], l[1]) {
				families[name] = append(families[name], l[1])
			}
		}
	}
	for f := range families {
		slices.Sort(families[f])
	}
	return families
}
