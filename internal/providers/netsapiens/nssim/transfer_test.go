package nssim_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// TestAttendedTransferGuide walks the vendor's "Attended Transfer via API" guide step by step.
func TestAttendedTransferGuide(t *testing.T) {
	h := newHarness(t, nssim.Config{})

	// Step 1: an inbound call from +1-555-555-5555 to +1-111-111-1111, answered by 1000.
	r := h.ctl(http.MethodPost, "/calls", map[string]string{
		"domain": "TEST", "user": "1000", "from": "15555555555", "to": "11111111111",
	})
	wantStatus(t, r, http.StatusCreated)

	// Step 2: read the domain's active calls and note the ids.
	calls := h.calls()
	if len(calls) != 1 {
		t.Fatalf("%d calls, want 1", len(calls))
	}
	orig := calls[0]
	if orig.TermUser != "1000" || orig.TermDomain != "TEST" || orig.CallerIDNumber != "15555555555" ||
		orig.DialedNumber != "11111111111" || orig.OrigInfo != nssim.InfoActive || orig.TermInfo != nssim.InfoActive {
		t.Fatalf("inbound call %+v", orig)
	}

	// Step 3: 1000 holds the call by its own leg, the call-term-call-id.
	wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.TermCallID, "hold"), nil))
	h.idle()
	held := h.calls()[0]
	if held.OrigInfo != nssim.InfoHeld || held.TermInfo != nssim.InfoActive {
		t.Fatalf("after hold: orig %q term %q, want the caller held", held.OrigInfo, held.TermInfo)
	}

	// Step 4: 1000 calls 1010 to consult; 1000's webphone auto-answers the callback leg.
	r = h.api(http.MethodPost, "/domains/TEST/users/1000/calls", map[string]string{
		"synchronous": "no", "call-id": "xfer-7f3a9c2e1b", "call-term-user": "1010", "auto-answer-enabled": "yes",
	})
	wantStatus(t, r, http.StatusAccepted)
	if string(r.body) != "{}" {
		t.Errorf("create body %s, want {}", r.body)
	}
	h.idle()

	// Step 5: find the consultation call by the call-id we chose.
	consult, ok := findCall(h.calls(), func(c nssim.ActiveCall) bool { return c.OrigCallID == "xfer-7f3a9c2e1b" })
	if !ok {
		t.Fatal("consultation call not listed")
	}
	if consult.OrigUser != "1000" || consult.TermUser != "1010" || consult.OrigInfo != nssim.InfoActive ||
		consult.TermInfo != nssim.InfoActive || consult.ByAction != "CallRequest" ||
		consult.ByCallID != "xfer-7f3a9c2e1b" || consult.ByUser != "1000" {
		t.Fatalf("consultation call %+v", consult)
	}
	if consult.SessionID == orig.SessionID {
		t.Fatal("consultation shares the original session id")
	}

	// Step 6: transfer the original call (by its call-orig-call-id) onto the consultation.
	wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.OrigCallID, "transfer"), map[string]string{
		"hostname": orig.CoreServer, "call-destination-session-id": consult.SessionID,
	}))
	h.idle()

	calls = h.calls()
	if len(calls) != 1 {
		t.Fatalf("%d calls after the transfer, want 1: %+v", len(calls), calls)
	}
	got := calls[0]
	if got.SessionID != orig.SessionID || got.OrigCallID != orig.OrigCallID || got.CallerIDNumber != "15555555555" {
		t.Errorf("surviving session %+v, want the caller's original session", got)
	}
	if got.TermUser != "1010" || got.TermCallID != consult.TermCallID {
		t.Errorf("caller connected to %s (%s), want 1010 on %s", got.TermUser, got.TermCallID, consult.TermCallID)
	}
	if got.OrigInfo != nssim.InfoActive || got.TermInfo != nssim.InfoActive {
		t.Errorf("legs %q/%q, want both active", got.OrigInfo, got.TermInfo)
	}
	wantEnded(t, h.sim, consult.SessionID, nssim.EndTransferred)
	if n := len(h.sim.Ended()); n != 1 {
		t.Errorf("%d sessions ended, want only the consultation", n)
	}
	// 1000 is no longer on any call.
	r = h.api(http.MethodGet, "/domains/TEST/users/1000/calls", nil)
	wantStatus(t, r, http.StatusOK)
	if string(r.body) != "[]" {
		t.Errorf("1000's calls %s, want []", r.body)
	}
}

