package bwsim

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// jsonBody decodes request bodies as tolerantly as the real API had to be: the docs' curl
// examples send booleans as strings ("true"), the Go SDK sends recordingEnabled as a string on
// purpose, and the python SDK sends an explicit null for every unset field (notes §2).
// Unknown fields are ignored.
type jsonBody struct {
	resource string // "call" or "bridge", for error messages
	prefix   string // "whisperAudio." inside nested objects
	m        map[string]json.RawMessage
}

func parseBody(resource string, raw []byte) (jsonBody, *apiError) {
	b := jsonBody{resource: resource, m: map[string]json.RawMessage{}}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return b, nil
	}
	if err := json.Unmarshal(raw, &b.m); err != nil {
		// The wording is [GUESS]; "Bad parameters" is one of the documented messages.
		return b, errValidation("Bad parameters: the request body is not a JSON object: " + err.Error())
	}
	return b, nil
}

// get returns the raw value unless it is missing or null.
func (b jsonBody) get(name string) (json.RawMessage, bool) {
	v, ok := b.m[name]
	if !ok || string(bytes.TrimSpace(v)) == "null" {
		return nil, false
	}
	return v, true
}

func (b jsonBody) invalid(name, want string) *apiError {
	return errInvalidValue(b.resource, b.prefix+name, want)
}

func (b jsonBody) str(name string) (string, bool, *apiError) {
	v, ok := b.get(name)
	if !ok {
		return "", false, nil
	}
	var out string
	if err := json.Unmarshal(v, &out); err != nil {
		return "", false, b.invalid(name, "want a string")
	}
	return out, true, nil
}

// boolean accepts true, false and their string forms, in any case.
func (b jsonBody) boolean(name string) (bool, bool, *apiError) {
	v, ok := b.get(name)
	if !ok {
		return false, false, nil
	}
	var out bool
	if err := json.Unmarshal(v, &out); err == nil {
		return out, true, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true":
			return true, true, nil
		case "false":
			return false, true, nil
		}
	}
	return false, false, errOneOf(b.resource, b.prefix+name, []string{"true", "false"})
}

// integer accepts a JSON integer or a string holding one.
func (b jsonBody) integer(name string) (int, bool, *apiError) {
	v, ok := b.get(name)
	if !ok {
		return 0, false, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		s = string(v)
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, false, b.invalid(name, "want an integer")
	}
	return n, true, nil
}

func (b jsonBody) object(name string) (jsonBody, bool, *apiError) {
	out := jsonBody{resource: b.resource, prefix: b.prefix + name + ".", m: map[string]json.RawMessage{}}
	v, ok := b.get(name)
	if !ok {
		return out, false, nil
	}
	if err := json.Unmarshal(v, &out.m); err != nil {
		return out, false, b.invalid(name, "want an object")
	}
	return out, true, nil
}

// strings returns a list of strings; present is true for an empty list too, because callIds:[]
// means "remove every call".
func (b jsonBody) strings(name string) ([]string, bool, *apiError) {
	v, ok := b.get(name)
	if !ok {
		return nil, false, nil
	}
	var out []string
	if err := json.Unmarshal(v, &out); err != nil {
		return nil, false, b.invalid(name, "want a list of strings")
	}
	if out == nil {
		out = []string{}
	}
	return out, true, nil
}

func (b jsonBody) stringMap(name string) (map[string]string, bool, *apiError) {
	v, ok := b.get(name)
	if !ok {
		return nil, false, nil
	}
	var out map[string]string
	if err := json.Unmarshal(v, &out); err != nil {
		return nil, false, b.invalid(name, "want an object of strings")
	}
	return out, true, nil
}

// oneOf returns a string that must be one of allowed; fold compares case-insensitively and
// returns the canonical spelling from allowed.
func (b jsonBody) oneOf(name string, allowed []string, fold bool) (string, bool, *apiError) {
	v, ok, e := b.str(name)
	if e != nil || !ok {
		return "", false, e
	}
	for _, a := range allowed {
		if v == a || (fold && strings.EqualFold(v, a)) {
			return a, true, nil
		}
	}
	return "", false, errOneOf(b.resource, b.prefix+name, allowed)
}

// isE164 reports a "+" and 2 to 15 digits, the first not 0.
func isE164(s string) bool {
	if len(s) < 3 || len(s) > 16 || s[0] != '+' || s[1] == '0' {
		return false
	}
	for _, r := range s[1:] {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// isDialable reports an E.164 number or a SIP address, the documented forms of "to" and
// "transferTo".
func isDialable(s string) bool {
	return isE164(s) || (strings.HasPrefix(strings.ToLower(s), "sip:") && len(s) > len("sip:"))
}
