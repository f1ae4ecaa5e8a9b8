package orchestrator_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// Tests added by the sixty-third pass's mutation testing of the central
// promise (docs/invariants.md, "Mutations of the central promise"): each
// fails on a deliberate bug that no other deterministic test caught.

// A reading that shows the caller's call neither held, nor with the agent,
// nor with the target (CallerUnknown: a Bandwidth caller's call read out
// of its bridge while the unhold moves it, a PBX row being rewritten) is
// not the caller gone. Taken for it, the recovery of a cancel whose unhold
// was accepted ended at once, verified, caller_restored false, while the
// provider went on to show the caller back with the agent: a verified
// outcome the provider contradicts, which no sweep corrects.
func TestARecoveryReadingTheCallerUnknownIsNotDone(t *testing.T) {
	h := newHarness(t, testConfig())
	h.f.SetTarget(orchestratortest.TargetRings)
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	id := h.start(t, r)
	h.waitFor(t, id, inState(orchestrator.StateConsulting))
	heldSeen(t, h)
	// Every reading after the unhold shows the caller unknown until the
	// outcome is saved; from then on the provider shows where the unhold
	// put the caller: back with the agent.
	var back atomic.Bool
	h.f.Before(observe, func(rec orchestratortest.Record) {
		if rec.TransferID != id || back.Load() || countActions(h.f.ActionsFor(id), unhold) == 0 {
			return
		}
		if cur, err := h.store.Get(context.Background(), id); err == nil && cur.State.Terminal() {
			back.Store(true)
			h.f.SetCaller(id, orchestrator.CallerConnected)
			return
		}
		h.f.SetCaller(id, orchestrator.CallerUnknown)
	})
	if _, err := h.e.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	h.done(t, id)
	end := h.store.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.Cleanup == nil })
	if !back.Load() {
		// Ended without another reading: the provider shows the unhold
		// applied now, as it would to the next one.
		h.f.SetCaller(id, orchestrator.CallerConnected)
	}
	wantOutcome(t, end, orchestrator.StateCancelled, orchestrator.ReasonCancelled, true)
	if !end.Outcome.Verified {
		t.Errorf("outcome %+v, want verified once the provider showed the caller back", end.Outcome)
	}
	wantTruthful(t, h.f, end)
}
