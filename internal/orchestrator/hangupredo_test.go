package orchestrator_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

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
// been taken; every later reading is held back for several windows after
// the unhold went out, so that the engine has only that early reading to
// judge by.
func TestReadingTakenBeforeTheHangupWentOutDoesNotRedoIt(t *testing.T) {
	cfg := testConfig()
	cfg.VerifyTimeout = 10 * time.Second // the readings held back must not end the recovery's patience
	h := newHarness(t, cfg)
	h.f.SetTarget(orchestratortest.TargetRings)
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	id := h.start(t, r)
	h.waitFor(t, id, inState(orchestrator.StateConsulting))

	gate := h.f.Block(hangup)
	var mu sync.Mutex
	reads := 0
	var unholdAt time.Time
	early := make(chan struct{}) // the early reading has been taken
	unheld := make(chan struct{})
	h.f.Before(unhold, func(orchestratortest.Record) {
		mu.Lock()
		defer mu.Unlock()
		if unholdAt.IsZero() {
			unholdAt = time.Now()
			close(unheld)
		}
	})
	h.f.Before(orchestratortest.MethodObserve, func(orchestratortest.Record) {
		select {
		case <-gate.Entered():
		default:
			return
		}
		mu.Lock()
		reads++
		n := reads
		mu.Unlock()
		if n != 2 {
			return // the first is the early reading: the consult still up
		}
		// The watcher reads one at a time: the second reading starting
		// means the first is done. It, and every reading after it, waits.
		close(early)
		<-unheld
		mu.Lock()
		until := unholdAt.Add(4 * cfg.VisibilityWindow)
		mu.Unlock()
		time.Sleep(time.Until(until))
	})
	if _, err := h.e.Cancel(context.Background(), id); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	<-gate.Entered()
	<-early
	gate.Release()

	tr := h.done(t, id)
	wantOutcome(t, tr, orchestrator.StateCancelled, orchestrator.ReasonCancelled, true)
	if got, want := h.f.Actions(), []string{locate, hold, dial, hangup, unhold}; !slices.Equal(got, want) {
		t.Errorf("actions %q, want %q: a reading taken before the hang-up went out is no proof it did not apply", got, want)
	}
	wantCallerSafe(t, h.f, id)
	checkSaves(t, h.store, id)
}
