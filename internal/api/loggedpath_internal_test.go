package api

import "testing"

// loggedPath keeps what names a callback and redacts its token and
// whatever follows it, on both callback routes; other paths are as sent.
func TestLoggedPath(t *testing.T) {
	for path, want := range map[string]string{
		"/callbacks/netsapiens/tr_1/default.MAC":                 "/callbacks/netsapiens/tr_1/redacted",
		"/callbacks/netsapiens/tr_1/default.MAC/":                "/callbacks/netsapiens/tr_1/redacted",
		"/callbacks/bandwidth/tr_1/default.MAC/x/y":              "/callbacks/bandwidth/tr_1/redacted",
		"/callbacks/netsapiens/subscriptions/acme.example/T.MAC": "/callbacks/netsapiens/subscriptions/acme.example/redacted",
		"/callbacks/netsapiens/subscriptions/acme.example/T/x":   "/callbacks/netsapiens/subscriptions/acme.example/redacted",
		"/callbacks/netsapiens/subscriptions/acme.example":       "/callbacks/netsapiens/subscriptions/acme.example",
		"/callbacks/netsapiens/tr_1":                             "/callbacks/netsapiens/tr_1",
		"/v1/transfers/tr_1/cancel":                              "/v1/transfers/tr_1/cancel",
		"//callbacks/netsapiens/tr_1/default.MAC":                "//callbacks/netsapiens/tr_1/redacted",
		"/transferd/callbacks/bandwidth/tr_1/default.MAC":        "/transferd/callbacks/bandwidth/tr_1/redacted",
		"/x/callbacks/netsapiens/subscriptions/acme/T.MAC":       "/x/callbacks/netsapiens/subscriptions/acme/redacted",
	} {
		if got := loggedPath(path); got != want {
			t.Errorf("loggedPath(%q) = %q, want %q", path, got, want)
		}
	}
}
