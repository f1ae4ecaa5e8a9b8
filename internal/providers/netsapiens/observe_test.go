package netsapiens

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// The rows a PBX may show once a join was sent, as JSON in the API's
// names, and what observing them must say. The PSTN leg is the one of the
// spec's ActiveCall example: no user, domain "*", the number in the URI
// and in call-dialed-number. Which session survives a join is a guess:
// "caller's session kept" is the caller's session with the consult's
// target leg in the agent's place, "consult's session kept" the consult's
// session (our call-id as call-by-call-id) with the caller's leg in the
// agent's place.
func TestObserveJoinedRows(t *testing.T) {
	const (
		callerID  = "0_3051823727@192.0.2.10"
		agentID   = "20261130024613000004-6a84ad451eceaf340fdfd429ddaf3943"
		callerSes = "20261130024612000002"
		consulSes = "20261130024614000005"
		termLeg   = "20261130024614000006-9b84ad451eceaf340fdfd429ddaf0001"
		pstn      = "18587645200"
	)
	trID := "tr_01M8Q2HGPCHMRF4W0QE3C00001"
	consult := ConsultCallID(trID)
	// row renders a call as the API does, fields left out being empty.
	row := func(f map[string]string) map[string]string {
		base := map[string]string{
			"core-server": "core1-sim.netsapiens.test", "call-orig-user": "", "call-orig-domain": "",
			"call-orig-uri": "sip:15555555555@192.0.2.10", "caller-id-number": "15555555555",
			"call-orig-info": "active", "call-term-info": "active",
		}
		for k, v := range f {
			base[k] = v
		}
		return base
	}
	callerKept := func(term map[string]string) map[string]string {
		f := map[string]string{"call-session-id": callerSes, "call-orig-call-id": callerID,
			"call-dialed-number": "11111111111", "call-term-call-id": termLeg}
		for k, v := range term {
			f[k] = v
		}
		return row(f)
	}
	consultKept := func(term map[string]string) map[string]string {
		f := map[string]string{"core-server": "core2-sim.netsapiens.test", "call-session-id": consulSes,
			"call-orig-call-id": callerID, "call-by-action": "CallRequest", "call-by-user": "1000",
			"call-by-domain": "TEST", "call-by-call-id": consult, "call-term-call-id": termLeg}
		for k, v := range term {
			f[k] = v
		}
		return row(f)
	}
	pstnLeg := map[string]string{"call-term-user": "", "call-term-domain": "*", "call-term-uri": "sip:" + pstn + "@srv.lcr.thinq.com"}
	with := func(a map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range a {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	held := row(map[string]string{"call-session-id": callerSes, "call-orig-call-id": callerID, "call-orig-info": "held",
		"call-dialed-number": "11111111111", "call-term-call-id": agentID, "call-term-user": "1000", "call-term-domain": "TEST",
		"call-term-uri": "sip:1000@TEST"})
	consulting := row(map[string]string{"core-server": "core2-sim.netsapiens.test", "call-session-id": consulSes,
		"call-orig-call-id": consult, "call-orig-user": "1000", "call-orig-domain": "TEST", "call-orig-uri": "sip:1000@TEST",
		"call-by-action": "CallRequest", "call-by-call-id": consult, "call-dialed-number": pstn,
		"call-term-call-id": termLeg, "call-term-user": "", "call-term-domain": "*", "call-term-uri": "sip:" + pstn + "@srv.lcr.thinq.com"})

	cases := []struct {
		name        string
		target      string
		joinSent    bool
		rows        []map[string]string
		caller      orchestrator.CallerState
		consult     orchestrator.ConsultState
		unknownJoin bool // the view reports an error: unknown, not "gone"
	}{
		{name: "PSTN target, caller's session kept", target: pstn, joinSent: true,
			rows: []map[string]string{callerKept(pstnLeg)}, caller: orchestrator.CallerTransferred},
		{name: "PSTN target as +E.164 in a bracketed URI", target: pstn, joinSent: true,
			rows:   []map[string]string{callerKept(with(pstnLeg, "call-term-uri", "<sip:+"+pstn+"@srv.lcr.thinq.com;user=phone>"))},
			caller: orchestrator.CallerTransferred},
		{name: "+E.164 target, URI without the plus", target: "+" + pstn, joinSent: true,
			rows: []map[string]string{callerKept(pstnLeg)}, caller: orchestrator.CallerTransferred},
		{name: "PSTN target shown only by the dialed number", target: pstn, joinSent: true,
			rows: []map[string]string{consultKept(with(pstnLeg, "call-term-uri", "sip:lcr-trunk@srv.lcr.thinq.com",
				"call-dialed-number", pstn, "call-by-call-id", "", "call-session-id", "99"))},
			caller: orchestrator.CallerTransferred},
		{name: "PSTN target, consult's session kept", target: pstn, joinSent: true,
			rows: []map[string]string{consultKept(with(pstnLeg, "call-dialed-number", pstn))}, caller: orchestrator.CallerTransferred},
		{name: "extension target, consult's session kept", target: "1010", joinSent: true,
			rows:   []map[string]string{consultKept(map[string]string{"call-term-user": "1010", "call-term-domain": "TEST", "call-term-uri": "sip:1010@TEST"})},
			caller: orchestrator.CallerTransferred},
		{name: "consult's session kept, target shown in no known way", target: "1010", joinSent: true,
			rows:   []map[string]string{consultKept(map[string]string{"call-term-user": "", "call-term-uri": "sip:anonymous@anonymous.invalid"})},
			caller: orchestrator.CallerTransferred},
		{name: "consult's session kept, only its call-session-id ours", target: "1010", joinSent: true,
			rows:   []map[string]string{consultKept(map[string]string{"call-by-call-id": "", "call-term-user": "", "call-term-uri": "sip:anonymous@anonymous.invalid"})},
			caller: orchestrator.CallerTransferred},
		{name: "consult's session with the caller and the agent", target: "1010", joinSent: true,
			rows:   []map[string]string{consultKept(map[string]string{"call-term-user": "1000", "call-term-domain": "TEST"})},
			caller: orchestrator.CallerUnknown, unknownJoin: true},
		{name: "a third party's number after the join", target: pstn, joinSent: true,
			rows:   []map[string]string{callerKept(with(pstnLeg, "call-term-uri", "sip:19995550000@srv.lcr.thinq.com"))},
			caller: orchestrator.CallerUnknown, unknownJoin: true},
		{name: "a third party's number, no join sent", target: pstn,
			rows:   []map[string]string{callerKept(with(pstnLeg, "call-term-uri", "sip:19995550000@srv.lcr.thinq.com"))},
			caller: orchestrator.CallerUnknown},
		{name: "a third party after the join, the consult still listed", target: pstn, joinSent: true,
			rows:   []map[string]string{callerKept(with(pstnLeg, "call-term-uri", "sip:19995550000@srv.lcr.thinq.com")), consulting},
			caller: orchestrator.CallerUnknown, consult: orchestrator.ConsultAnswered},
		{name: "a third party with a user, the target as dialed number", target: "11111111111", joinSent: true,
			rows:   []map[string]string{callerKept(map[string]string{"call-term-user": "2000", "call-term-domain": "TEST", "call-term-uri": "sip:2000@TEST"})},
			caller: orchestrator.CallerUnknown, unknownJoin: true},
		{name: "the caller's own number is the target", target: "15555555555", joinSent: true,
			rows:   []map[string]string{callerKept(map[string]string{"call-term-user": "2000", "call-term-domain": "TEST", "call-term-uri": "sip:2000@TEST"})},
			caller: orchestrator.CallerUnknown, unknownJoin: true},
		{name: "before the join: held, consult to a PSTN number answered", target: pstn,
			rows: []map[string]string{held, consulting}, caller: orchestrator.CallerHeld, consult: orchestrator.ConsultAnswered},
		{name: "join sent, not applied yet", target: pstn, joinSent: true,
			rows: []map[string]string{held, consulting}, caller: orchestrator.CallerHeld, consult: orchestrator.ConsultAnswered},
		{name: "the caller's old row and the joined one both listed", target: pstn, joinSent: true,
			rows: []map[string]string{consultKept(with(pstnLeg, "call-dialed-number", pstn)), held}, caller: orchestrator.CallerTransferred},
		{name: "nothing carries the caller", target: pstn, joinSent: true,
			rows: []map[string]string{consulting}, caller: orchestrator.CallerGone, consult: orchestrator.ConsultAnswered},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data, err := json.Marshal(tc.rows)
			if err != nil {
				t.Fatal(err)
			}
			calls, err := decodeRows(data)
			if err != nil {
				t.Fatal(err)
			}
			tr := &orchestrator.Transfer{ID: trID, Request: orchestrator.Request{Provider: Name,
				Call: orchestrator.CallRef{Domain: "TEST", User: "1000"}, Target: tc.target}}
			tr.Legs.Caller = orchestrator.LegRef{CallID: callerID, SessionID: callerSes, Server: "core1-sim.netsapiens.test"}
			tr.Legs.Agent = orchestrator.LegRef{CallID: agentID}
			tr.Legs.Consult = orchestrator.LegRef{CallID: consult, SessionID: consulSes, Server: "core2-sim.netsapiens.test"}
			if tc.joinSent {
				tr.Sent.Join = time.Now()
			}
			obs, err := newView(calls).Observe(tr)
			if tc.unknownJoin {
				if err == nil {
					t.Fatalf("observed %+v; want an error (unknown), not an observation the engine reads as the target hanging up", obs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if obs.Caller != tc.caller || obs.Consult != tc.consult {
				t.Errorf("caller %s, consult %s; want caller %s, consult %s (%+v)", obs.Caller, obs.Consult, tc.caller, tc.consult, obs)
			}
			if tc.consult == orchestrator.ConsultAbsent && obs.ConsultLegs != 0 {
				t.Errorf("%d consult legs counted, want none: the joined call is no consult leg of ours", obs.ConsultLegs)
			}
		})
	}
}

func TestURIUser(t *testing.T) {
	for uri, want := range map[string]string{
		"sip:18587645200@srv.lcr.thinq.com":                "18587645200",
		"<sips:+18587645200@srv.lcr.thinq.com;user=phone>": "+18587645200",
		"SIP:1010@TEST":    "1010",
		"tel:+15555555555": "+15555555555",
		"tel:+15555555555;phone-context=example.com": "+15555555555",
		"1000@10.0.0.1:5060":                         "1000",
		"sip:*@192.0.2.10":                           "*",
		"":                                           "",
		"<>":                                         "",
	} {
		if got := uriUser(uri); got != want {
			t.Errorf("uriUser(%q) = %q, want %q", uri, got, want)
		}
	}
}
