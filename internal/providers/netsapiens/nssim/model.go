package nssim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// Leg states as the API reports them in call-orig-info and call-term-info [C-code]. The real
// server may know more values; these are the ones seen in real data.
const (
	InfoAlerting = "alerting"
	InfoActive   = "active"
	InfoHeld     = "held"
)

// notAnswered is how NetSapiens renders the answer time of a call nobody answered yet.
const notAnswered = "0000-00-00 00:00:00"

const datetimeLayout = "2006-01-02 15:04:05"

// ActiveCall is one row of the live-calls API: a session with its orig and term legs, in the
// NS API v2 (hyphenated) vocabulary. Its JSON form is exactly what the simulated API sends,
// including the Config choices TermInfoField and NumericUsers; decoding accepts every
// rendering the API may produce (either term-info name, users as strings or numbers).
type ActiveCall struct {
	CoreServer     string // core-server: the hostname an attended transfer must name
	SessionID      string // call-session-id: 20 digits
	OrigCallID     string // call-orig-call-id: the device's Call-ID, or the call-id of a CallRequest
	OrigMatchURI   string // call-orig-match-uri
	OrigUser       string // call-orig-user: empty for a PSTN caller
	OrigDomain     string // call-orig-domain: empty for a PSTN caller
	OrigURI        string // call-orig-uri
	OrigName       string // call-orig-name
	CallerIDNumber string // caller-id-number
	DialedNumber   string // call-dialed-number
	ByAction       string // call-by-action: "CallRequest" for API-created calls
	ByUser         string // call-by-user
	ByDomain       string // call-by-domain
	ByCallID       string // call-by-call-id
	TermCallID     string // call-term-call-id: <20 digits>-<32 hex>; empty until the term leg is dialled
	TermUser       string // call-term-user
	TermDomain     string // call-term-domain
	TermURI        string // call-term-uri
	StartDatetime  string // call-start-datetime: "YYYY-MM-DD HH:MM:SS" (UTC)
	AnswerDatetime string // call-answer-datetime: "0000-00-00 00:00:00" until answered
	OrigInfo       string // call-orig-info: alerting, active or held
	TermInfo       string // call-term-info / term-orig-info: alerting, active, held; empty until dialled
	AudioCodec     string // call-audio-codec

	// render carries the Config choices into MarshalJSON so a record marshals the same way
	// wherever it is encoded (API, control surface, a test's own json.Marshal).
	render renderOptions
}

type renderOptions struct {
	termInfoField string
	numericUsers  bool
	heldInfo      string // Config.HeldInfo; "" renders InfoHeld
}

// info is how a leg's state renders.
func (r renderOptions) info(v string) string {
	if v == InfoHeld && r.heldInfo != "" {
		return r.heldInfo
	}
	return v
}

