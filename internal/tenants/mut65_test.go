package tenants_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
)

// A plain http URL with its scheme's default port written out (:80) is
// the same place as without it, as https's :443 is: the account moved so
// takes over from the adapter it replaces. (Only :443 was covered, and
// sameServer's :80 could be dropped unnoticed.)
func TestAnAccountAtItsPlainHTTPURLWithPort80IsTheSamePlace(t *testing.T) {
	const acmeURL = "        base_url: https://pbx.acme.example/ns-api/v2\n"
	rig := newRetiredRig(t)
	write(t, rig, strings.Replace(rig.content, acmeURL, "        base_url: http://pbx.acme.example/ns-api/v2\n", 1))
	first, _ := rig.r.Provider("acme", "netsapiens")
	rig.inUse[first] = true
	rig.handed = nil
	write(t, rig, strings.Replace(rig.content, acmeURL, "        base_url: http://pbx.acme.example:80/ns-api/v2\n", 1))
	second, _ := rig.r.Provider("acme", "netsapiens")
	if second == first {
		t.Fatal("the account at another URL kept its adapter")
	}
	if want := [][2]orchestrator.Provider{{first, second}}; !slices.Equal(rig.handed, want) {
		t.Errorf("handed over %v, want %v: http://host:80 is http://host", rig.handed, want)
	}
}
