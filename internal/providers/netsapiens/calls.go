package netsapiens

import (
	"bytes"
	"encoding/json"
	"strings"
)

// flexString decodes a JSON string or number into a string: NetSapiens'
// guide renders call-term-user as a number where the schema says string.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || bytes.Equal(b, []byte("null")):
		*f = ""
	case b[0] == '"':
		// The common case, a string without escapes, needs no second
		// decode: the listing is read for every watched domain at every
		// poll, and its rows have two dozen fields each.
		if n := len(b); n >= 2 && b[n-1] == '"' && bytes.IndexByte(b[1:n-1], '\\') < 0 {
			*f = flexString(b[1 : n-1])
			return nil
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return err
		}
		*f = flexString(n.String())
	}
	return nil
}

// activeCall is one row of "Read Active Calls": a session with an orig
// and a term leg. Decoding accepts the v2 hyphenated names, the spec's
// term-orig-info typo, and the legacy underscore names of event payloads.
type activeCall struct {
	Server     string
	SessionID  string
	OrigCallID string
	TermCallID string
	OrigUser   string
	TermUser   string
	OrigInfo   string
	TermInfo   string
	ByCallID   string
}

// activeCallWire has a field for every accepted spelling: the v2
// hyphenated names, the spec's term-orig-info typo, and the legacy
// underscore names of event payloads. A struct, not a map, because rows
// are decoded on every poll and unknown keys then cost nothing.
type activeCallWire struct {
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
}

func (a *activeCall) UnmarshalJSON(b []byte) error {
	var w activeCallWire
	if err := json.Unmarshal(b, &w); err != nil {
		return a.looseUnmarshal(b, err)
	}
	*a = w.call()
	return nil
}

// looseUnmarshal keeps the fields of a row that do decode when one of
// ours has an unexpected type (an object, an array).
func (a *activeCall) looseUnmarshal(b []byte, err error) error {
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
	var w activeCallWire
	if err := json.Unmarshal(clean, &w); err != nil {
		return err
	}
	*a = w.call()
	return nil
}

// call is the row in its one spelling.
func (w *activeCallWire) call() activeCall {
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
	}
}

// sameUser compares user fields, which may carry "@domain".
func sameUser(field, user string) bool {
	if field == "" || user == "" {
		return false
	}
	field, _, _ = strings.Cut(field, "@")
	user, _, _ = strings.Cut(user, "@")
	return strings.EqualFold(field, user)
}

// hasCall reports whether id is one of the session's leg call ids.
func (a *activeCall) hasCall(id string) bool {
	return id != "" && (a.OrigCallID == id || a.TermCallID == id)
}
