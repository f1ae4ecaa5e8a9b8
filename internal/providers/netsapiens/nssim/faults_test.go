package nssim_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

func TestFaultStatusAndCount(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	orig := h.placeCall("1000")
	hold := callPath("1000", orig.TermCallID, "hold")
	h.sim.InjectFault(nssim.Fault{Operation: nssim.OpHold, Status: 503, Count: 2, RetryAfter: "1"})
	for range 2 {
		r := h.api(http.MethodPatch, hold, nil)
		wantError(t, r, 503, "Service Unavailable")
		if got := r.header.Get("Retry-After"); got != "1" {
			t.Errorf("Retry-After %q, want 1", got)
		}
		// Other operations are unaffected.
		wantStatus(t, h.api(http.MethodGet, "/domains/TEST/calls", nil), 200)
	}
	h.idle()
	if c := h.calls()[0]; c.OrigInfo != nssim.InfoActive {
		t.Fatal("a failed hold took effect")
	}
	if f := h.sim.Faults(); len(f) != 0 {
		t.Fatalf("faults %+v left after their count", f)
	}
	wantAccepted(t, h.api(http.MethodPatch, hold, nil))
	h.idle()
	if c := h.calls()[0]; c.OrigInfo != nssim.InfoHeld {
		t.Fatal("hold did not take effect once the fault was used up")
	}
}

func TestFaultAnyUntilCleared(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	h.sim.InjectFault(nssim.Fault{Status: 429, Message: "slow down"})
	for _, path := range []string{"/domains/TEST/calls", "/domains/TEST/calls/count", "/nope"} {
		wantError(t, h.api(http.MethodGet, path, nil), 429, "slow down")
	}
	// Faults come before authentication, so chaos tests need no credentials.
	wantError(t, h.must("", http.MethodGet, apiBase+"/domains/TEST/calls", nil), 429, "slow down")
	h.sim.ClearFaults()
	wantStatus(t, h.api(http.MethodGet, "/domains/TEST/calls", nil), 200)
}

// TestFaultApply is the dangerous case for retries: the operation happened, the client was
// told otherwise.
func TestFaultApply(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	h.sim.InjectFault(nssim.Fault{Operation: nssim.OpCreate, Status: 500, Message: "boom", Count: 1, Apply: true})
	body := map[string]string{"call-id": "once", "call-term-user": "1010"}
	wantError(t, h.api(http.MethodPost, "/domains/TEST/users/1000/calls", body), 500, "boom")
	h.idle()
	if _, ok := findCall(h.calls(), func(c nssim.ActiveCall) bool { return c.OrigCallID == "once" }); !ok {
		t.Fatal("the applied create left no call")
	}
	// A blind retry now collides with the call it already made.
	wantError(t, h.api(http.MethodPost, "/domains/TEST/users/1000/calls", body), 409, "")
}

func TestFaultDrop(t *testing.T) {
	for _, apply := range []bool{false, true} {
		name := "lost request"
		if apply {
			name = "lost response"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, nssim.Config{})
			orig := h.placeCall("1000")
			h.sim.InjectFault(nssim.Fault{Operation: nssim.OpHold, Drop: true, Apply: apply, Count: 1})
			if _, err := h.send(t.Context(), domainKey, http.MethodPatch, apiBase+callPath("1000", orig.TermCallID, "hold"), nil); err == nil {
				t.Fatal("request succeeded through a dropped connection")
			}
			h.idle()
			want := nssim.InfoActive
			if apply {
				want = nssim.InfoHeld
			}
			if c := h.calls()[0]; c.OrigInfo != want {
				t.Errorf("caller %q, want %q", c.OrigInfo, want)
			}
			reqs := h.sim.Requests()
			if reqs[0].Operation != nssim.OpHold || reqs[0].Status != 0 {
				t.Errorf("recorded %+v, want the hold with no status", reqs[0])
			}
		})
	}
}

