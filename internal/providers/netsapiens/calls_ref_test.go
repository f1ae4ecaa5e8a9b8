package netsapiens

import (
	"encoding/json"
	"strings"
)

// The reflective decoding of a listing that decodeRows replaced, kept as
// the oracle of TestRowDecodingMatchesEncodingJSON and FuzzRowDecoding:
// encoding/json into a struct with a field per accepted spelling, and a
// second pass over a map when a field has an unexpected type.

type refWire struct {
	CoreServer    flexString `json:"core-server"`
	Hostname      flexString `json:"hostname"`
	SessionID     flexString `json:"call-session-id"`
	LegacySession flexString `json:"session_id"`
	EventSession  flexString `json:"sessionId"`
	OrigCallID    flexString `json:"call-orig-call-id"`
	LegacyOrigID  flexString `json:"orig_callid"`
	TermCallID    flexString `json:"call-term-call-id"`
	LegacyTermID  flexString `json:"term_callid"`
	OrigUser      flexString `json:"call-orig-user"`
	LegacyOrigU   flexString `json:"orig_user"`
	TermUser      flexString `json:"call-term-user"`
	LegacyTermU   flexString `json:"term_user"`
	OrigInfo      flexString `json:"call-orig-info"`
	LegacyOrigInf flexString `json:"orig_call_info"`
	TermInfo      flexString `json:"call-term-info"`
	SpecTermInfo  flexString `json:"term-orig-info"`
	LegacyTermInf flexString `json:"term_call_info"`
	ByCallID      flexString `json:"call-by-call-id"`
	LegacyByID    flexString `json:"by_callid"`
	OrigURI       flexString `json:"call-orig-uri"`
	LegacyOrigURI flexString `json:"orig_uri"`
	TermURI       flexString `json:"call-term-uri"`
	LegacyTermURI flexString `json:"term_uri"`
	Dialed        flexString `json:"call-dialed-number"`
	LegacyDialed  flexString `json:"dnis"`
}

// refRow decodes like the replaced activeCall.UnmarshalJSON.
type refRow activeCall

func (a *refRow) UnmarshalJSON(b []byte) error {
	var w refWire
	if err := json.Unmarshal(b, &w); err != nil {
		var loose map[string]json.RawMessage
		if err2 := json.Unmarshal(b, &loose); err2 != nil {
			return err
		}
		for k, v := range loose {
			var f flexString
			if json.Unmarshal(v, &f) != nil {
				delete(loose, k)
			}
		}
		clean, _ := json.Marshal(loose)
		w = refWire{}
		if err := json.Unmarshal(clean, &w); err != nil {
			return err
		}
	}
	*a = refRow(w.call())
	return nil
}

func (w *refWire) call() activeCall {
	first := func(vs ...flexString) string {
		for _, v := range vs {
			if t := strings.TrimSpace(string(v)); t != "" {
				return t
			}
		}
		return ""
	}
	return activeCall{
		Server:     first(w.CoreServer, w.Hostname),
		SessionID:  first(w.SessionID, w.LegacySession, w.EventSession),
		OrigCallID: first(w.OrigCallID, w.LegacyOrigID),
		TermCallID: first(w.TermCallID, w.LegacyTermID),
		OrigUser:   first(w.OrigUser, w.LegacyOrigU),
		TermUser:   first(w.TermUser, w.LegacyTermU),
		OrigInfo:   strings.ToLower(first(w.OrigInfo, w.LegacyOrigInf)),
		TermInfo:   strings.ToLower(first(w.TermInfo, w.SpecTermInfo, w.LegacyTermInf)),
		ByCallID:   first(w.ByCallID, w.LegacyByID),

		OrigURIUser: uriUser(first(w.OrigURI, w.LegacyOrigURI)),
		TermURIUser: uriUser(first(w.TermURI, w.LegacyTermURI)),
		Dialed:      first(w.Dialed, w.LegacyDialed),
	}
}

// refRows decodes a listing as the replaced code did.
func refRows(data []byte) ([]activeCall, error) {
	var rows []refRow
	if err := json.Unmarshal(data, &rows); err != nil {
		return nil, err
	}
	var calls []activeCall
	if rows != nil {
		calls = make([]activeCall, len(rows))
		for i, r := range rows {
			calls[i] = activeCall(r)
		}
	}
	return calls, nil
}
