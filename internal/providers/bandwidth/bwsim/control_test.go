package bwsim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func decodeJSON[T any](t *testing.T, r resp) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

func TestControlSurface(t *testing.T) {
	e := newEnv(t, Config{})

	r := e.control(http.MethodPost, "/calls", `{"from":"`+customer+`","to":"`+ownedMain+`","agent":"`+agent+`","callback_url":""}`)
	e.wantStatus(r, http.StatusCreated)
	placed := decodeJSON[PlaceCallResult](t, r)
	if placed.AgentCall == nil || placed.Bridge == nil || placed.Call.BridgeID != placed.Bridge.ID || placed.AgentCall.To != agent {
		t.Fatalf("placed = %s", r.body)
	}
	a, g := placed.Call.ID, placed.AgentCall.ID
	if got := decodeJSON[[]Call](t, e.control(http.MethodGet, "/calls", "")); len(got) != 2 {
		t.Errorf("GET /calls = %d calls", len(got))
	}
	if got := decodeJSON[Call](t, e.control(http.MethodGet, "/calls/"+a, "")); got.ID != a || got.Direction != DirectionIn {
		t.Errorf("GET /calls/{id} = %+v", got)
	}
	conn := decodeJSON[Connections](t, e.control(http.MethodGet, "/calls/"+a+"/connections", ""))
	if conn.Held || len(conn.ConnectedTo) != 1 || conn.ConnectedTo[0] != g {
		t.Errorf("connections = %+v", conn)
	}
	if got := decodeJSON[[]Bridge](t, e.control(http.MethodGet, "/bridges", "")); len(got) != 1 {
		t.Errorf("GET /bridges = %+v", got)
	}
	e.wantStatus(e.control(http.MethodGet, "/bridges/"+placed.Bridge.ID, ""), http.StatusOK)
	e.wantStatus(e.control(http.MethodGet, "/bridges/brg-none", ""), http.StatusNotFound)

	// Behaviour, then a transfer answered by hand.
	number := "/numbers/" + url.PathEscape(target)
	e.wantStatus(e.control(http.MethodPut, number+"/behaviour", `{"mode":"manual"}`), http.StatusNoContent)
	e.wantStatus(e.control(http.MethodPut, number+"/behaviour", `{"mode":"sing"}`), http.StatusBadRequest)
	e.wantStatus(e.control(http.MethodPut, number+"/behaviour", `{"mode":"after","delay":"soon"}`), http.StatusBadRequest)
	tr := e.send(http.MethodPost, callPath(a), `{"state":"transferring","transferTo":"`+target+`"}`)
	e.wantStatus(tr, http.StatusCreated)
	e.wantStatus(e.control(http.MethodGet, "/idle?timeout=5s", ""), http.StatusNoContent)
	if got := e.call(tr.id()).State; got != StateStarted {
		t.Fatalf("manual target state = %q", got)
	}
	e.wantStatus(e.control(http.MethodPost, "/numbers/"+strings.ReplaceAll(target, "+", "%2B")+"/answer", ""), http.StatusNoContent)
	// Nothing rings there any more: a state of the calls (409, as nssim answers), not a
	// path that names nothing (404).
	e.wantStatus(e.control(http.MethodPost, number+"/answer", ""), http.StatusConflict)
	e.wantStatus(e.control(http.MethodPost, "/numbers/%2B15550000000/answer", ""), http.StatusConflict)
	if !e.sim.Connected(a, tr.id()) {
		t.Error("not connected after control answer")
	}

	e.wantStatus(e.control(http.MethodPost, "/calls/"+tr.id()+"/hangup", ""), http.StatusNoContent)
	e.wantStatus(e.control(http.MethodPost, "/calls/"+tr.id()+"/hangup", ""), http.StatusConflict)
	e.wantStatus(e.control(http.MethodPost, "/calls/c-none/hangup", ""), http.StatusNotFound)
	e.wantStatus(e.control(http.MethodPost, "/calls/"+a+"/timeout", ""), http.StatusConflict)

	// Faults.
	e.wantStatus(e.control(http.MethodPost, "/faults", `{"operation":"getCall","status":503,"count":1,"latency":"1ms"}`), http.StatusNoContent)
	faults := decodeJSON[[]faultJSON](t, e.control(http.MethodGet, "/faults", ""))
	if len(faults) != 1 || faults[0].Status != 503 || time.Duration(faults[0].Latency) != time.Millisecond {
		t.Errorf("faults = %+v", faults)
	}
	e.wantError(e.send(http.MethodGet, callPath(g), ""), http.StatusServiceUnavailable, "call-unavailable",
		"The call `"+g+"` is being initialized and cannot be modified now retry your operation later")
	e.wantStatus(e.control(http.MethodPost, "/faults", `{"operation":"everything","status":503}`), http.StatusBadRequest)
	e.wantStatus(e.control(http.MethodPost, "/faults", `{"operation":"getCall"}`), http.StatusBadRequest)
	e.wantStatus(e.control(http.MethodPost, "/faults", `{"operation":"getCall","status":503,"surprise":1}`), http.StatusBadRequest)
	e.wantStatus(e.control(http.MethodPost, "/faults", `{"operation":"any","status":429,"rate_limit_reset":"2s"}`), http.StatusNoContent)
	e.wantStatus(e.control(http.MethodDelete, "/faults", ""), http.StatusNoContent)
	e.wantStatus(e.send(http.MethodGet, callPath(g), ""), http.StatusOK)

	// Requests and callbacks.
	reqs := decodeJSON[[]Request](t, e.control(http.MethodGet, "/requests", ""))
	if len(reqs) == 0 || reqs[0].Operation != OpTransfer {
		t.Errorf("requests = %+v", reqs)
	}
	e.wantStatus(e.control(http.MethodDelete, "/requests", ""), http.StatusNoContent)
	if got := decodeJSON[[]Request](t, e.control(http.MethodGet, "/requests", "")); len(got) != 0 {
		t.Errorf("requests after DELETE = %d", len(got))
	}
	e.wantStatus(e.control(http.MethodGet, "/callbacks", ""), http.StatusOK)

	// Errors are JSON.
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/nothing", http.StatusNotFound},
		{http.MethodPatch, "/calls", http.StatusMethodNotAllowed},
		{http.MethodPost, "/calls", http.StatusBadRequest},
	} {
		r := e.control(tc.method, tc.path, `{"frm":"x"}`)
		e.wantStatus(r, tc.status)
		if m := decodeJSON[map[string]string](t, r); m["error"] == "" {
			t.Errorf("%s %s: body %s", tc.method, tc.path, r.body)
		}
	}
	e.wantStatus(e.control(http.MethodGet, "/idle?timeout=x", ""), http.StatusBadRequest)

	e.wantStatus(e.control(http.MethodPost, "/reset", ""), http.StatusNoContent)
	if got := decodeJSON[[]Call](t, e.control(http.MethodGet, "/calls", "")); len(got) != 0 {
		t.Errorf("calls after reset = %d", len(got))
	}
}

func TestHandlerLayout(t *testing.T) {
	sim := New(Config{OwnedNumbers: []string{ownedMain}})
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() {
		sim.Close()
		srv.Close()
	})
	res, err := srv.Client().Post(srv.URL+"/sim/calls", "application/json", strings.NewReader(`{"from":"`+customer+`","to":"`+ownedMain+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("control: %s", res.Status)
	}
	res, err = srv.Client().Get(srv.URL + "/v1/users/u-sim/calls")
	if err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("api: %s", res.Status)
	}
}

// TestControlEmptyListsAreArrays: with nothing recorded, GET /requests and
// GET /callbacks answered null where every other list of both simulators
// answers [] (a client iterating over the answer broke on the empty case).
func TestControlEmptyListsAreArrays(t *testing.T) {
	e := newEnv(t, Config{})
	for _, path := range []string{"/requests", "/callbacks", "/calls", "/bridges", "/faults", "/actions"} {
		r := e.control(http.MethodGet, path, "")
		e.wantStatus(r, http.StatusOK)
		if got := strings.TrimSpace(string(r.body)); got != "[]" {
			t.Errorf("GET %s with nothing recorded = %s, want []", path, got)
		}
	}
}