// setupConsult reaches step 6 of the guide: the caller held, 1000 talking to 1010.
func setupConsult(h *harness) (orig, consult nssim.ActiveCall) {
	h.t.Helper()
	orig = h.placeCall("1000")
	wantAccepted(h.t, h.api(http.MethodPatch, callPath("1000", orig.TermCallID, "hold"), nil))
	consult = h.consult("1000", "1010", "consult-1")
	return orig, consult
}

func TestAttendedTransferWithTermUserPitfall(t *testing.T) {
	t.Run("ignore", func(t *testing.T) {
		h := newHarness(t, nssim.Config{})
		orig, consult := setupConsult(h)
		wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.OrigCallID, "transfer"), map[string]string{
			"hostname": orig.CoreServer, "call-destination-session-id": consult.SessionID, "call-term-user": "1010",
		}))
		h.idle()
		calls := h.calls()
		if len(calls) != 2 || len(h.sim.Ended()) != 0 {
			t.Fatalf("calls %+v, ended %+v: want both calls up and nothing merged", calls, h.sim.Ended())
		}
		stillHeld, _ := findCall(calls, func(c nssim.ActiveCall) bool { return c.SessionID == orig.SessionID })
		if stillHeld.TermUser != "1000" || stillHeld.OrigInfo != nssim.InfoHeld {
			t.Errorf("original call %+v, want the caller still held by 1000", stillHeld)
		}
	})
	t.Run("blind", func(t *testing.T) {
		h := newHarness(t, nssim.Config{TransferWithTermUser: nssim.TermUserBlind})
		orig, consult := setupConsult(h)
		wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.OrigCallID, "transfer"), map[string]string{
			"hostname": orig.CoreServer, "call-destination-session-id": consult.SessionID, "call-term-user": "1020",
		}))
		h.idle()
		got, _ := findCall(h.calls(), func(c nssim.ActiveCall) bool { return c.SessionID == orig.SessionID })
		if got.TermUser != "1020" || got.TermInfo != nssim.InfoActive || got.OrigInfo != nssim.InfoActive {
			t.Errorf("original call %+v, want the caller blind-transferred to 1020", got)
		}
		if _, ok := findCall(h.calls(), func(c nssim.ActiveCall) bool { return c.SessionID == consult.SessionID }); !ok {
			t.Error("the consultation call should be untouched")
		}
	})
}

func TestAttendedTransferVariants(t *testing.T) {
	tests := []struct {
		name       string
		cfg        nssim.Config
		host       func(orig, consult nssim.ActiveCall) string
		dest       func(consult nssim.ActiveCall) string
		callID     func(orig nssim.ActiveCall) string
		wantStatus int
		wantMerge  bool
	}{
		{name: "orig call id", wantStatus: 202, wantMerge: true},
		{
			name:       "term call id is accepted too",
			callID:     func(o nssim.ActiveCall) string { return o.TermCallID },
			wantStatus: 202, wantMerge: true,
		},
		{
			name:       "hostname case-insensitive",
			host:       func(o, _ nssim.ActiveCall) string { return "CORE1-SIM.netsapiens.TEST" },
			wantStatus: 202, wantMerge: true,
		},
		{
			name:       "wrong hostname ignored",
			host:       func(_, c nssim.ActiveCall) string { return c.CoreServer },
			wantStatus: 202,
		},
		{
			name:       "wrong hostname rejected",
			cfg:        nssim.Config{WrongHostname: nssim.HostnameReject},
			host:       func(_, _ nssim.ActiveCall) string { return "elsewhere.example" },
			wantStatus: 400,
		},
		{
			name:       "missing hostname is a wrong hostname",
			cfg:        nssim.Config{WrongHostname: nssim.HostnameReject},
			host:       func(_, _ nssim.ActiveCall) string { return "" },
			wantStatus: 400,
		},
		{
			name:       "hostname of the destination",
			cfg:        nssim.Config{HostnameMatch: nssim.HostnameOfDestination},
			host:       func(_, c nssim.ActiveCall) string { return c.CoreServer },
			wantStatus: 202, wantMerge: true,
		},
		{
			name:       "hostname of either",
			cfg:        nssim.Config{HostnameMatch: nssim.HostnameOfEither},
			host:       func(_, c nssim.ActiveCall) string { return c.CoreServer },
			wantStatus: 202, wantMerge: true,
		},
		{
			name:       "unknown destination ignored",
			dest:       func(nssim.ActiveCall) string { return "99999999999999999999" },
			wantStatus: 202,
		},
		{
			name:       "unknown destination not found",
			cfg:        nssim.Config{UnknownDestination: nssim.DestinationNotFound},
			dest:       func(nssim.ActiveCall) string { return "99999999999999999999" },
			wantStatus: 404,
		},
		{
			name:       "hostname without destination",
			dest:       func(nssim.ActiveCall) string { return "" },
			wantStatus: 400,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			orig, consult := setupConsult(h)
			if orig.CoreServer == consult.CoreServer {
				t.Fatal("round-robin should put the two sessions on different cores")
			}
			host, dest, callID := orig.CoreServer, consult.SessionID, orig.OrigCallID
			if tc.host != nil {
				host = tc.host(orig, consult)
			}
			if tc.dest != nil {
				dest = tc.dest(consult)
			}
			if tc.callID != nil {
				callID = tc.callID(orig)
			}
			r := h.api(http.MethodPatch, callPath("1000", callID, "transfer"), map[string]string{
				"hostname": host, "call-destination-session-id": dest,
			})
			wantStatus(t, r, tc.wantStatus)
			h.idle()
			calls := h.calls()
			merged := len(calls) == 1 && calls[0].SessionID == orig.SessionID && calls[0].TermUser == "1010"
			if merged != tc.wantMerge {
				t.Fatalf("merged = %v, want %v; calls %+v", merged, tc.wantMerge, calls)
			}
			if !tc.wantMerge && len(calls) != 2 {
				t.Fatalf("%d calls, want both untouched", len(calls))
			}
		})
	}
}

