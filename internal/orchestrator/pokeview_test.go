package orchestrator_test

import (
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// TestPokeViewReadsAtOnce: with polling too slow to ever fire during the
// test, an answer is seen only because an event poked the view, and
// poking another account's view or an unwatched key reads nothing.
func TestPokeViewReadsAtOnce(t *testing.T) {
	cfg := testConfig()
	cfg.PollInterval, cfg.PollMaxInterval = time.Hour, time.Hour
	other := orchestratortest.NewFake("other")
	h := newHarness(t, cfg, orchestratortest.NewFake("fake"), other)
	h.f.SetTarget(orchestratortest.TargetRings)
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	id := h.start(t, r)
	h.waitFor(t, id, inState(orchestrator.StateConsulting))

	h.e.PokeView(other, "")        // no transfer watches the other account
	h.e.PokeView(h.f, "elsewhere") // nor this key of the right one
	if n := h.f.Answer(id); n != 1 {
		t.Fatalf("Answer answered %d consults, want 1", n)
	}
	h.e.PokeView(h.f, h.f.WatchKey(nil))
	if tr := h.waitFor(t, id, answered); !tr.Answered {
		t.Fatalf("not answered after the poke: %+v", tr)
	}
	for _, rec := range other.Records() {
		t.Errorf("the other account was called: %+v", rec)
	}
}
