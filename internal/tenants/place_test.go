package tenants_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
)

// An account whose URL is written another way for the same server (the
// case of its scheme or host, its scheme's default port, a trailing
// slash, Bandwidth's default URL written out) is at the same place: built
// anew, it takes over from the adapter it replaces (a NetSapiens client's
// subscriptions, which the old one deleted under the new one's watch once
// released), and the adapters still driving transfers there are given its
// rotated secrets. Another host name, scheme, port or path may be another
// server, and stays another place.
func TestAnAccountAtAnAliasOfItsURLIsTheSamePlace(t *testing.T) {
	const acmeURL = "        base_url: https://pbx.acme.example/ns-api/v2\n"
	for _, tc := range []struct {
		url  string
		same bool
	}{
		{"https://PBX.Acme.Example/ns-api/v2", true},
		{"HTTPS://pbx.acme.example/ns-api/v2", true},
		{"https://pbx.acme.example:443/ns-api/v2", true},
		{"https://pbx.acme.example/ns-api/v2/", true},
		{"https://PBX.acme.example:443/ns-api/v2//", true},
		{"https://pbx.acme.example:0443/ns-api/v2", true},
		{"https://pbx.acme.example:/ns-api/v2", true},
		{"https://pbx.acme.example:08443/ns-api/v2", false},
		{"https://pbx2.acme.example/ns-api/v2", false},
		{"http://pbx.acme.example/ns-api/v2", false},
		{"https://pbx.acme.example:8443/ns-api/v2", false},
		{"https://pbx.acme.example/NS-API/v2", false},
	} {
		t.Run(tc.url, func(t *testing.T) {
			rig := newRetiredRig(t)
			first, _ := rig.r.Provider("acme", "netsapiens")
			rig.inUse[first] = true
			write(t, rig, strings.Replace(rig.content, acmeURL, "        base_url: "+tc.url+"\n", 1))
			second, _ := rig.r.Provider("acme", "netsapiens")
			if second == first {
				t.Fatal("the account at another URL kept its adapter")
			}
			want := [][2]orchestrator.Provider{{first, second}}
			if !tc.same {
				want = nil
			}
			if !slices.Equal(rig.handed, want) {
				t.Errorf("handed over %v, want %v (same place: %v)", rig.handed, want, tc.same)
			}
		})
	}

	// Bandwidth's default URL, written out or left out, is one place: the
	// adapter still driving transfers is given the secret rotated with
	// the move.
	rig := newRetiredRig(t)
	first, _ := rig.r.Provider("beta", "bandwidth")
	rig.inUse[first] = true
	env["BETA_BW_SECRET"] = "beta-bw-secret-2"
	write(t, rig, strings.Replace(rig.content, "        user_id: u-beta\n",
		"        user_id: u-beta\n        base_url: https://API.catapult.inetwork.com:443/v1/\n", 1))
	second, _ := rig.r.Provider("beta", "bandwidth")
	if second == first {
		t.Fatal("the account at another URL kept its adapter")
	}
	if want := [][2]orchestrator.Provider{{first, second}}; !slices.Equal(rig.handed, want) {
		t.Errorf("handed over %v, want %v", rig.handed, want)
	}
	if got := rig.given(first); !slices.Equal(got, []string{"beta-bw-secret-2"}) {
		t.Errorf("the adapter still driving transfers was given %q, want the rotated secret", got)
	}
}

// write writes content to the rig's file and reloads.
func write(t *testing.T, rig *retiredRig, content string) {
	t.Helper()
	if err := os.WriteFile(rig.path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rig.r.Reload(); err != nil {
		t.Fatal(err)
	}
}
