package netsapiens

import "testing"

// samePostURL holds RFC 3986's equivalences and nothing more: another
// token, in the path or the query, is another post-url.
func TestSamePostURL(t *testing.T) {
	const ours = "https://transferd.example/callbacks/netsapiens/subscriptions/test/TOKEN"
	for _, tc := range []struct {
		read string
		same bool
	}{
		{ours, true},
		{"HTTPS://Transferd.Example:443/callbacks/netsapiens/subscriptions/test/TOKEN/", true},
		{"https://transferd.example/callbacks/netsapiens/subscriptions/%74est/TOKEN", true},
		{"https://transferd.example/callbacks/netsapiens/subscriptions/test/token", false},
		{"https://transferd.example/callbacks/netsapiens/subscriptions/test/OTHER", false},
		{"http://transferd.example/callbacks/netsapiens/subscriptions/test/TOKEN", false},
		{"https://transferd.example:8443/callbacks/netsapiens/subscriptions/test/TOKEN", false},
		{"https://other.example/callbacks/netsapiens/subscriptions/test/TOKEN", false},
		{"https://transferd.example/callbacks/netsapiens/subscriptions/test/TOKEN?token=x", false},
		{"%", false},
	} {
		if got := samePostURL(tc.read, ours); got != tc.same {
			t.Errorf("samePostURL(%q) = %v, want %v", tc.read, got, tc.same)
		}
	}
	if !samePostURL("https://h.example/cb?b=2&a=1", "https://h.example/cb?a=1&b=2") ||
		samePostURL("https://h.example/cb?a=1&b=2", "https://h.example/cb?a=1&b=3") {
		t.Error("the query's parameters are compared by value, in any order")
	}
}
