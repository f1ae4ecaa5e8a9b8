package crashtest

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// TestStormCheckStrandedAgent: invariant (f) on a Bandwidth attended case.
// The agent alone in the consult bridge transferd created is a violation
// even with the caller given back to nobody and the outcome saying so; the
// agent back with the caller in the bridge the test placed is not, nor is
// an ended agent's call, nor a bridge of ours holding only another case's
// calls (each case's check names its own).
func TestStormCheckStrandedAgent(t *testing.T) {
	var tr transfer
	if err := json.Unmarshal([]byte(`{"id":"tr-1","state":"failed","outcome":{"reason":"no_answer","caller_restored":true,"verified":true}}`), &tr); err != nil {
		t.Fatal(err)
	}
	r := stormResult{
		c:  stormCase{provider: "bandwidth", mode: "attended", target: "+15550001010"},
		pl: placed{a: "c-a", g: "c-g", b1: "brg-1"},
		tr: &tr,
	}
	call := func(id, state, bridge string, with ...string) bwsim.TruthCall {
		up := state == bwsim.StateActive
		return bwsim.TruthCall{ID: id, State: state, BridgeID: bridge, Answered: true, Up: up, ConnectedTo: append([]string{}, with...)}
	}
	check := func(truth bwsim.Truth) []string {
		var f []string
		problems, _ := checkStormBandwidth(r, truth, nil, stormGuesses{})
		for _, p := range problems {
			if strings.HasPrefix(p, "(f)") {
				f = append(f, p)
			}
		}
		return f
	}

	// Restored: A and G in b1, b2 empty.
	restored := bwsim.Truth{
		Calls: []bwsim.TruthCall{call("c-a", bwsim.StateActive, "brg-1", "c-g"), call("c-g", bwsim.StateActive, "brg-1", "c-a")},
		Bridges: []bwsim.Bridge{
			{ID: "brg-1", State: bwsim.BridgeActive, BridgeAudio: true, CallIDs: []string{"c-a", "c-g"}},
			{ID: "brg-2", State: bwsim.BridgeCompleted, BridgeAudio: true, CallIDs: []string{}, API: true},
		},
	}
	if got := check(restored); len(got) != 0 {
		t.Errorf("restored: %v", got)
	}

	// Stranded: G alone in b2 (the caller then alone in b1 and held: (a) and
	// (d) speak of it; (f) of the agent).
	stranded := bwsim.Truth{
		Calls: []bwsim.TruthCall{call("c-a", bwsim.StateActive, "brg-1"), call("c-g", bwsim.StateActive, "brg-2")},
		Bridges: []bwsim.Bridge{
			{ID: "brg-1", State: bwsim.BridgeActive, BridgeAudio: true, CallIDs: []string{"c-a"}},
			{ID: "brg-2", State: bwsim.BridgeCreated, BridgeAudio: true, CallIDs: []string{"c-g"}, API: true},
		},
	}
	if got := check(stranded); len(got) != 1 || !strings.Contains(got[0], "agent's call c-g") {
		t.Errorf("stranded: %v", got)
	}
	// The same bridge placed by the test is not one of ours.
	stranded.Bridges[1].API = false
	if got := check(stranded); len(got) != 0 {
		t.Errorf("stranded in a bridge the test made: %v", got)
	}

	// Another case's agent alone in a bridge of ours: not this case's
	// violation, but one strandedInOurBridges reports when no case owns it.
	other := bwsim.Truth{
		Calls: []bwsim.TruthCall{call("c-a", bwsim.StateActive, "brg-1", "c-g"), call("c-g", bwsim.StateActive, "brg-1", "c-a"), call("c-x", bwsim.StateActive, "brg-9")},
		Bridges: []bwsim.Bridge{
			{ID: "brg-1", State: bwsim.BridgeActive, BridgeAudio: true, CallIDs: []string{"c-a", "c-g"}},
			{ID: "brg-9", State: bwsim.BridgeCreated, BridgeAudio: true, CallIDs: []string{"c-x"}, API: true},
		},
	}
	if got := check(other); len(got) != 0 {
		t.Errorf("another case's bridge: %v", got)
	}
	if got := strandedInOurBridges(other, []stormResult{r}); len(got) != 1 || !strings.Contains(got[0], "brg-9") {
		t.Errorf("unowned: %v", got)
	}
	stranded.Bridges[1].API = true
	if got := strandedInOurBridges(stranded, []stormResult{r}); len(got) != 0 {
		t.Errorf("owned bridge reported as unowned: %v", got)
	}
}
