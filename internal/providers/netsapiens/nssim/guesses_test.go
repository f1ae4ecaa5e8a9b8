package nssim_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// TestControlGuesses switches a guess at run time through the control surface: the next hold
// follows it, a bad value is refused and changes nothing, and DELETE puts back the guesses
// the simulator was made with.
func TestControlGuesses(t *testing.T) {
	h := newHarness(t, nssim.Config{JoinKeeps: nssim.JoinKeepsConsult})
	var g nssim.Guesses
	h.ctl(http.MethodGet, "/config/guesses", nil).decode(t, &g)
	want := nssim.Guesses{TermInfoField: nssim.TermInfoBoth, TransferWithTermUser: nssim.TermUserIgnore,
		WrongHostname: nssim.HostnameIgnore, HostnameMatch: nssim.HostnameOfOriginal, UnknownDestination: nssim.DestinationIgnore,
		HeldSide: nssim.HeldRemote, ExternalNumbers: nssim.NumbersPSTN, JoinKeeps: nssim.JoinKeepsConsult, HeldInfo: nssim.InfoHeld, RingingDisconnect: nssim.RingingEnds,
		ReadOtherLeg: nssim.OtherLegFound, NotRingingStatus: 409, DuplicateCallIDStatus: 409, SubscriptionNames: nssim.NamesLegacy, SubscriptionShape: nssim.ShapeArray,
		ListParams: nssim.ListParamsHonoured, EmptyListing: nssim.EmptyListingArray, SubscriptionPostURL: nssim.PostURLVerbatim}
	if g != want {
		t.Fatalf("guesses at start %+v, want %+v", g, want)
	}

	held := func() (orig, term string) {
		t.Helper()
		c := h.placeCall("1000")
		wantAccepted(t, h.api(http.MethodPatch, callPath("1000", c.TermCallID, "hold"), nil))
		h.idle()
		for _, l := range h.calls() {
			if l.SessionID == c.SessionID {
				return l.OrigInfo, l.TermInfo
			}
		}
		t.Fatalf("call %s is gone", c.SessionID)
		return "", ""
	}
	if o, tm := held(); o != nssim.InfoHeld || tm != nssim.InfoActive {
		t.Fatalf("held remote: orig %q term %q", o, tm)
	}

	r := h.ctl(http.MethodPut, "/config/guesses", `{"held_side":"both","not_ringing_status":422}`)
	wantStatus(t, r, http.StatusOK)
	r.decode(t, &g)
	// Absent fields take their default: join_keeps is "caller" now, not the configured one.
	if g.HeldSide != nssim.HeldBoth || g.NotRingingStatus != 422 || g.JoinKeeps != nssim.JoinKeepsCaller || g.TermInfoField != nssim.TermInfoBoth {
		t.Errorf("PUT answered %+v", g)
	}
	if o, tm := held(); o != nssim.InfoHeld || tm != nssim.InfoHeld {
		t.Errorf("held both: orig %q term %q", o, tm)
	}

	// A held leg may show a word other than "held" (HeldInfo).
	wantStatus(t, h.ctl(http.MethodPut, "/config/guesses", `{"held_info":"onhold"}`), http.StatusOK)
	if o, tm := held(); o != "onhold" || tm != nssim.InfoActive {
		t.Errorf("held shown as onhold: orig %q term %q", o, tm)
	}
	wantStatus(t, h.ctl(http.MethodPut, "/config/guesses", `{"held_side":"both","not_ringing_status":422}`), http.StatusOK)

	for _, bad := range []string{`{"held_side":"local"}`, `{"held_info":"active"}`, `{"not_ringing_status":200}`, `{"colour":"red"}`, `{"held_side":`} {
		r := h.ctl(http.MethodPut, "/config/guesses", bad)
		wantControlError(t, r, http.StatusBadRequest)
		if bad == `{"held_side":"local"}` && !strings.Contains(string(r.body), "held_side") {
			t.Errorf("PUT %s: error %s does not name the field", bad, r.body)
		}
	}
	if got := h.sim.Guesses(); got.HeldSide != nssim.HeldBoth || got.NotRingingStatus != 422 {
		t.Errorf("a refused PUT changed the guesses: %+v", got)
	}

	wantStatus(t, h.ctl(http.MethodDelete, "/config/guesses", nil), http.StatusNoContent)
	if got := h.sim.Guesses(); got != want {
		t.Errorf("after DELETE %+v, want the configured %+v", got, want)
	}
	if o, tm := held(); o != nssim.InfoHeld || tm != nssim.InfoActive {
		t.Errorf("held after DELETE: orig %q term %q", o, tm)
	}
}

// TestGuessesRenderAtOnce: the rendering guesses apply to the next read.
func TestGuessesRenderAtOnce(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	h.placeCall("1000")
	read := func() string {
		r := h.api(http.MethodGet, "/domains/TEST/users/1000/calls", nil)
		wantStatus(t, r, http.StatusOK)
		return string(r.body)
	}
	if b := read(); !strings.Contains(b, `"call-term-info"`) || !strings.Contains(b, `"term-orig-info"`) || !strings.Contains(b, `"call-term-user":"1000"`) {
		t.Fatalf("default rendering %s", b)
	}
	if err := h.sim.SetGuesses(nssim.Guesses{TermInfoField: nssim.TermInfoSpec, NumericUsers: true}); err != nil {
		t.Fatal(err)
	}
	if b := read(); strings.Contains(b, `"call-term-info"`) || !strings.Contains(b, `"term-orig-info"`) || !strings.Contains(b, `"call-term-user":1000`) {
		t.Errorf("rendering after SetGuesses %s", b)
	}
}

