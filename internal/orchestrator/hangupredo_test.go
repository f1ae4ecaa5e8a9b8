package orchestrator_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// Seen once in CI, as a TestCancel failure: the cancel's hang-up was sent
// twice. The recovery decides its hang-up and unhold at one moment, then
// saves their intents and sends them; a reading started in between still
// showed the consult up and the caller held. The next reconcile, a
// visibility window after that moment, took that reading for proof that
// neither had applied, and sent both again. A reading proves that an
// action did not take only when it started a visibility window after the
// action's request was answered.
//
// Here the hang-up's request waits at the provider until a reading has
// been taken; every later reading is held back until the recovery has
// given up waiting (its verify timeout, more than a window), so that the
// engine has only that early reading to judge by all that time. Once
// readings come back, the sweeper verifies the outcome.
func TestReadingTakenBeforeTheHangupWentOutDoesNotRedoIt(t *testing.T) {
	cfg := testConfig()
	cfg.VerifyTimeout = 4 * cfg.VisibilityWindow
	h := newHarness(t, cfg)
	h.f.SetTarget(orchestratortest.TargetRings)
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	id := h.start(t, r)
	h.waitFor(t, id, inState(orchestrator.StateConsulting))

	gaveUp := make(chan struct{}) // the recovery ended, unverified
	cancelWithEarlyReading(t, h, id, nil, gaveUp, new(atomic.Int64))
	end := h.store.waitSaved(t, id, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	close(gaveUp)
	if end.Cleanup == nil || end.Outcome.Verified {
		t.Errorf("the recovery ended %s %+v; want unverified, with an obligation (it had no reading to judge by)", end.State, end.Outcome)
	}

	tr := h.store.waitSaved(t, id, func(x *orchestrator.Transfer) bool { return x.Cleanup == nil })
	wantOutcome(t, tr, orchestrator.StateCancelled, orchestrator.ReasonCancelled, true)
	if got, want := h.f.Actions(), []string{locate, hold, dial, hangup, unhold}; !slices.Equal(got, want) {
		t.Errorf("actions %q, want %q: a reading taken before the hang-up went out is no proof it did not apply", got, want)
	}
	wantCallerSafe(t, h.f, id)
}

// cancelWithEarlyReading cancels transfer id with its hang-up held at the
// provider until a reading has started and ended since the hang-up was
// sent (the early reading: it started before the request went out). first,
// if set, runs as that reading starts. The reading after it waits until
// hold is closed: the watcher reads one at a time, so every later one
// waits too. reads counts the readings started since the hang-up was sent.
func cancelWithEarlyReading(t *testing.T, h *harness, id string, first func(orchestratortest.Record), hold <-chan struct{},
	reads *atomic.Int64) {
	t.Helper()
	gate := h.f.Block(hangup)
	early := make(chan struct{})
	h.f.Before(observe, func(rec orchestratortest.Record) {
		select {
		case <-gate.Entered():
		default:
			return
		}
		switch n := reads.Add(1); {
		case n == 1 && first != nil:
			first(rec)
		case n == 2:
			close(early)
			<-hold
		}
	})
	if _, err := h.e.Cancel(context.Background(), id); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	<-gate.Entered()
	<-early
	gate.Release()
}
