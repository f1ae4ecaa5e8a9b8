package crashtest

import (
	"fmt"
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

// TestStormDrawsEveryListingAndALaggingNode: the storm's seeds run against
// a PBX that pages its listings either way (with transferd's page size at
// its own) and one that does not, with and without a lagging API node,
// whose writes lag too or not; seed 1 keeps the defaults.
func TestStormDrawsEveryListingAndALaggingNode(t *testing.T) {
	if g := drawGuesses(1); g.listLimit != 0 || g.ns.ListParams != "" || g.ns.ListPageSize != 0 || g.laggingNode {
		t.Errorf("seed 1 draws listings %q (page size %d, list limit %d) and lagging node %v, want the defaults",
			g.ns.ListParams, g.ns.ListPageSize, g.listLimit, g.laggingNode)
	}
	listings, lagging, writes := map[string]bool{}, map[bool]bool{}, map[bool]bool{}
	for seed := uint64(2); seed < 66; seed++ {
		g := drawGuesses(seed)
		paged := g.ns.ListParams != ""
		if paged != (g.listLimit == stormListLimit) || g.ns.ListParams == nssim.ListParamsIgnored ||
			(g.ns.ListParams == nssim.ListParamsStartOnly) != (g.ns.ListPageSize == stormListLimit) {
			t.Fatalf("seed %d draws listings %q, page size %d, list limit %d: want no paging, or transferd's limit at the page size",
				seed, g.ns.ListParams, g.ns.ListPageSize, g.listLimit)
		}
		listings[g.ns.ListParams] = true
		lagging[g.laggingNode] = true
		if g.laggingWrites && !g.laggingNode {
			t.Fatalf("seed %d draws lagging writes without a lagging node", seed)
		}
		writes[g.laggingWrites] = true
	}
	for _, side := range []string{"", nssim.ListParamsHonoured, nssim.ListParamsStartOnly, nssim.ListParamsLimitOnly} {
		if !listings[side] {
			t.Errorf("no seed of 2 to 65 draws listings %q", side)
		}
	}
	if !lagging[true] || !lagging[false] {
		t.Errorf("seeds 2 to 65 draw a lagging node only %v", lagging)
	}
	if !writes[true] || !writes[false] {
		t.Errorf("seeds 2 to 65 draw lagging writes only %v", writes)
	}
}

// TestStormDrawsEveryEmptyListing: the storm's seeds run against a PBX that
// answers a listing with no rows each way the API leaves open ([], null, no
// body), seed 1 on the simulator's default, and a seed's line names it.
func TestStormDrawsEveryEmptyListing(t *testing.T) {
	if g := drawGuesses(1); g.ns.EmptyListing != "" {
		t.Errorf("seed 1 draws empty_listing %q, want the default", g.ns.EmptyListing)
	}
	seen := map[string]bool{}
	for seed := uint64(2); seed < 66; seed++ {
		g := drawGuesses(seed)
		seen[g.ns.EmptyListing] = true
		if want := `"empty_listing":"` + g.ns.EmptyListing + `"`; !strings.Contains(g.String(), want) {
			t.Fatalf("seed %d prints %s, which does not say %s", seed, g, want)
		}
	}
	for _, side := range []string{nssim.EmptyListingArray, nssim.EmptyListingNull, nssim.EmptyListingNone} {
		if !seen[side] {
			t.Errorf("no seed of 2 to 65 draws empty_listing %q", side)
		}
	}
}

// TestStormDrawsThePostURLsRenderingAndHiddenCallBy: the storm's seeds run
// against a PBX that renders a subscription's post-url as written and one
// that normalises it, and one whose kept session hides its call-by fields
// after a join and one that shows them; seed 1 keeps the defaults, and a
// seed's line names both.
func TestStormDrawsThePostURLsRenderingAndHiddenCallBy(t *testing.T) {
	if g := drawGuesses(1); g.ns.SubscriptionPostURL != "" || g.ns.JoinHidesCallBy {
		t.Errorf("seed 1 draws subscription_post_url %q and join_hides_call_by %v, want the defaults",
			g.ns.SubscriptionPostURL, g.ns.JoinHidesCallBy)
	}
	rendering, hidden := map[string]bool{}, map[bool]bool{}
	for seed := uint64(2); seed < 66; seed++ {
		g := drawGuesses(seed)
		rendering[g.ns.SubscriptionPostURL] = true
		hidden[g.ns.JoinHidesCallBy] = true
		for _, want := range []string{`"subscription_post_url":"` + g.ns.SubscriptionPostURL + `"`,
			fmt.Sprintf(`"join_hides_call_by":%v`, g.ns.JoinHidesCallBy)} {
			if !strings.Contains(g.String(), want) {
				t.Fatalf("seed %d prints %s, which does not say %s", seed, g, want)
			}
		}
	}
	for _, side := range []string{nssim.PostURLVerbatim, nssim.PostURLCanonical} {
		if !rendering[side] {
			t.Errorf("no seed of 2 to 65 draws subscription_post_url %q", side)
		}
	}
	if !hidden[true] || !hidden[false] {
		t.Errorf("seeds 2 to 65 draw join_hides_call_by only %v", hidden)
	}
}

// TestStormDrawsCallbackRetries: the storm's seeds run against a platform
// that posts a refused event no more after its fallbackUrl (the notes'
// reading, bwsim's default) and one that posts it again to the
// callbackUrl, seed 1 on the default, and a seed's line names the side:
// transferd answers a callback 503 until its note is saved, and must be
// right whether the platform gives up or posts it again.
func TestStormDrawsCallbackRetries(t *testing.T) {
	if g := drawGuesses(1); g.bw.CallbackRetries != 0 {
		t.Errorf("seed 1 draws callback_retries %d, want the default", g.bw.CallbackRetries)
	}
	seen := map[int]bool{}
	for seed := uint64(2); seed < 66; seed++ {
		g := drawGuesses(seed)
		seen[g.bw.CallbackRetries] = true
		if want := fmt.Sprintf(`"callback_retries":%d`, g.bw.CallbackRetries); !strings.Contains(g.String(), want) {
			t.Fatalf("seed %d prints %s, which does not say %s", seed, g, want)
		}
	}
	for _, side := range []int{0, 1} {
		if !seen[side] {
			t.Errorf("no seed of 2 to 65 draws callback_retries %d", side)
		}
	}
}
