package netsapiens

import (
	"encoding/json"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
)

func TestActiveCallDecodingIsTolerant(t *testing.T) {
	cases := map[string]string{
		"guide (numeric user, call-term-info)": `{"core-server":"core1","call-session-id":"1010101010101010101","call-orig-call-id":"abc@10.0.0.1","call-term-call-id":"123-1a2d","call-term-user":1000,"call-term-domain":"TEST","call-orig-info":"active","call-term-info":"active"}`,
		"spec (term-orig-info typo)":           `{"core-server":"core1","call-session-id":"1010101010101010101","call-orig-call-id":"abc@10.0.0.1","call-term-call-id":"123-1a2d","call-term-user":"1000","call-orig-info":"active","term-orig-info":"active"}`,
		"legacy event names":                   `{"hostname":"core1","sessionId":1010101010101010101,"orig_callid":"abc@10.0.0.1","term_callid":"123-1a2d","term_user":"1000","orig_call_info":"active","term_call_info":"ACTIVE","remove":"no"}`,
		"user with domain, odd extra fields":   `{"core-server":"core1","call-session-id":"1010101010101010101","call-orig-call-id":"abc@10.0.0.1","call-term-call-id":"123-1a2d","call-term-user":"1000@TEST","call-orig-info":"active","call-term-info":"active","extra":{"nested":[1,2]}}`,
	}
	for name, js := range cases {
		t.Run(name, func(t *testing.T) {
			var ac activeCall
			if err := json.Unmarshal([]byte(js), &ac); err != nil {
				t.Fatal(err)
			}
			if ac.Server != "core1" || ac.SessionID != "1010101010101010101" || ac.OrigCallID != "abc@10.0.0.1" ||
				ac.TermCallID != "123-1a2d" || !sameUser(ac.TermUser, "1000") || ac.OrigInfo != "active" || ac.TermInfo != "active" {
				t.Errorf("decoded %+v", ac)
			}
		})
	}
}

func FuzzActiveCallDecode(f *testing.F) {
	f.Add([]byte(`[{"core-server":"c","call-session-id":1,"call-term-user":1000,"call-term-info":"active"}]`))
	f.Add([]byte(`[{"hostname":"c","orig_callid":"x","term_user":null}]`))
	f.Add([]byte(`{"code":404,"message":"No Route Found"}`))
	f.Add([]byte(`[{"call-term-user":1e400}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var calls []activeCall
		if json.Unmarshal(data, &calls) != nil {
			return
		}
		// Whatever decoded must be usable without panics.
		for i := range calls {
			_ = calls[i].hasCall("x")
			_ = sameUser(calls[i].TermUser, "1000")
		}
	})
}

// A view indexes each id once; an id that several rows carry (a PBX that
// made two consult legs of one call-id) must still yield every row, and
// observing through the index must judge as a scan of the whole listing.
func TestViewObservesLikeTheWholeListing(t *testing.T) {
	tr := &orchestrator.Transfer{ID: "tr1"}
	tr.Legs.Caller.CallID = "caller-1"
	tr.Legs.Caller.SessionID = "s-1"
	tr.Legs.Agent.CallID = "agent-1"
	consult := ConsultCallID(tr.ID)
	calls := []activeCall{
		{SessionID: "s-0", OrigCallID: "other-a", TermCallID: "other-b", OrigInfo: "active", TermInfo: "active"},
		{SessionID: "s-1", OrigCallID: "caller-1", TermCallID: "agent-1", OrigInfo: "held", TermInfo: "active"},
		{SessionID: "s-2", OrigCallID: consult, TermCallID: "t-1", OrigInfo: "active", TermInfo: "alerting"},
		{SessionID: "s-3", OrigCallID: "other-c", TermCallID: "other-d", OrigInfo: "active", TermInfo: "active"},
		{SessionID: "s-4", OrigCallID: consult, TermCallID: "t-2", OrigInfo: "active", TermInfo: "active"},
	}
	got, err := newView(calls).Observe(tr)
	if err != nil {
		t.Fatal(err)
	}
	if want := observe(tr, calls); got != want {
		t.Errorf("through the index %+v, scanning the listing %+v", got, want)
	}
	if got.ConsultLegs != 2 || got.Caller != orchestrator.CallerHeld {
		t.Errorf("observation %+v: want both consult legs and the caller held", got)
	}
}
