package netsapiens

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
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
	// OrigURIUser and TermURIUser are the user parts of call-orig-uri
	// and call-term-uri, and Dialed is call-dialed-number: where a PSTN
	// or gateway party, which has no user (the spec's example leg has
	// call-term-user "" and call-term-domain "*"), shows its number.
	OrigURIUser string
	TermURIUser string
	Dialed      string
}

// A row's fields, each under every accepted spelling: the v2 hyphenated
// names, the spec's term-orig-info typo, and the legacy underscore names
// of event payloads. A field's first non-empty spelling, in the order
// below, wins.
type rowField uint8

const (
	fServer rowField = iota
	fSession
	fOrigCallID
	fTermCallID
	fOrigUser
	fTermUser
	fOrigInfo
	fTermInfo
	fByCallID
	fOrigURI
	fTermURI
	fDialed
	nRowFields
)

// maxSpellings is the most spellings a field has (the session's and the
// term leg's state have three).
const maxSpellings = 3

type rowSlot struct {
	field rowField
	rank  uint8 // among the field's spellings, 0 first
}

// rowNames maps every accepted name, lower case, to its slot. Names are
// matched without regard to case, as encoding/json matches struct tags.
var rowNames = map[string]rowSlot{
	"core-server": {fServer, 0}, "hostname": {fServer, 1},
	"call-session-id": {fSession, 0}, "session_id": {fSession, 1}, "sessionid": {fSession, 2},
	"call-orig-call-id": {fOrigCallID, 0}, "orig_callid": {fOrigCallID, 1},
	"call-term-call-id": {fTermCallID, 0}, "term_callid": {fTermCallID, 1},
	"call-orig-user": {fOrigUser, 0}, "orig_user": {fOrigUser, 1},
	"call-term-user": {fTermUser, 0}, "term_user": {fTermUser, 1},
	"call-orig-info": {fOrigInfo, 0}, "orig_call_info": {fOrigInfo, 1},
	"call-term-info": {fTermInfo, 0}, "term-orig-info": {fTermInfo, 1}, "term_call_info": {fTermInfo, 2},
	"call-by-call-id": {fByCallID, 0}, "by_callid": {fByCallID, 1},
	"call-orig-uri": {fOrigURI, 0}, "orig_uri": {fOrigURI, 1},
	"call-term-uri": {fTermURI, 0}, "term_uri": {fTermURI, 1},
	"call-dialed-number": {fDialed, 0}, "dnis": {fDialed, 1},
}

// rowSlotOf is the slot of an object name, if it is one of ours.
func rowSlotOf(name []byte) (rowSlot, bool) {
	if s, ok := rowNames[string(name)]; ok {
		return s, true
	}
	var lower [32]byte // longer than any accepted name
	if len(name) > len(lower) {
		return rowSlot{}, false
	}
	upper := false
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
			upper = true
		}
		lower[i] = c
	}
	if !upper {
		return rowSlot{}, false
	}
	s, ok := rowNames[string(lower[:len(name)])]
	return s, ok
}