// MarshalJSON writes the 23 fields of the official ActiveCall schema in schema order.
func (c ActiveCall) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	field := func(name string, raw []byte) {
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(`"` + name + `":`)
		b.Write(raw)
	}
	str := func(name, v string) {
		raw, _ := json.Marshal(v) // marshalling a string cannot fail
		field(name, raw)
	}
	user := func(name, v string) {
		if c.render.numericUsers && isJSONSafeNumber(v) {
			field(name, []byte(v))
			return
		}
		str(name, v)
	}
	str("core-server", c.CoreServer)
	str("call-session-id", c.SessionID)
	str("call-orig-call-id", c.OrigCallID)
	str("call-orig-match-uri", c.OrigMatchURI)
	user("call-orig-user", c.OrigUser)
	str("call-orig-domain", c.OrigDomain)
	str("call-orig-uri", c.OrigURI)
	str("call-orig-name", c.OrigName)
	str("caller-id-number", c.CallerIDNumber)
	str("call-dialed-number", c.DialedNumber)
	str("call-by-action", c.ByAction)
	str("call-by-user", c.ByUser)
	str("call-by-domain", c.ByDomain)
	str("call-by-call-id", c.ByCallID)
	str("call-term-call-id", c.TermCallID)
	user("call-term-user", c.TermUser)
	str("call-term-domain", c.TermDomain)
	str("call-term-uri", c.TermURI)
	str("call-start-datetime", c.StartDatetime)
	str("call-answer-datetime", c.AnswerDatetime)
	str("call-orig-info", c.render.info(c.OrigInfo))
	termInfo := c.render.info(c.TermInfo)
	switch c.render.termInfoField {
	case TermInfoCall:
		str(TermInfoCall, termInfo)
	case TermInfoSpec:
		str(TermInfoSpec, termInfo)
	default:
		str(TermInfoSpec, termInfo)
		str(TermInfoCall, termInfo)
	}
	str("call-audio-codec", c.AudioCodec)
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads a record in any rendering the API produces. Unknown fields are ignored.
func (c *ActiveCall) UnmarshalJSON(data []byte) error {
	var raw map[string]flexString
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("nssim: decode ActiveCall: %w", err)
	}
	get := func(names ...string) string {
		for _, n := range names {
			if v, ok := raw[n]; ok {
				return string(v)
			}
		}
		return ""
	}
	*c = ActiveCall{
		CoreServer:     get("core-server"),
		SessionID:      get("call-session-id"),
		OrigCallID:     get("call-orig-call-id"),
		OrigMatchURI:   get("call-orig-match-uri"),
		OrigUser:       get("call-orig-user"),
		OrigDomain:     get("call-orig-domain"),
		OrigURI:        get("call-orig-uri"),
		OrigName:       get("call-orig-name"),
		CallerIDNumber: get("caller-id-number"),
		DialedNumber:   get("call-dialed-number"),
		ByAction:       get("call-by-action"),
		ByUser:         get("call-by-user"),
		ByDomain:       get("call-by-domain"),
		ByCallID:       get("call-by-call-id"),
		TermCallID:     get("call-term-call-id"),
		TermUser:       get("call-term-user"),
		TermDomain:     get("call-term-domain"),
		TermURI:        get("call-term-uri"),
		StartDatetime:  get("call-start-datetime"),
		AnswerDatetime: get("call-answer-datetime"),
		OrigInfo:       get("call-orig-info"),
		TermInfo:       get(TermInfoCall, TermInfoSpec),
		AudioCodec:     get("call-audio-codec"),
	}
	return nil
}

// isJSONSafeNumber reports whether v can be written as a JSON number and read back as the same
// text by any client: no leading zero to lose, and few enough digits for a float64.
func isJSONSafeNumber(v string) bool {
	if v == "" || len(v) > 15 || (v[0] == '0' && len(v) > 1) {
		return false
	}
	for _, r := range v {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// flexString decodes a JSON string, number or boolean into its text, because NetSapiens
// clients and examples send ids and extensions both ways (the guide shows a number) and
// yes/no flags are easy to send as booleans.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*f = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
	case string(b) == "true":
		*f = "yes"
	case string(b) == "false":
		*f = "no"
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return err
		}
		*f = flexString(n)
	default:
		// A type error lets the decoder name the offending field.
		return &json.UnmarshalTypeError{Value: "non-scalar", Type: reflect.TypeFor[string]()}
	}
	return nil
}

// side names one end of a session.
type side int

const (
	origSide side = iota
	termSide
)

func (sd side) other() side { return 1 - sd }

// leg is one end of a session. A term leg that has not been dialled yet (the callback leg of
// a CallRequest is still ringing) has an empty callID and info.
type leg struct {
	callID string
	user   string
	domain string
	uri    string
	match  string
	name   string
	info   string
	// number is the number of a PSTN party (the caller of an inbound call, or an external
	// number under NumbersPSTN), which the API shows without a user or domain of its own;
	// user and domain still name it for SetBehaviour and Answer.
	number string
	// ringTimer is the pending ring timeout of an alerting leg, cancelled when it stops
	// ringing so a long RingTimeout leaves no timer behind.
	ringTimer uint64
}

