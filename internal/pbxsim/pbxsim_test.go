package pbxsim_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/transferd/transferd/internal/pbxsim"
)

// Stats counts accepted connections and provider API requests, not
// control requests, so that a load test can tell connection reuse apart
// from a connection per request.
func TestStatsCountConnectionsAndAPIRequests(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	sim := pbxsim.New(pbxsim.DemoConfig(base))
	srv := &http.Server{Handler: sim.Handler()}
	go func() { _ = srv.Serve(sim.CountConnections(ln)) }()
	t.Cleanup(func() { _ = srv.Close(); sim.Close() })

	get := func(c *http.Client, path string, auth func(*http.Request)) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if auth != nil {
			auth(req)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	ns := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+pbxsim.DemoNetSapiensKey) }
	bw := func(r *http.Request) { r.SetBasicAuth(pbxsim.DemoBandwidthTok, pbxsim.DemoBandwidthSec) }

	pooled := &http.Client{Transport: &http.Transport{}}
	defer pooled.CloseIdleConnections()
	for range 3 {
		get(pooled, pbxsim.NetSapiensAPIPath+"/domains/TEST/calls", ns)
	}
	get(pooled, pbxsim.BandwidthAPIPath+"/users/"+pbxsim.DemoBandwidthUser+"/calls", bw)
	get(pooled, pbxsim.NetSapiensControlPath+"/calls", nil)
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get(fresh, pbxsim.NetSapiensAPIPath+"/domains/TEST/calls", ns)

	var st pbxsim.Stats
	resp, err := http.Get(base + "/sim/stats") // one more connection
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	want := pbxsim.Stats{Connections: 3, NetSapiensRequests: 4, BandwidthRequests: 1}
	if st != want {
		t.Fatalf("stats = %+v, want %+v", st, want)
	}
}

// The answer controls of both simulators agree: nothing ringing for a
// user or a number is a state of the calls, 409 Conflict, with the
// controls' {"error"} body; a control path that names nothing is 404.
func TestAnswerControlsAgreeOnNothingRinging(t *testing.T) {
	sim := pbxsim.New(pbxsim.DemoConfig("http://127.0.0.1:0"))
	t.Cleanup(sim.Close)
	for _, tc := range []struct {
		path string
		want int
	}{
		{pbxsim.NetSapiensControlPath + "/users/TEST/1010/answer", http.StatusConflict},
		{pbxsim.BandwidthControlPath + "/numbers/%2B15555550222/answer", http.StatusConflict},
		{pbxsim.NetSapiensControlPath + "/users/TEST/1010/pickup", http.StatusNotFound},
		{pbxsim.BandwidthControlPath + "/numbers/%2B15555550222/pickup", http.StatusNotFound},
	} {
		rec := httptest.NewRecorder()
		sim.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, tc.path, nil))
		var body struct {
			Error string `json:"error"`
		}
		if rec.Code != tc.want || json.Unmarshal(rec.Body.Bytes(), &body) != nil || body.Error == "" {
			t.Errorf("POST %s: %d %s, want %d with an error", tc.path, rec.Code, rec.Body, tc.want)
		}
	}
}