// decodeRows decodes a listing: a JSON array of call objects (or null).
// A listing is read for every watched domain at every reading, and its
// rows have two dozen fields of which nine are ours: a tokenizer that
// skips the others costs a fifth of reflective decoding
// (BenchmarkListingDecode).
func decodeRows(data []byte) ([]activeCall, error) {
	dec := newDecoder(data)
	var calls []activeCall
	switch k := dec.PeekKind(); k {
	case 'n':
		if _, err := dec.ReadToken(); err != nil {
			return nil, err
		}
		return nil, endOf(dec)
	case '[':
	default:
		if err := dec.SkipValue(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("a listing is a JSON array of calls, not %s", kindName(k))
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, err
	}
	for dec.PeekKind() != ']' {
		ac, err := decodeRow(dec)
		if err != nil {
			return nil, err
		}
		calls = append(calls, ac)
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, err
	}
	if err := endOf(dec); err != nil {
		return nil, err
	}
	return calls, nil
}

// listing is a response body that decodeRows reads.
type listing []activeCall

func (l *listing) decodeBody(data []byte) error {
	calls, err := decodeRows(data)
	*l = calls
	return err
}

// listPage is one page of a listing, and whether its body was an array
// at all: an empty body (which the request leaves undecoded) or null
// decodes as no rows, and says nothing of the calls (listPaged).
type listPage struct {
	rows  listing
	array bool
}

func (p *listPage) decodeBody(data []byte) error {
	p.array = bytes.HasPrefix(bytes.TrimSpace(data), []byte("["))
	return p.rows.decodeBody(data)
}

// readCall is the answer of "Read Specific Active Call"
// (GET …/users/{u}/calls/{callid}): one ActiveCall object, as the spec
// gives it [doc], or a list of calls, as every other read of calls
// answers (a PBX whose controller serves the one call as a listing of
// it). A null, or an empty body (which the request leaves undecoded),
// is no row. Whether a row is the call asked for is the reader's to
// check: a 200 may carry none, or another call.
type readCall []activeCall

func (r *readCall) decodeBody(data []byte) error {
	dec := newDecoder(data)
	if dec.PeekKind() == '[' {
		calls, err := decodeRows(data)
		*r = calls
		return err
	}
	ac, err := decodeOnly(dec)
	if err != nil {
		return err
	}
	*r = readCall{ac}
	return nil
}

// UnmarshalJSON decodes one call object, as event deliveries carry them.
func (a *activeCall) UnmarshalJSON(b []byte) error {
	ac, err := decodeOnly(newDecoder(b))
	if err != nil {
		return err
	}
	*a = ac
	return nil
}

// decodeOnly decodes one call object, the whole of what dec reads.
func decodeOnly(dec *jsontext.Decoder) (activeCall, error) {
	ac, err := decodeRow(dec)
	if err != nil {
		return activeCall{}, err
	}
	return ac, endOf(dec)
}

// newDecoder reads what encoding/json reads: a repeated name (the last
// wins) and invalid UTF-8 (replaced by U+FFFD).
func newDecoder(data []byte) *jsontext.Decoder {
	return jsontext.NewDecoder(bytes.NewBuffer(data), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
}

// endOf checks that nothing but white space follows the value read.
func endOf(dec *jsontext.Decoder) error {
	if _, err := dec.ReadToken(); err != io.EOF {
		if err == nil {
			return errors.New("data after the JSON value")
		}
		return err
	}
	return nil
}

func kindName(k jsontext.Kind) string {
	switch k {
	case '{':
		return "an object"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case 't', 'f':
		return "a boolean"
	}
	return "that"
}

// decodeRow decodes a call object; a null is an empty row. A field of ours
// may be a string or a number (the guide renders call-term-user as a
// number where the schema says string); one of another type (an object, a
// boolean) is read as absent rather than failing the whole listing.
func decodeRow(dec *jsontext.Decoder) (activeCall, error) {
	switch k := dec.PeekKind(); k {
	case 'n':
		_, err := dec.ReadToken()
		return activeCall{}, err
	case '{':
	default:
		if err := dec.SkipValue(); err != nil {
			return activeCall{}, err
		}
		return activeCall{}, fmt.Errorf("a call is a JSON object, not %s", kindName(k))
	}
	if _, err := dec.ReadToken(); err != nil {
		return activeCall{}, err
	}
	var vals [nRowFields][maxSpellings]string
	for dec.PeekKind() != '}' {
		name, err := dec.ReadValue()
		if err != nil {
			return activeCall{}, err
		}
		slot, ours := rowSlotOf(unquoted(name))
		if !ours {
			if err := dec.SkipValue(); err != nil {
				return activeCall{}, err
			}
			continue
		}
		v := ""
		switch dec.PeekKind() {
		case '"', '0':
			tok, err := dec.ReadToken()
			if err != nil {
				return activeCall{}, err
			}
			v = tok.String() // a number's literal as written
		default:
			if err := dec.SkipValue(); err != nil {
				return activeCall{}, err
			}
		}
		vals[slot.field][slot.rank] = v
	}
	if _, err := dec.ReadToken(); err != nil {
		return activeCall{}, err
	}
	first := func(f rowField) string {
		for _, v := range vals[f] {
			if t := strings.TrimSpace(v); t != "" {
				return t
			}
		}
		return ""
	}
	return activeCall{
		Server:     first(fServer),
		SessionID:  first(fSession),
		OrigCallID: first(fOrigCallID),
		TermCallID: first(fTermCallID),
		OrigUser:   first(fOrigUser),
		TermUser:   first(fTermUser),
		OrigInfo:   strings.ToLower(first(fOrigInfo)),
		TermInfo:   strings.ToLower(first(fTermInfo)),
		ByCallID:   first(fByCallID),

		OrigURIUser: uriUser(first(fOrigURI)),
		TermURIUser: uriUser(first(fTermURI)),
		Dialed:      first(fDialed),
	}, nil
}

// uriUser is the user part of a SIP or tel URI ("sip:18587645200@host",
// "<sips:+1858…@host;user=phone>", "tel:+1858…"), or "" when it has none.
func uriUser(uri string) string {
	uri = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(uri), "<"))
	if scheme, rest, ok := strings.Cut(uri, ":"); ok && len(scheme) <= 4 {
		switch strings.ToLower(scheme) {
		case "sip", "sips", "tel":
			uri = rest
		}
	}
	user, _, _ := strings.Cut(uri, "@")
	user, _, _ = strings.Cut(user, ";")
	user, _, _ = strings.Cut(user, ">")
	return strings.TrimSpace(user)
}

// unquoted is an object name without its quotes: verbatim when it has no
// escape, which every name we accept is.
func unquoted(name jsontext.Value) []byte {
	if bytes.IndexByte(name, '\\') < 0 {
		return name[1 : len(name)-1]
	}
	b, _ := jsontext.AppendUnquote(nil, name)
	return b
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

// sameNumber compares a number field (a URI's user part, the dialed
// number) with the target: the user parts, without a leading "+",
// regardless of case.
func sameNumber(field, target string) bool {
	target, _, _ = strings.Cut(target, "@")
	field, target = strings.TrimPrefix(field, "+"), strings.TrimPrefix(target, "+")
	return field != "" && target != "" && strings.EqualFold(field, target)
}

// hasCall reports whether id is one of the session's leg call ids.
func (a *activeCall) hasCall(id string) bool {
	return id != "" && (a.OrigCallID == id || a.TermCallID == id)
}
