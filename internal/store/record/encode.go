package record

import (
	"errors"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/transferd/transferd/internal/orchestrator"
)

// The encoder below writes a transfer as encoding/json writes it, field by
// field, without reflection. A record is encoded at every save (six per
// transfer); go-json-experiment's reflective encoder took 9.8–11.8 µs a
// record and was about 6 % of transferd's CPU under load, most of it
// walking the struct's metadata and the rest making garbage. Written out
// by hand it takes a fraction of that (BenchmarkRecord).
//
// It must write exactly encoding/json's bytes: field order, names,
// omitempty and omitzero, nulls, escapes, times. TestSameBytesAsEncodingJSON
// fills every field of thousands of random transfers, by reflection, and
// compares: a field added to orchestrator.Transfer (or a type within it)
// that is not written here fails that test.

// errTimeRange is encoding/json's refusal of a time RFC 3339 cannot write.
var errTimeRange = errors.New("Time.MarshalJSON: year outside of range [0,9999] or timezone hour outside of range [0,23]")

// encoder appends a record; err is the first time it could not write.
type encoder struct {
	b   []byte
	err error
}

// member appends the name of a member of the object opened at index open,
// after a comma unless it is the object's first. Names are Go identifiers
// or tags here: nothing in them needs escaping.
func (e *encoder) member(open int, name string) {
	if len(e.b) > open+1 {
		e.b = append(e.b, ',')
	}
	e.b = append(e.b, '"')
	e.b = append(e.b, name...)
	e.b = append(e.b, '"', ':')
}

// open starts an object and returns its index for member.
func (e *encoder) open() int {
	e.b = append(e.b, '{')
	return len(e.b) - 1
}

func (e *encoder) close() { e.b = append(e.b, '}') }

// str is a string member; omitempty leaves out an empty one.
func (e *encoder) str(open int, name, v string, omitempty bool) {
	if omitempty && v == "" {
		return
	}
	e.member(open, name)
	e.b = appendString(e.b, v)
}

func (e *encoder) int(open int, name string, v int64, omitempty bool) {
	if omitempty && v == 0 {
		return
	}
	e.member(open, name)
	e.b = strconv.AppendInt(e.b, v, 10)
}

func (e *encoder) bool(open int, name string, v, omitempty bool) {
	if omitempty && !v {
		return
	}
	e.member(open, name)
	e.b = strconv.AppendBool(e.b, v)
}