func (l *leg) dialled() bool { return l.info != "" }

// party is the user and domain the API shows for the leg on side sd: a PSTN party has none,
// and its term side the domain "*" [C-doc: the spec's example has orig_user "", orig_domain
// "", term_user "", term_domain "*"].
func (l *leg) party(sd side) (user, domain string) {
	switch {
	case l.number == "":
		return l.user, l.domain
	case sd == termSide:
		return "", "*"
	}
	return "", ""
}

// connected reports whether the leg has been answered (and may since be held).
func (l *leg) connected() bool { return l.info == InfoActive || l.info == InfoHeld }

func (l *leg) is(domain, user string) bool {
	return user != "" && l.user == user && strings.EqualFold(l.domain, domain)
}

// session is one live call.
type session struct {
	seq      uint64 // creation order, for stable listings
	id       string
	core     string
	domain   string // the domain that owns the session (of the routed user or the requester)
	legs     [2]*leg
	callerID string
	dialed   string
	byAction string
	byUser   string
	byDomain string
	byCallID string
	start    time.Time
	answered time.Time
	codec    string

	// listed is whether the API's GETs show the session; false until Chaos.ListingDelay has
	// passed, and then listTimer is the pending timer that lists it.
	listed    bool
	listTimer uint64
	// domains are the lower-cased domains the session is filed under in Sim.inDomain.
	domains []string
	// aliases are Call-IDs that address the session although no leg carries them (the
	// call-id of a CallRequest whose session an attended transfer kept, JoinKeepsConsult).
	aliases []string
	// byHidden is whether the call-by-* fields are left out of the session's record
	// (Config.JoinHidesCallBy); they still address it.
	byHidden bool
	// targetAnswered is whether the target (term) leg of a CallRequest has ever connected,
	// for Truth: two of these for one call-id means a second consult leg was connected.
	targetAnswered bool
}

func (s *session) leg(sd side) *leg { return s.legs[sd] }

// involves reports whether user@domain is a party to the session or requested it; such a user
// may address the session through /users/{user}/calls [G: the notes only say {user} is
// probably a party; accepting the requester lets a CallRequest whose first leg is a PSTN number
// be read back, as the schema promises].
func (s *session) involves(domain, user string) bool {
	if s.legs[origSide].is(domain, user) || s.legs[termSide].is(domain, user) {
		return true
	}
	return user != "" && s.byUser == user && strings.EqualFold(s.byDomain, domain)
}

// owns reports whether callID is user@domain's own in the session (Config.ReadOtherLeg): a
// leg of theirs carries it, or it is the call-id of a CallRequest they made, which the schema
// says its requester can read back [C-doc] (the session's call-by-call-id, or an alias once an
// attended transfer kept the session, JoinKeepsConsult).
func (s *session) owns(domain, user, callID string) bool {
	if sd, ok := s.sideOf(callID); ok && s.legs[sd].is(domain, user) {
		return true
	}
	requester := user != "" && s.byUser == user && strings.EqualFold(s.byDomain, domain)
	return requester && (callID == s.byCallID || slices.Contains(s.aliases, callID))
}

// userSide is the end of the session that belongs to user@domain. When both ends do (a user
// calling themselves) the addressed end wins; when neither does, the user is the requester
// and acts through the orig (callback) leg.
func (s *session) userSide(domain, user string, addressed side) side {
	if s.legs[addressed].is(domain, user) {
		return addressed
	}
	if s.legs[addressed.other()].is(domain, user) {
		return addressed.other()
	}
	return origSide
}

// sideOf returns which leg carries callID.
func (s *session) sideOf(callID string) (side, bool) {
	for _, sd := range []side{origSide, termSide} {
		if l := s.legs[sd]; l.callID != "" && l.callID == callID {
			return sd, true
		}
	}
	return 0, false
}

