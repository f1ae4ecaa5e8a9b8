package orchestrator_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// A join refused as "not found" is judged on a reading taken after the
// refusal: which party ended (notFoundWhich). Within the consult's
// visibility window a provider may be unable to say (NetSapiens: an API
// node lagging behind answers 404 for a consult it has not seen yet, an
// unknown reading then). The recovery sent the consult's hang-up on such
// a reading, and every reading after it showed the consult ended by that
// hang-up: a target who hung up as the join went out was reported
// call_not_found. The hang-up now waits, within the window, for a reading
// that can say. The window is an hour here: nothing but that reading
// lets the recovery go on.
func TestARefusedJoinWaitsWithinTheWindowForAReadingThatCanSay(t *testing.T) {
	cfg := testConfig()
	cfg.VisibilityWindow = time.Hour
	h := newHarness(t, cfg)
	h.f.SetTarget(orchestratortest.TargetRings)
	h.f.FailOn(complete, fakeErr(complete, orchestrator.KindCallNotFound), 1)
	unreadable := orchestrator.E("fake.Observe", orchestrator.KindProviderUnavailable, errors.New("not found by a lagging node"))
	var mu sync.Mutex
	failing := false
	h.f.Before(complete, func(r orchestratortest.Record) {
		if h.f.HangupTarget(r.TransferID) != 1 {
			t.Error("nobody hung up")
		}
		h.f.FailOn(observe, unreadable, -1)
		mu.Lock()
		failing = true
		mu.Unlock()
	})
	// Readings that fail while the recovery runs: some, then the provider
	// can be read again.
	unread := make(chan struct{}, 64)
	h.f.Before(observe, func(orchestratortest.Record) {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			select {
			case unread <- struct{}{}:
			default:
			}
		}
	})
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	id := h.start(t, r)
	h.waitFor(t, id, inState(orchestrator.StateConsulting))
	h.f.Answer(id)
	h.waitFor(t, id, answered)
	if _, err := h.e.Complete(context.Background(), id); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	h.waitFor(t, id, inState(orchestrator.StateRecovering))
	for range 3 {
		select {
		case <-unread:
		case <-time.After(10 * time.Second):
			t.Fatal("no reading was made")
		}
	}
	if slices.Contains(h.f.ActionsFor(id), hangup) {
		t.Fatalf("actions %v: the consult was hung up on readings that could not say which call the join did not find", h.f.ActionsFor(id))
	}
	h.f.ClearFaults()
	// The reading that can say blames the target, which the recovery
	// saves with its failure.
	h.store.waitSaved(t, id, func(x *orchestrator.Transfer) bool {
		return x.Failure != nil && x.Failure.Reason == orchestrator.ReasonTargetHungUp
	})
	// The recovery would report the caller back only a window after the
	// hold, an hour on: the test ends it by a shutdown out of time,
	// leaving it to a next owner.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.stopped = true
	if err := h.e.Shutdown(ctx); err == nil {
		t.Error("Shutdown returned nil although the recovery was still waiting out its window")
	}
}
