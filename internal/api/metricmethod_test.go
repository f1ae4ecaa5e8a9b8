package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestMetricsMethodLabelIsBounded: transferd_http_requests_total and
// transferd_http_request_duration_seconds were labelled by the method as
// the client sent it: any unauthenticated client could send made-up
// method tokens, each a new time series (a counter and a histogram of 12
// buckets), without bound. They are counted as "other" now.
func TestMetricsMethodLabelIsBounded(t *testing.T) {
	e := newEnv(t)
	for _, m := range []string{"REVIEWA", "REVIEWB", "REVIEWC"} {
		req, _ := http.NewRequest(m, e.srv.URL+"/v1/transfers", nil) // no Authorization
		res, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	res, err := e.srv.Client().Get(e.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var leaked []string
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "transferd_http_request") && strings.Contains(line, `method="REVIEW`) {
			leaked = append(leaked, line)
		}
	}
	if !strings.Contains(string(body), `transferd_http_requests_total{code="405",method="other",route="unmatched"} 3`) {
		t.Errorf("the three requests are not counted as method other:\n%s", body)
	}
	if len(leaked) > 0 {
		t.Fatalf("unauthenticated clients' arbitrary methods became %d series of the HTTP metrics, e.g.\n%s",
			len(leaked), strings.Join(leaked[:min(4, len(leaked))], "\n"))
	}
}
