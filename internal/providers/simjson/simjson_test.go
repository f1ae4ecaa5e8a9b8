package simjson

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestWording(t *testing.T) {
	type body struct {
		Status int    `json:"not_ringing_status,omitempty"`
		Side   string `json:"held_side"`
		Plain  bool
	}
	for field, want := range map[string]string{"Status": "not_ringing_status", "Side": "held_side", "Plain": "Plain", "Missing": "Missing"} {
		if got := FieldName[body](field); got != want {
			t.Errorf("FieldName(%s) = %q, want %q", field, got, want)
		}
	}
	for _, c := range []struct {
		in   []string
		want string
	}{{nil, ""}, {[]string{"a"}, `"a"`}, {[]string{"a", "b"}, `"a" or "b"`}, {[]string{"a", "b", "c"}, `"a", "b" or "c"`}} {
		if got := OrList(c.in); got != c.want {
			t.Errorf("OrList(%q) = %s, want %s", c.in, got, c.want)
		}
	}
	var b body
	msg, ok := TypeError(json.Unmarshal([]byte(`{"not_ringing_status":"409"}`), &b))
	if want := "not_ringing_status is a whole number, not a JSON string"; !ok || msg != want {
		t.Errorf("TypeError = %q, %v; want %q", msg, ok, want)
	}
	if _, ok := TypeError(errors.New("unexpected EOF")); ok {
		t.Error("TypeError took another error for a type error")
	}
}