// A guess refused on the control surface is named as the client sent it, by its JSON name,
// never by the Go field behind it, and the error lists the values it accepts.
func TestGuessErrorsNameTheJSONField(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	for _, tc := range []struct {
		body   string
		goName string // must not appear
		want   []string
	}{
		{`{"term_info_field":"x"}`, "TermInfoField", []string{`term_info_field "x"`, `"call-term-info"`, `"term-orig-info"`, `"both"`}},
		{`{"transfer_with_term_user":"x"}`, "TransferWithTermUser", []string{`transfer_with_term_user "x"`, `"ignore"`, `"blind"`}},
		{`{"wrong_hostname":"x"}`, "WrongHostname", []string{`wrong_hostname "x"`, `"ignore"`, `"reject"`}},
		{`{"hostname_match":"x"}`, "HostnameMatch", []string{`hostname_match "x"`, `"original"`, `"destination"`, `"either"`}},
		{`{"unknown_destination":"x"}`, "UnknownDestination", []string{`unknown_destination "x"`, `"ignore"`, `"notfound"`}},
		{`{"held_side":"x"}`, "HeldSide", []string{`held_side "x"`, `"remote"`, `"both"`}},
		{`{"external_numbers":"x"}`, "ExternalNumbers", []string{`external_numbers "x"`, `"pstn"`, `"user"`}},
		{`{"join_keeps":"x"}`, "JoinKeeps", []string{`join_keeps "x"`, `"caller"`, `"consult"`}},
		{`{"ringing_disconnect":"x"}`, "RingingDisconnect", []string{`ringing_disconnect "x"`, `"ends"`, `"ignored"`, `"refused"`}},
		{`{"read_other_leg":"x"}`, "ReadOtherLeg", []string{`read_other_leg "x"`, `"found"`, `"notfound"`}},
		{`{"subscription_names":"x"}`, "SubscriptionNames", []string{`subscription_names "x"`, `"legacy"`, `"hyphenated"`}},
		{`{"held_info":"alerting"}`, "HeldInfo", []string{`held_info "alerting"`, `"active"`, `"held"`}},
		{`{"not_ringing_status":200}`, "NotRingingStatus", []string{`not_ringing_status 200`, `400 to 499`}},
		{`{"duplicate_call_id_status":600}`, "DuplicateCallIDStatus", []string{`duplicate_call_id_status 600`, `400 to 499`}},
		{`{"not_ringing_status":"409"}`, "NotRingingStatus", []string{`not_ringing_status is a whole number, not a JSON string`}},
		{`{"numeric_users":"yes"}`, "NumericUsers", []string{`numeric_users is a boolean`}},
		// Two at once: both named.
		{`{"held_side":"x","join_keeps":"y"}`, "JoinKeeps", []string{`held_side "x"`, `join_keeps "y"`}},
	} {
		r := h.ctl(http.MethodPut, "/config/guesses", tc.body)
		wantControlError(t, r, http.StatusBadRequest)
		var e struct{ Error string }
		r.decode(t, &e)
		for _, w := range tc.want {
			if !strings.Contains(e.Error, w) {
				t.Errorf("PUT %s: error %q does not say %s", tc.body, e.Error, w)
			}
		}
		if strings.Contains(e.Error, tc.goName) || strings.Contains(e.Error, "Guesses") || strings.Contains(e.Error, "Go struct") {
			t.Errorf("PUT %s: error %q names a Go field", tc.body, e.Error)
		}
	}
	// Config.Validate, for a Go caller, names Config's fields.
	if err := (nssim.Config{HeldSide: "x"}).Validate(); err == nil || !strings.Contains(err.Error(), `HeldSide "x"`) {
		t.Errorf("Config.Validate: %v, want it to name HeldSide", err)
	}
}

// ReadOtherLeg: a read under a user's path by the other party's leg (the caller's Call-ID
// under the agent's user) finds the call, or answers 404 on a PBX that scopes the read to
// the user's own leg. The user's own leg, and the call-id of a CallRequest the user made,
// read the call either way; actions reach the other party's leg either way (the guide sends
// the transfer to the caller's call-orig-call-id under the agent's user).
func TestReadOtherLeg(t *testing.T) {
	for _, g := range []string{nssim.OtherLegFound, nssim.OtherLegNotFound} {
		t.Run(g, func(t *testing.T) {
			h := newHarness(t, nssim.Config{ReadOtherLeg: g})
			in := h.placeCall("1000")
			consult := h.consult("1000", "1010", "xfer-read-1")
			other := http.StatusOK
			if g == nssim.OtherLegNotFound {
				other = http.StatusNotFound
			}
			for _, tc := range []struct {
				name, user, id string
				want           int
			}{
				{"the agent's own leg", "1000", in.TermCallID, http.StatusOK},
				{"the caller's leg under the agent", "1000", in.OrigCallID, other},
				{"the call-id of the agent's CallRequest", "1000", "xfer-read-1", http.StatusOK},
				{"the target's own leg", "1010", consult.TermCallID, http.StatusOK},
				{"the agent's leg under the target", "1010", "xfer-read-1", other},
			} {
				r := h.api(http.MethodGet, callPath(tc.user, tc.id, ""), nil)
				if r.status != tc.want {
					t.Errorf("%s: status %d, want %d; body %s", tc.name, r.status, tc.want, r.body)
				}
				if tc.want == http.StatusNotFound {
					wantError(t, r, http.StatusNotFound, "Call not found")
				}
			}
			// Actions are not reads: the caller's leg under the agent is reached.
			wantAccepted(t, h.api(http.MethodPatch, callPath("1000", in.OrigCallID, "hold"), nil))
		})
	}
}