// time is a time member; omitzero leaves out the zero time.
func (e *encoder) time(open int, name string, t time.Time, omitzero bool) {
	if omitzero && t.IsZero() {
		return
	}
	e.member(open, name)
	e.b = append(e.b, '"')
	n := len(e.b)
	e.b = t.AppendFormat(e.b, time.RFC3339Nano)
	// time.Time.MarshalJSON's checks, on what was written: RFC 3339 has
	// four digits of year and a zone of less than 24 hours.
	if e.b[n+4] != '-' || e.b[len(e.b)-1] != 'Z' && (isDigit(e.b[len(e.b)-6]) || e.b[len(e.b)-5] > '2' || e.b[len(e.b)-5] == '2' && e.b[len(e.b)-4] >= '4') {
		if e.err == nil {
			e.err = errTimeRange
		}
	}
	e.b = append(e.b, '"')
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// transfer appends t's record.
func (e *encoder) transfer(t *orchestrator.Transfer) {
	o := e.open()
	e.str(o, "id", t.ID, false)
	e.int(o, "version", t.Version, false)
	e.str(o, "Tenant", t.Tenant, true)
	e.member(o, "Request")
	e.request(&t.Request)
	e.str(o, "State", string(t.State), false)
	e.time(o, "StateAt", t.StateAt, true)
	e.member(o, "Legs")
	l := e.open()
	for _, leg := range []struct {
		name string
		ref  *orchestrator.LegRef
	}{{"caller", &t.Legs.Caller}, {"agent", &t.Legs.Agent}, {"consult", &t.Legs.Consult}} {
		e.member(l, leg.name)
		r := e.open()
		e.str(r, "call_id", leg.ref.CallID, true)
		e.str(r, "session_id", leg.ref.SessionID, true)
		e.str(r, "server", leg.ref.Server, true)
		e.str(r, "bridge_id", leg.ref.BridgeID, true)
		e.close()
	}
	e.close()
	e.member(o, "Steps")
	if t.Steps == nil {
		e.b = append(e.b, "null"...)
	} else {
		e.b = append(e.b, '[')
		for i := range t.Steps {
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.step(&t.Steps[i])
		}
		e.b = append(e.b, ']')
	}
	e.member(o, "Sent")
	s := e.open()
	e.time(s, "hold", t.Sent.Hold, true)
	e.time(s, "dial", t.Sent.Dial, true)
	e.time(s, "join", t.Sent.Join, true)
	e.time(s, "join_first", t.Sent.JoinFirst, true)
	e.bool(s, "join_first_maybe_unsent", t.Sent.JoinFirstMaybeUnsent, true)
	e.time(s, "hangup", t.Sent.Hangup, true)
	e.time(s, "unhold", t.Sent.Unhold, true)
	e.int(s, "hold_sends", int64(t.Sent.HoldSends), true)
	e.close()
	e.member(o, "Seen")
	s = e.open()
	e.bool(s, "held", t.Seen.Held, true)
	e.bool(s, "consult", t.Seen.Consult, true)
	e.bool(s, "consult_ended", t.Seen.ConsultEnded, true)
	e.bool(s, "not_joined", t.Seen.NotJoined, true)
	e.close()
	e.str(o, "ProviderNotes", t.ProviderNotes, true)
	e.bool(o, "Answered", t.Answered, false)
	e.member(o, "Failure")
	e.outcome(t.Failure)
	e.member(o, "Outcome")
	e.outcome(t.Outcome)
	e.str(o, "Signal", string(t.Signal), false)
	e.time(o, "ConsultDeadline", t.ConsultDeadline, false)
	e.member(o, "Cleanup")
	if c := t.Cleanup; c == nil {
		e.b = append(e.b, "null"...)
	} else {
		s := e.open()
		e.time(s, "until", c.Until, false)
		e.str(s, "reason", c.Reason, false)
		e.close()
	}
	e.str(o, "Owner", t.Owner, false)
	e.str(o, "IdempotencyScope", t.IdempotencyScope, true)
	e.str(o, "IdempotencyKey", t.IdempotencyKey, true)
	e.str(o, "RequestID", t.RequestID, true)
	e.int(o, "EventSeq", t.EventSeq, true)
	// Outbox is not stored (json:"-").
	e.time(o, "CreatedAt", t.CreatedAt, false)
	e.time(o, "UpdatedAt", t.UpdatedAt, false)
	e.close()
}

func (e *encoder) request(r *orchestrator.Request) {
	o := e.open()
	e.str(o, "provider", r.Provider, false)
	e.str(o, "mode", string(r.Mode), false)
	e.member(o, "call")
	c := e.open()
	e.str(c, "domain", r.Call.Domain, true)
	e.str(c, "user", r.Call.User, true)
	e.str(c, "call_id", r.Call.CallID, true)
	e.str(c, "agent_call_id", r.Call.AgentCallID, true)
	e.close()
	e.str(o, "target", r.Target, false)
	e.str(o, "completion", string(r.Completion), false)
	e.int(o, "consult_timeout", int64(r.ConsultTimeout), false)
	e.str(o, "external_id", r.ExternalID, true)
	if len(r.Metadata) > 0 {
		e.member(o, "metadata")
		e.open()
		// encoding/json sorts a map's keys.
		keys := make([]string, 0, len(r.Metadata))
		for k := range r.Metadata {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.b = appendString(e.b, k)
			e.b = append(e.b, ':')
			e.b = appendString(e.b, r.Metadata[k])
		}
		e.close()
	}
	e.str(o, "caller_id", r.CallerID, true)
	if w := r.Whisper; w != nil {
		e.member(o, "whisper")
		s := e.open()
		e.str(s, "sentence", w.Sentence, true)
		e.str(s, "file_url", w.FileURL, true)
		e.str(s, "gender", w.Gender, true)
		e.str(s, "locale", w.Locale, true)
		e.str(s, "voice", w.Voice, true)
		e.close()
	}
	if d := r.Diversion; d != nil {
		e.member(o, "diversion")
		s := e.open()
		e.str(s, "treatment", d.Treatment, true)
		e.str(s, "reason", d.Reason, true)
		e.close()
	}
	if rec := r.Recording; rec != nil {
		e.member(o, "recording")
		s := e.open()
		if rec.Enabled != nil {
			e.bool(s, "enabled", *rec.Enabled, false)
		}
		e.str(s, "file_format", rec.FileFormat, true)
		e.close()
	}
	e.close()
}

func (e *encoder) step(s *orchestrator.Step) {
	o := e.open()
	e.str(o, "name", s.Name, false)
	e.str(o, "status", string(s.Status), false)
	e.time(o, "started_at", s.StartedAt, false)
	e.time(o, "ended_at", s.EndedAt, true)
	e.str(o, "detail", s.Detail, true)
	e.evidence(o, s.Evidence)
	e.str(o, "error_kind", s.ErrKind, true)
	e.close()
}

// outcome writes an outcome, or null.
func (e *encoder) outcome(c *orchestrator.Outcome) {
	if c == nil {
		e.b = append(e.b, "null"...)
		return
	}
	o := e.open()
	e.str(o, "reason", string(c.Reason), false)
	e.bool(o, "caller_restored", c.CallerRestored, false)
	e.bool(o, "verified", c.Verified, false)
	e.str(o, "detail", c.Detail, true)
	e.evidence(o, c.Evidence)
	e.close()
}

// evidence writes an "evidence" member, left out when nil (omitempty).
func (e *encoder) evidence(open int, v *orchestrator.Evidence) {
	if v == nil {
		return
	}
	e.member(open, "evidence")
	o := e.open()
	e.int(o, "status", int64(v.Status), true)
	e.str(o, "code", v.Code, true)
	e.str(o, "message", v.Message, true)
	e.close()
}

const hex = "0123456789abcdef"

// safe are the ASCII characters a string holds as they are.
var safe = func() (t [utf8.RuneSelf]bool) {
	for c := range t {
		t[c] = c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendString appends s as a JSON string as encoding/json writes it: <, >
// and & escaped for HTML, control characters, invalid UTF-8 as U+FFFD,
// and U+2028 and U+2029 escaped for JSONP.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if safe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