// visibleIn reports whether the session belongs in a listing of domain ("*" = every domain).
func (s *session) visibleIn(domain string) bool {
	if domain == "*" || domain == "" {
		return true
	}
	return strings.EqualFold(s.domain, domain) ||
		strings.EqualFold(s.legs[origSide].domain, domain) ||
		strings.EqualFold(s.legs[termSide].domain, domain) ||
		strings.EqualFold(s.byDomain, domain)
}

func (s *session) record(r renderOptions) ActiveCall {
	o, t := s.legs[origSide], s.legs[termSide]
	ou, od := o.party(origSide)
	tu, td := t.party(termSide)
	answer := notAnswered
	if !s.answered.IsZero() {
		answer = s.answered.UTC().Format(datetimeLayout)
	}
	byAction, byUser, byDomain, byCallID := s.byAction, s.byUser, s.byDomain, s.byCallID
	if s.byHidden {
		byAction, byUser, byDomain, byCallID = "", "", "", ""
	}
	return ActiveCall{
		CoreServer:     s.core,
		SessionID:      s.id,
		OrigCallID:     o.callID,
		OrigMatchURI:   o.match,
		OrigUser:       ou,
		OrigDomain:     od,
		OrigURI:        o.uri,
		OrigName:       o.name,
		CallerIDNumber: s.callerID,
		DialedNumber:   s.dialed,
		ByAction:       byAction,
		ByUser:         byUser,
		ByDomain:       byDomain,
		ByCallID:       byCallID,
		TermCallID:     t.callID,
		TermUser:       tu,
		TermDomain:     td,
		TermURI:        t.uri,
		StartDatetime:  s.start.UTC().Format(datetimeLayout),
		AnswerDatetime: answer,
		OrigInfo:       o.info,
		TermInfo:       t.info,
		AudioCodec:     s.codec,
		render:         r,
	}
}

// userLeg builds a leg to a user's device. Every user and number exists: the simulator does
// not provision users.
func userLeg(user, domain string) *leg {
	uri := "sip:" + user + "@" + domain
	return &leg{user: user, domain: domain, uri: uri, match: uri, name: user}
}

// externalNumber reports whether a party's user part is an external number rather than an
// extension: "+" and digits, or ten digits or more (the spec's examples are 11-digit NANP
// numbers; the simulator does not provision users, so it cannot ask the dial plan).
func externalNumber(user string) bool {
	digits := strings.TrimPrefix(user, "+")
	if digits == "" {
		return false
	}
	for _, r := range digits {
		if r < '0' || r > '9' {
			return false
		}
	}
	return len(digits) < len(user) || len(digits) >= 10
}

// parseParty reads "1010", "1010@TEST" or "sip:1010@TEST" (the forms the schema and the
// transferPeer example use) into user and domain, defaulting the domain.
func parseParty(s, defaultDomain string) (user, domain string) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "sip:"), "sips:")
	if u, d, ok := strings.Cut(s, "@"); ok && d != "" {
		return u, d
	}
	return strings.TrimSuffix(s, "@"), defaultDomain
}

// EndReason says why a session ended.
type EndReason string

// Reasons a session ends.
const (
	EndHangup       EndReason = "hangup"       // a remote party hung up (Sim.Hangup)
	EndNoAnswer     EndReason = "no-answer"    // a leg rang for RingTimeout
	EndBusy         EndReason = "busy"         // the rung user was busy
	EndRejected     EndReason = "rejected"     // the rung user declined, or DELETE .../reject
	EndTransferred  EndReason = "transferred"  // merged into another session by an attended transfer
	EndDisconnected EndReason = "disconnected" // DELETE .../calls/{call_id}
)

// EndedSession is a session that is gone, with its last state and why it ended.
type EndedSession struct {
	Call   ActiveCall `json:"call"`
	Reason EndReason  `json:"reason"`
	// Detail says more, e.g. which party hung up or which session a transfer merged into.
	Detail string    `json:"detail"`
	Time   time.Time `json:"time"`
	// Listed is whether the API ever listed the session; false when it ended within
	// Chaos.ListingDelay (a consult whose target was busy never appears).
	Listed bool `json:"listed"`
}