// TestAttendedTransferBeforeAnswer: a consultation still ringing is not merged [G]; once the
// target answers, the same request works.
func TestAttendedTransferBeforeAnswer(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	h.sim.SetBehaviour("TEST", "1010", nssim.Behaviour{Mode: nssim.ModeManual})
	orig := h.placeCall("1000")
	consult := h.consult("1000", "1010", "consult-ringing")
	if consult.TermInfo != nssim.InfoAlerting || consult.AnswerDatetime != "0000-00-00 00:00:00" {
		t.Fatalf("consultation %+v, want 1010 ringing", consult)
	}
	transfer := func() {
		wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.OrigCallID, "transfer"), map[string]string{
			"hostname": orig.CoreServer, "call-destination-session-id": consult.SessionID,
		}))
		h.idle()
	}
	transfer()
	if n := len(h.calls()); n != 2 {
		t.Fatalf("%d calls, want no merge while 1010 rings", n)
	}
	wantStatus(t, h.ctl(http.MethodPost, "/users/TEST/1010/answer", nil), http.StatusNoContent)
	h.idle()
	transfer()
	calls := h.calls()
	if len(calls) != 1 || calls[0].TermUser != "1010" {
		t.Fatalf("calls %+v, want the caller merged with 1010", calls)
	}
}

