package crashtest

import (
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// TestStormDrawsBothSidesOfReadOtherLeg: the storm's seeds run on both
// sides of whether a NetSapiens read by id under a user's path finds
// another party's leg, seed 1 on the simulator's default, and the line a
// seed prints names the side it drew, so that a seed replays it. It needs
// neither the binaries nor the storm (it runs with -short).
func TestStormDrawsBothSidesOfReadOtherLeg(t *testing.T) {
	if g := drawGuesses(1); g.ns.ReadOtherLeg != "" {
		t.Errorf("seed 1 draws read_other_leg %q, want the default", g.ns.ReadOtherLeg)
	}
	seen := map[string]bool{}
	for seed := uint64(2); seed < 66; seed++ {
		g := drawGuesses(seed)
		seen[g.ns.ReadOtherLeg] = true
		if want := `"read_other_leg":"` + g.ns.ReadOtherLeg + `"`; !strings.Contains(g.String(), want) {
			t.Fatalf("seed %d prints %s, which does not say %s", seed, g, want)
		}
	}
	for _, side := range []string{nssim.OtherLegFound, nssim.OtherLegNotFound} {
		if !seen[side] {
			t.Errorf("no seed of 2 to 65 draws read_other_leg %q", side)
		}
	}
}
