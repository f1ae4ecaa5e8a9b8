package api

import (
	"net/http"
	"testing"
	"time"
)

// TestPreferWaitReadsRFC7240: a preference may carry parameters after ';'
// (ignored), a header may list several preferences, and a request may send
// several Prefer headers. "wait=3; foo=bar" was read as the value
// "3; foo=bar", not a number, and the wait silently not applied (found by
// review). Only the first wait counts (RFC 7240 section 2).
func TestPreferWaitReadsRFC7240(t *testing.T) {
	const none = -1
	for _, c := range []struct {
		name    string
		headers []string
		want    time.Duration
	}{
		{"a plain wait", []string{"wait=3"}, 3 * time.Second},
		{"a parameter after the wait", []string{"wait=3; foo=bar"}, 3 * time.Second},
		{"parameters without spaces", []string{"wait=3;foo;bar=baz"}, 3 * time.Second},
		{"spaces around =", []string{"wait = 4"}, 4 * time.Second},
		{"the name in capitals", []string{"WAIT=4"}, 4 * time.Second},
		{"a quoted value", []string{`wait="5"`}, 5 * time.Second},
		{"among other preferences", []string{"respond-async, wait=6, handling=lenient"}, 6 * time.Second},
		{"after a preference with parameters", []string{"return=minimal; foo=\"a,b\", wait=7"}, 7 * time.Second},
		{"in a second Prefer header", []string{"handling=lenient", "wait=8"}, 8 * time.Second},
		{"a comma inside a quoted value", []string{`foo="x, wait=9", wait=2`}, 2 * time.Second},
		{"zero", []string{"wait=0"}, 0},
		{"past the cap", []string{"wait=61"}, maxPreferWait},
		{"past any integer", []string{"wait=99999999999999999999"}, maxPreferWait},
		{"the first wait counts", []string{"wait=2", "wait=9"}, 2 * time.Second},
		{"no Prefer", nil, none},
		{"no wait", []string{"respond-async"}, none},
		{"wait as a parameter of another preference", []string{"return=minimal; wait=3"}, none},
		{"no value", []string{"wait"}, none},
		{"a negative value", []string{"wait=-1"}, none},
		{"a sign", []string{"wait=+5"}, none},
		{"a fraction", []string{"wait=1.5"}, none},
		{"a first wait that is not a number", []string{"wait=soon, wait=5"}, none},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "/", nil)
			for _, h := range c.headers {
				r.Header.Add("Prefer", h)
			}
			got, ok := preferWait(r)
			if !ok {
				got = none
			}
			if got != c.want {
				t.Errorf("Prefer %q: wait %v (applied %t), want %v", c.headers, got, ok, c.want)
			}
		})
	}
}
