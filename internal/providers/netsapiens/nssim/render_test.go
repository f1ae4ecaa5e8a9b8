package nssim_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// schemaFields are the 23 properties of the official ActiveCall schema, typo included.
var schemaFields = []string{
	"core-server", "call-session-id", "call-orig-call-id", "call-orig-match-uri", "call-orig-user",
	"call-orig-domain", "call-orig-uri", "call-orig-name", "caller-id-number", "call-dialed-number",
	"call-by-action", "call-by-user", "call-by-domain", "call-by-call-id", "call-term-call-id",
	"call-term-user", "call-term-domain", "call-term-uri", "call-start-datetime",
	"call-answer-datetime", "call-orig-info", "term-orig-info", "call-audio-codec",
}

func rawCalls(t *testing.T, h *harness) []map[string]any {
	t.Helper()
	r := h.api(http.MethodGet, "/domains/TEST/calls", nil)
	wantStatus(t, r, 200)
	var rows []map[string]any
	r.decode(t, &rows)
	return rows
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestTermInfoField(t *testing.T) {
	withCall := func(fields ...string) []string {
		out := slices.Clone(schemaFields)
		out = slices.DeleteFunc(out, func(f string) bool { return f == "term-orig-info" })
		out = append(out, fields...)
		slices.Sort(out)
		return out
	}
	tests := []struct {
		field string
		want  []string
	}{
		{"", withCall("term-orig-info", "call-term-info")},
		{nssim.TermInfoBoth, withCall("term-orig-info", "call-term-info")},
		{nssim.TermInfoCall, withCall("call-term-info")},
		{nssim.TermInfoSpec, withCall("term-orig-info")},
	}
	for _, tc := range tests {
		t.Run(tc.field, func(t *testing.T) {
			h := newHarness(t, nssim.Config{TermInfoField: tc.field})
			h.placeCall("1000")
			row := rawCalls(t, h)[0]
			if got := keys(row); !slices.Equal(got, tc.want) {
				t.Fatalf("fields\n got %v\nwant %v", got, tc.want)
			}
			for k, v := range row {
				if _, ok := v.(string); !ok {
					t.Errorf("%s = %#v, want a string", k, v)
				}
			}
			// Decoding accepts every rendering.
			if c := h.calls()[0]; c.TermInfo != nssim.InfoActive {
				t.Errorf("decoded term info %q", c.TermInfo)
			}
		})
	}
}

func TestNumericUsers(t *testing.T) {
	h := newHarness(t, nssim.Config{NumericUsers: true})
	h.placeCall("1000")
	h.placeCall("0123")
	h.consult("1000", "1010", "num-1")
	rows := rawCalls(t, h)
	if rows[0]["call-term-user"] != float64(1000) || rows[0]["call-orig-user"] != "" {
		t.Errorf("inbound users %#v / %#v, want 1000 as a number and the PSTN caller empty",
			rows[0]["call-term-user"], rows[0]["call-orig-user"])
	}
	if rows[1]["call-term-user"] != "0123" {
		t.Errorf("leading zero %#v, want it kept as a string", rows[1]["call-term-user"])
	}
	if rows[2]["call-orig-user"] != float64(1000) || rows[2]["call-term-user"] != float64(1010) {
		t.Errorf("consult users %#v / %#v", rows[2]["call-orig-user"], rows[2]["call-term-user"])
	}
	if rows[2]["call-by-user"] != "1000" {
		t.Errorf("call-by-user %#v, want a string", rows[2]["call-by-user"])
	}
	if c := h.calls()[2]; c.TermUser != "1010" || c.OrigUser != "1000" {
		t.Errorf("decoded %+v", c)
	}
}

func TestIDsAndDatetimes(t *testing.T) {
	now := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	h := newHarness(t, nssim.Config{Now: func() time.Time { return now }, Seed: 1})
	h.sim.SetBehaviour("TEST", "1010", nssim.Behaviour{Mode: nssim.ModeManual})
	in := h.placeCall("1000")
	consult := h.consult("1000", "1010", "dt-1")

	sessionID := regexp.MustCompile(`^20240506070809\d{6}$`)
	legID := regexp.MustCompile(`^20240506070809\d{6}-[0-9a-f]{32}$`)
	deviceID := regexp.MustCompile(`^0_\d{10}@192\.0\.2\.10$`)
	for name, c := range map[string]struct {
		got string
		re  *regexp.Regexp
	}{
		"session":          {in.SessionID, sessionID},
		"consult session":  {consult.SessionID, sessionID},
		"inbound term leg": {in.TermCallID, legID},
		"consult term leg": {consult.TermCallID, legID},
		"inbound orig leg": {in.OrigCallID, deviceID},
	} {
		if !c.re.MatchString(c.got) {
			t.Errorf("%s id %q does not match %s", name, c.got, c.re)
		}
	}
	if in.StartDatetime != "2024-05-06 07:08:09" || in.AnswerDatetime != "2024-05-06 07:08:09" {
		t.Errorf("inbound datetimes %q / %q", in.StartDatetime, in.AnswerDatetime)
	}
	if consult.AnswerDatetime != "0000-00-00 00:00:00" || consult.TermInfo != nssim.InfoAlerting {
		t.Errorf("unanswered consult %+v", consult)
	}
	if in.AudioCodec != "PCMU" || in.CoreServer != "core1-sim.netsapiens.test" || consult.CoreServer != "core2-sim.netsapiens.test" {
		t.Errorf("codec %q, cores %q %q", in.AudioCodec, in.CoreServer, consult.CoreServer)
	}
	if in.OrigUser != "" || in.OrigDomain != "" || in.OrigURI != "sip:15555555555@192.0.2.10" ||
		in.TermURI != "sip:1000@TEST" || in.ByAction != "" {
		t.Errorf("inbound parties %+v", in)
	}
}

func TestActiveCallRoundTrip(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	c := h.placeCall("1000")
	first, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back nssim.ActiveCall
	if err := json.Unmarshal(first, &back); err != nil {
		t.Fatal(err)
	}
	second, err := json.Marshal(back)
	if err != nil {
		t.Fatal(err)
	}
	if string(first) != string(second) {
		t.Errorf("round trip\n%s\n%s", first, second)
	}
	// The guide's rendering, with a numeric user and only call-term-info, decodes too.
	guide := `{"call-session-id":"1010101010101010101","call-term-user":1000,"call-term-info":"active"}`
	if err := json.Unmarshal([]byte(guide), &back); err != nil || back.TermUser != "1000" || back.TermInfo != "active" {
		t.Errorf("guide record decoded to %+v: %v", back, err)
	}
}
