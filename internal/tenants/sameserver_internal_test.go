package tenants

import "testing"

// sameServer writes alike only the URLs that reach the same server at the
// same API root; an IPv6 host is handled as a name is, and its zone (an
// interface's name, whose case counts) is kept as written.
func TestSameServerOnlyMergesTheSameServer(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"https://[2001:DB8::1]/ns-api/v2", "https://[2001:db8::1]:443/ns-api/v2/", true},
		{"https://[2001:db8::1]:0443/ns-api/v2", "https://[2001:db8::1]/ns-api/v2", true},
		{"http://pbx.example:080/ns-api/v2", "http://pbx.example/ns-api/v2", true},
		{"https://[2001:db8::1]/ns-api/v2", "https://[2001:db8::2]/ns-api/v2", false},
		{"https://[2001:db8::1]:8443/ns-api/v2", "https://[2001:db8::1]:443/ns-api/v2", false},
		{"https://[fe80::1%25eth0]/ns-api/v2", "https://[FE80::1%25eth0]/ns-api/v2", true},
		{"https://[fe80::1%25eth0]/ns-api/v2", "https://[fe80::1%25ETH0]/ns-api/v2", false},
		{"https://[fe80::1%25eth0]/ns-api/v2", "https://[fe80::1%25eth1]/ns-api/v2", false},
		{"https://pbx.example:443/ns-api/v2", "http://pbx.example:443/ns-api/v2", false},
		{"https://pbx.example/ns-api/v2", "https://pbx.example/ns-api/V2", false},
		{"https://pbx.example/ns-api/v2", "https://pbx.example:4430/ns-api/v2", false},
	} {
		if got := sameServer(tc.a) == sameServer(tc.b); got != tc.same {
			t.Errorf("%s and %s: the same place %v (%q, %q), want %v", tc.a, tc.b, got, sameServer(tc.a), sameServer(tc.b), tc.same)
		}
	}
}
