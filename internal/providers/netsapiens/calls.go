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

// aliases lists accepted names per field, preferred first.
var aliases = map[string][]string{
	"server":     {"core-server", "hostname"},
	"session":    {"call-session-id", "session_id", "sessionId"},
	"origCallID": {"call-orig-call-id", "orig_callid"},
	"termCallID": {"call-term-call-id", "term_callid"},
	"origUser":   {"call-orig-user", "orig_user"},
	"termUser":   {"call-term-user", "term_user"},
	"origInfo":   {"call-orig-info", "orig_call_info"},
	"termInfo":   {"call-term-info", "term-orig-info", "term_call_info"},
	"byCallID":   {"call-by-call-id", "by_callid"},
}

func (a *activeCall) UnmarshalJSON(b []byte) error {
	var raw map[string]flexString
	if err := json.Unmarshal(b, &raw); err != nil {
		// A field of an unexpected type (object, array): decode loosely.
		var loose map[string]json.RawMessage
		if err2 := json.Unmarshal(b, &loose); err2 != nil {
			return err
		}
		raw = make(map[string]flexString, len(loose))
		for k, v := range loose {
			var f flexString
			if json.Unmarshal(v, &f) == nil {
				raw[k] = f
			}
		}
	}
	get := func(field string) string {
		for _, name := range aliases[field] {
			if v, ok := raw[name]; ok && v != "" {
				return strings.TrimSpace(string(v))
			}
		}
		return ""
	}
	*a = activeCall{
		Server: get("server"), SessionID: get("session"),
		OrigCallID: get("origCallID"), TermCallID: get("termCallID"),
		OrigUser: get("origUser"), TermUser: get("termUser"),
		OrigInfo: strings.ToLower(get("origInfo")), TermInfo: strings.ToLower(get("termInfo")),
		ByCallID: get("byCallID"),
	}
	return nil
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