func TestFaultLatency(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	h.sim.InjectFault(nssim.Fault{Operation: nssim.OpList, Latency: time.Millisecond, Count: 1})
	wantStatus(t, h.api(http.MethodGet, "/domains/TEST/calls", nil), 200)

	orig := h.placeCall("1000")
	h.sim.InjectFault(nssim.Fault{Operation: nssim.OpHold, Latency: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	sent := make(chan error, 1)
	go func() {
		_, err := h.send(ctx, domainKey, http.MethodPatch, apiBase+callPath("1000", orig.TermCallID, "hold"), nil)
		sent <- err
	}()
	// The client gives up once the simulator holds the request.
	h.waitFor("the hold to arrive", func() bool {
		reqs := h.sim.Requests()
		return len(reqs) > 0 && reqs[len(reqs)-1].Operation == nssim.OpHold
	})
	cancel()
	if err := <-sent; err == nil {
		t.Fatal("the client should have given up")
	}
	// Close returns once every handler has returned, so the abandoned hold is settled.
	h.srv.Close()
	h.idle()
	if c := h.sim.Sessions("TEST")[0]; c.OrigInfo != nssim.InfoActive {
		t.Error("an abandoned request took effect")
	}
	reqs := h.sim.Requests()
	if last := reqs[len(reqs)-1]; last.Operation != nssim.OpHold || last.Status != 0 {
		t.Errorf("recorded %+v, want the hold with no status", last)
	}
}

func TestFaultValidate(t *testing.T) {
	bad := []nssim.Fault{
		{Operation: "park"},
		{Status: 42},
		{Count: -1},
		{Latency: -time.Second},
	}
	for _, f := range bad {
		if err := f.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", f)
		}
	}
	if err := (nssim.Fault{Operation: nssim.OpTransferPeer, Status: 503}).Validate(); err != nil {
		t.Errorf("valid fault: %v", err)
	}
}

func TestRequestRecording(t *testing.T) {
	now := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	h := newHarness(t, nssim.Config{Now: func() time.Time { return now }})
	h.api(http.MethodGet, "/domains/TEST/calls?limit=5", nil)
	wantError(t, h.must("", http.MethodGet, apiBase+"/domains/TEST/calls", nil), 401, "")
	const unknownKey = "nsd_NOTaKEYxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx87654321"
	r := h.must(unknownKey, http.MethodGet, apiBase+"/domains/TEST/calls", nil)
	if strings.Contains(string(r.body), unknownKey) {
		t.Error("the 401 body echoes the credential")
	}
	create := `{"call-id":"rec-1","call-term-user":"1010"}`
	h.api(http.MethodPost, "/domains/TEST/users/1000/calls", create)

	want := []nssim.Request{
		{Method: "GET", Path: "/domains/TEST/calls", Query: "limit=5", Operation: nssim.OpList, Status: 200, Time: now, Authorization: true},
		{Method: "GET", Path: "/domains/TEST/calls", Operation: nssim.OpList, Status: 401, Time: now},
		{Method: "GET", Path: "/domains/TEST/calls", Operation: nssim.OpList, Status: 401, Time: now, Authorization: true},
		{Method: "POST", Path: "/domains/TEST/users/1000/calls", Body: create, Operation: nssim.OpCreate, Status: 202, Time: now, Authorization: true},
	}
	got := h.sim.Requests()
	if len(got) != len(want) {
		t.Fatalf("recorded %d requests, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("request %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}

	raw := h.ctl(http.MethodGet, "/requests", nil)
	wantStatus(t, raw, 200)
	for _, secret := range []string{domainKey, unknownKey, "Bearer"} {
		if strings.Contains(string(raw.body), secret) {
			t.Errorf("recorded requests contain %q", secret)
		}
	}
	var rows []map[string]any
	raw.decode(t, &rows)
	for _, k := range []string{"method", "path", "query", "body", "operation", "status", "time", "authorization"} {
		if _, ok := rows[0][k]; !ok {
			t.Errorf("recorded request JSON lacks %q: %v", k, rows[0])
		}
	}

	wantStatus(t, h.ctl(http.MethodDelete, "/requests", nil), http.StatusNoContent)
	if n := len(h.sim.Requests()); n != 0 {
		t.Errorf("%d requests after reset", n)
	}
}

func TestHistoryLimit(t *testing.T) {
	h := newHarness(t, nssim.Config{HistoryLimit: 2})
	for _, q := range []string{"a=1", "a=2", "a=3"} {
		h.api(http.MethodGet, "/domains/TEST/calls?"+q, nil)
	}
	got := h.sim.Requests()
	if len(got) != 2 || got[0].Query != "a=2" || got[1].Query != "a=3" {
		t.Errorf("requests %+v, want the newest two", got)
	}
	for range 3 {
		c := h.placeCall("1000")
		if err := h.sim.Hangup(c.SessionID, "term"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(h.sim.Ended()); n != 2 {
		t.Errorf("%d ended sessions kept, want 2", n)
	}
	b, _ := json.Marshal(h.sim.Ended())
	if !strings.Contains(string(b), `"reason":"hangup"`) {
		t.Errorf("ended JSON %s", b)
	}
}

// A fault with a body answers it verbatim: a read of a live call that answers 200 without the
// call ({}, [], an empty body), which a client must not take for the call gone.
func TestFaultBody(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	c := h.placeCall("1000")
	read := "/domains/TEST/users/1000/calls/" + c.OrigCallID
	for _, body := range []string{`{}`, `[]`, ``} {
		h.sim.InjectFault(nssim.Fault{Operation: nssim.OpRead, Status: http.StatusOK, Body: &body, Count: 1})
		r := h.api(http.MethodGet, read, nil)
		wantStatus(t, r, http.StatusOK)
		if string(r.body) != body || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("fault body %q: answered %q (%s)", body, r.body, r.header.Get("Content-Type"))
		}
		if reqs := h.sim.Requests(); reqs[len(reqs)-1].Injected != nssim.InjectedStatus {
			t.Errorf("the read is recorded as %q, want %q", reqs[len(reqs)-1].Injected, nssim.InjectedStatus)
		}
		// The next read, past the fault, shows the call.
		var ac nssim.ActiveCall
		h.api(http.MethodGet, read, nil).decode(t, &ac)
		if ac.OrigCallID != c.OrigCallID {
			t.Errorf("the read after the fault answered %+v", ac)
		}
	}

	// On the control surface.
	wantControlError(t, h.ctl(http.MethodPost, "/faults", `{"operation":"read","body":"{}"}`), 400)
	wantStatus(t, h.ctl(http.MethodPost, "/faults", `{"operation":"read","status":200,"body":"[]","count":1}`), http.StatusNoContent)
	r := h.ctl(http.MethodGet, "/faults", nil)
	if want := `[{"operation":"read","status":200,"message":"","count":1,"latency":"","drop":false,"apply":false,"retry_after":"","body":"[]"}]`; string(r.body) != want {
		t.Errorf("faults %s\nwant   %s", r.body, want)
	}
	r = h.api(http.MethodGet, read, nil)
	if wantStatus(t, r, http.StatusOK); string(r.body) != `[]` {
		t.Errorf("read answered %s, want []", r.body)
	}
}

// TestControlFaultThatDoesNothingIsRefused: a fault posted without a status,
// a drop or a latency changed nothing, yet it was kept and, being the oldest
// of its operation, shadowed every fault posted after it for good (the
// Bandwidth simulator refuses it). An unknown operation is refused naming
// the operations there are, which the README does not list.
func TestControlFaultThatDoesNothingIsRefused(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	if r := h.ctl(http.MethodPost, "/faults", `{"operation":"hold","count":1}`); r.status != http.StatusBadRequest ||
		!strings.Contains(string(r.body), "status, drop or latency") {
		t.Errorf("a fault that does nothing: %d %s, want 400 saying what a fault needs", r.status, r.body)
	}
	if r := h.ctl(http.MethodPost, "/faults", `{"operation":"join","status":503}`); r.status != http.StatusBadRequest ||
		!strings.Contains(string(r.body), "transfer") || !strings.Contains(string(r.body), "hold") {
		t.Errorf("an unknown operation: %d %s, want 400 naming the operations", r.status, r.body)
	}
	if got := h.sim.Faults(); len(got) != 0 {
		t.Errorf("faults kept: %+v", got)
	}
	if r := h.ctl(http.MethodPost, "/faults", `{"operation":"hold","latency":"1ms"}`); r.status != http.StatusNoContent {
		t.Errorf("a latency alone: %d %s, want 204", r.status, r.body)
	}
}