func TestBlindTransfer(t *testing.T) {
	tests := []struct {
		name     string
		action   string
		body     any
		target   string
		behavior string
		wantEnd  nssim.EndReason
	}{
		{name: "call-term-user", action: "transfer", body: map[string]string{"call-term-user": "1020"}, target: "1020"},
		{name: "destination alias", action: "transfer", body: map[string]string{"destination": "1021"}, target: "1021"},
		{name: "numeric target", action: "transfer", body: `{"call-term-user":1022}`, target: "1022"},
		{name: "transferPeer", action: "transferPeer", body: map[string]string{"destination": "sip:1030@TEST"}, target: "1030"},
		{name: "busy target", action: "transfer", body: map[string]string{"call-term-user": "1040"}, behavior: nssim.ModeBusy, wantEnd: nssim.EndBusy},
		{name: "rejecting target", action: "transfer", body: map[string]string{"call-term-user": "1041"}, behavior: nssim.ModeReject, wantEnd: nssim.EndRejected},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nssim.Config{})
			if tc.behavior != "" {
				h.sim.SetBehaviour("TEST", "1040", nssim.Behaviour{Mode: tc.behavior})
				h.sim.SetBehaviour("TEST", "1041", nssim.Behaviour{Mode: tc.behavior})
			}
			orig := h.placeCall("1000")
			wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.TermCallID, "hold"), nil))
			wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.TermCallID, tc.action), tc.body))
			h.idle()
			if tc.wantEnd != "" {
				wantEnded(t, h.sim, orig.SessionID, tc.wantEnd)
				return
			}
			calls := h.calls()
			if len(calls) != 1 {
				t.Fatalf("%d calls, want 1", len(calls))
			}
			got := calls[0]
			if got.SessionID != orig.SessionID || got.TermUser != tc.target || got.TermCallID == orig.TermCallID ||
				got.TermInfo != nssim.InfoActive || got.OrigInfo != nssim.InfoActive {
				t.Errorf("after blind transfer %+v, want the caller talking to %s on a new leg", got, tc.target)
			}
		})
	}
	t.Run("missing target", func(t *testing.T) {
		h := newHarness(t, nssim.Config{})
		orig := h.placeCall("1000")
		wantError(t, h.api(http.MethodPatch, callPath("1000", orig.TermCallID, "transfer"), nil), 400, "call-term-user")
		wantError(t, h.api(http.MethodPatch, callPath("1000", orig.TermCallID, "transferPeer"), "{}"), 400, "destination")
	})
}

// TestConcurrentTransfers runs many guide flows at once, for the race detector.
func TestConcurrentTransfers(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	const n = 16
	t.Run("group", func(t *testing.T) {
		for i := range n {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				user, target := fmt.Sprint(2000+i), fmt.Sprint(3000+i)
				orig, err := h.sim.PlaceCall(nssim.InboundCall{Domain: "TEST", User: user})
				if err != nil {
					t.Fatal(err)
				}
				r, err := h.send(t.Context(), domainKey, http.MethodPost, apiBase+"/domains/TEST/users/"+user+"/calls",
					map[string]string{"call-id": "c-" + user, "call-term-user": target, "auto-answer-enabled": "yes"})
				if err != nil || r.status != http.StatusAccepted {
					t.Fatalf("create: %v %d", err, r.status)
				}
				var consult nssim.ActiveCall
				waitCtx := h.ctx()
				if err := h.sim.Wait(waitCtx, func() bool {
					c, ok := findCall(h.sim.Sessions("TEST"), func(c nssim.ActiveCall) bool { return c.OrigCallID == "c-"+user })
					consult = c
					return ok && c.TermInfo == nssim.InfoActive
				}); err != nil {
					t.Fatal(err)
				}
				r, err = h.send(t.Context(), domainKey, http.MethodPatch,
					apiBase+"/domains/TEST/users/"+user+"/calls/"+orig.OrigCallID+"/transfer",
					map[string]string{"hostname": orig.CoreServer, "call-destination-session-id": consult.SessionID})
				if err != nil || r.status != http.StatusAccepted {
					t.Fatalf("transfer: %v %d", err, r.status)
				}
			})
		}
	})
	h.idle()
	calls := h.sim.Sessions("TEST")
	if len(calls) != n {
		t.Fatalf("%d calls, want %d", len(calls), n)
	}
	for _, c := range calls {
		if c.TermUser[0] != '3' || c.TermInfo != nssim.InfoActive {
			t.Errorf("call %+v not transferred to its target", c)
		}
	}
	if len(h.sim.Ended()) != n {
		t.Errorf("%d ended, want %d consultations", len(h.sim.Ended()), n)
	}
}

// TestActionDelay: a 202 is only an acceptance; the effect comes later.
func TestActionDelay(t *testing.T) {
	t.Run("not yet", func(t *testing.T) {
		h := newHarness(t, nssim.Config{ActionDelay: time.Hour})
		orig := h.placeCall("1000")
		wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.TermCallID, "hold"), nil))
		h.idle()
		if c := h.calls()[0]; c.OrigInfo != nssim.InfoActive {
			t.Fatalf("hold applied before ActionDelay: %+v", c)
		}
	})
	t.Run("eventually", func(t *testing.T) {
		h := newHarness(t, nssim.Config{ActionDelay: 5 * time.Millisecond})
		orig := h.placeCall("1000")
		wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.TermCallID, "hold"), nil))
		h.waitFor("hold", func() bool { return h.sim.Sessions("TEST")[0].OrigInfo == nssim.InfoHeld })
	})
}
