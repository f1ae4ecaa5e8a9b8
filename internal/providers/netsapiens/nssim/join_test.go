package nssim_test

import (
	"net/http"
	"testing"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// A CallRequest to an external number renders its leg as the spec's example does under
// NumbersPSTN (the default): no user, domain "*", the number in the URI and the dialed
// number; under NumbersAsUsers as a user of the domain. Extensions are users either way, and
// the number still names the party for SetBehaviour and Answer.
func TestExternalNumbers(t *testing.T) {
	for _, tc := range []struct {
		cfg                  string
		target               string
		user, domain, uri    string
		truthUser, truthNums string
	}{
		{"", "18587645200", "", "*", "sip:18587645200@192.0.2.10", "", "18587645200"},
		{nssim.NumbersPSTN, "+442071234567", "", "*", "sip:+442071234567@192.0.2.10", "", "+442071234567"},
		{nssim.NumbersPSTN, "1010", "1010", "TEST", "sip:1010@TEST", "1010", ""},
		{nssim.NumbersPSTN, "123456789", "123456789", "TEST", "sip:123456789@TEST", "123456789", ""},
		{nssim.NumbersAsUsers, "18587645200", "18587645200", "TEST", "sip:18587645200@TEST", "18587645200", ""},
	} {
		t.Run(tc.cfg+" "+tc.target, func(t *testing.T) {
			h := newHarness(t, nssim.Config{ExternalNumbers: tc.cfg})
			h.sim.SetBehaviour("TEST", tc.target, nssim.Behaviour{Mode: nssim.ModeManual})
			r := h.api(http.MethodPost, "/domains/TEST/users/1000/calls", map[string]string{
				"synchronous": "no", "call-id": "c-1", "call-term-user": tc.target, "auto-answer-enabled": "yes",
			})
			wantStatus(t, r, http.StatusAccepted)
			h.idle()
			if err := h.sim.Answer("TEST", tc.target); err != nil {
				t.Fatalf("answering the number's leg: %v", err)
			}
			c, ok := findCall(h.calls(), func(c nssim.ActiveCall) bool { return c.OrigCallID == "c-1" })
			if !ok {
				t.Fatal("the call is not listed")
			}
			if c.TermUser != tc.user || c.TermDomain != tc.domain || c.TermURI != tc.uri || c.DialedNumber != tc.target ||
				c.OrigUser != "1000" || c.TermInfo != nssim.InfoActive {
				t.Errorf("listed %+v; want term user %q domain %q uri %q, dialed %q", c, tc.user, tc.domain, tc.uri, tc.target)
			}
			term := h.sim.Truth().Sessions[0].Term
			if term.User != tc.truthUser || term.Number != tc.truthNums {
				t.Errorf("truth of the leg %+v; want user %q number %q", term, tc.truthUser, tc.truthNums)
			}
		})
	}
}

// Which session survives an attended transfer is Config.JoinKeeps. With JoinKeepsConsult
// the consultation session survives with the caller in the transferring user's place, our
// call-id still addresses it (and disconnecting by it ends the joined call), and the
// caller's session ends as transferred.
func TestJoinKeeps(t *testing.T) {
	t.Run("caller", func(t *testing.T) {
		h := newHarness(t, nssim.Config{JoinKeeps: nssim.JoinKeepsCaller})
		orig, consult := setupConsult(h)
		wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.OrigCallID, "transfer"), map[string]string{
			"hostname": orig.CoreServer, "call-destination-session-id": consult.SessionID,
		}))
		h.idle()
		calls := h.calls()
		if len(calls) != 1 || calls[0].SessionID != orig.SessionID || calls[0].TermCallID != consult.TermCallID {
			t.Fatalf("calls %+v; want the caller's session with the consult's target leg", calls)
		}
		wantEnded(t, h.sim, consult.SessionID, nssim.EndTransferred)
		wantStatus(t, h.api(http.MethodDelete, callPath("1000", "consult-1", ""), nil), http.StatusNotFound)
	})
	t.Run("consult", func(t *testing.T) {
		h := newHarness(t, nssim.Config{JoinKeeps: nssim.JoinKeepsConsult})
		orig, consult := setupConsult(h)
		wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.OrigCallID, "transfer"), map[string]string{
			"hostname": orig.CoreServer, "call-destination-session-id": consult.SessionID,
		}))
		h.idle()
		calls := h.calls()
		if len(calls) != 1 {
			t.Fatalf("calls %+v; want one", calls)
		}
		got := calls[0]
		if got.SessionID != consult.SessionID || got.ByCallID != "consult-1" || got.CoreServer != consult.CoreServer ||
			got.OrigCallID != orig.OrigCallID || got.OrigUser != "" || got.OrigInfo != nssim.InfoActive ||
			got.TermCallID != consult.TermCallID || got.TermUser != "1010" || got.TermInfo != nssim.InfoActive {
			t.Errorf("surviving call %+v; want the consult's session, the caller in 1000's place", got)
		}
		wantEnded(t, h.sim, orig.SessionID, nssim.EndTransferred)
		wantStatus(t, h.api(http.MethodGet, callPath("1000", "consult-1", ""), nil), http.StatusOK)
		wantStatus(t, h.api(http.MethodDelete, callPath("1000", "consult-1", ""), nil), http.StatusOK)
		if calls := h.calls(); len(calls) != 0 {
			t.Errorf("calls %+v after disconnecting by the call-id; want none", calls)
		}
		if s := h.sim.Truth().Sessions; len(s) != 0 {
			t.Errorf("sessions %+v outlived the disconnection", s)
		}
		// The call-id no longer addresses anything.
		wantStatus(t, h.api(http.MethodGet, callPath("1000", "consult-1", ""), nil), http.StatusNotFound)
	})
	// JoinHidesCallBy: the kept session shows no call-by-* fields, and the call-id still
	// addresses it.
	t.Run("consult, call-by hidden", func(t *testing.T) {
		h := newHarness(t, nssim.Config{JoinKeeps: nssim.JoinKeepsConsult, JoinHidesCallBy: true})
		orig, consult := setupConsult(h)
		if consult.ByCallID != "consult-1" {
			t.Fatalf("consult %+v before the join; want its call-by-call-id shown", consult)
		}
		wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.OrigCallID, "transfer"), map[string]string{
			"hostname": orig.CoreServer, "call-destination-session-id": consult.SessionID,
		}))
		h.idle()
		calls := h.calls()
		if len(calls) != 1 || calls[0].SessionID != consult.SessionID || calls[0].OrigCallID != orig.OrigCallID ||
			calls[0].ByCallID != "" || calls[0].ByAction != "" || calls[0].ByUser != "" {
			t.Fatalf("calls %+v; want the consult's session, the caller in 1000's place, no call-by-* fields", calls)
		}
		wantStatus(t, h.api(http.MethodGet, callPath("1000", "consult-1", ""), nil), http.StatusOK)
		wantStatus(t, h.api(http.MethodDelete, callPath("1000", "consult-1", ""), nil), http.StatusOK)
		if calls := h.calls(); len(calls) != 0 {
			t.Errorf("calls %+v after disconnecting by the call-id; want none", calls)
		}
	})
}

func TestJoinConfigValidation(t *testing.T) {
	for _, cfg := range []nssim.Config{{ExternalNumbers: "e164"}, {JoinKeeps: "both"}} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%+v validated", cfg)
		}
	}
}
