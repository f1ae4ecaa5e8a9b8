package orchestrator_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// The sweeper's obligations after a transfer ended. A tombstone (the
// consult was dialled and never seen) owes only that leg: once the caller
// was verified back with the agent, what the caller and the agent do is
// theirs, and the verified outcome stands. An unverified outcome owes the
// whole end state, but must end when the caller has moved on for good.
// These tests began as a review's failing NetSapiens tests; each fails on
// the sweeper that judged the caller during a tombstone.

// tombstoneTTL is the tombstone's window on the clock of tombstoneConfig.
const tombstoneTTL = time.Hour

// tombstoneConfig judges stored times by clock, which runs with real time
// from now. The tombstone's window and the verification's patience are an
// hour on it: however loaded the machine, the transfer ends verified with
// its tombstone, and the caller or the agent act inside the window, which
// ends only when the test moves the clock past it (lapse). With the
// second and 50 ms of real time they were, a reading late by 50 ms left
// the outcome unverified, and a transfer slow to end had no tombstone.
func tombstoneConfig(clock *manualClock) orchestrator.Config {
	cfg := testConfig()
	cfg.TombstoneTTL = tombstoneTTL
	cfg.VerifyTimeout = time.Hour
	cfg.Clock = clock.Now
	clock.Run()
	return cfg
}

// lapse ends the tombstone of id: the clock moves past its window, and the
// transfer, asleep until the window's end, is woken to see it.
func lapse(h *harness, clock *manualClock, id string) {
	clock.Advance(tombstoneTTL)
	h.e.Notify(id)
}

// tombstoned runs a transfer whose consult leg the provider drops before
// any reading lists it to its end — failed, the caller given back,
// verified, with a tombstone watching for the leg — and returns it. act
// runs once, as the caller's or the agent's own doing, at the start of the
// first reading taken after that end was saved: inside the tombstone's
// window (only a reading taken after its end may discharge it), and seen
// by that reading. tombstoned returns once act has run.
func tombstoned(t *testing.T, h *harness, act func(id string)) *orchestrator.Transfer {
	t.Helper()
	var once sync.Once
	acted := make(chan struct{})
	h.f.Before(observe, func(r orchestratortest.Record) {
		tr, err := h.store.Get(context.Background(), r.TransferID)
		if err == nil && tr.State.Terminal() && tr.Cleanup != nil {
			once.Do(func() { act(r.TransferID); close(acted) })
		}
	})
	id := h.start(t, request("fake", "1000"))
	tr := h.done(t, id)
	wantOutcome(t, tr, orchestrator.StateFailed, orchestrator.ReasonConsultFailed, true)
	if !tr.Outcome.Verified || tr.Cleanup == nil || !strings.HasPrefix(tr.Cleanup.Reason, "tombstone") {
		t.Fatalf("outcome %+v cleanup %+v, want verified with a tombstone for the consult never seen", tr.Outcome, tr.Cleanup)
	}
	select {
	case <-acted:
	case <-time.After(10 * time.Second): // a liveness bound: the watcher reads every PollInterval
		t.Fatal("no reading of the transfer after its end")
	}
	return tr
}

// wantTombstoneDischarged ends the tombstone of id (lapse), waits until it
// is discharged and checks that the verified outcome was left as it was, reported by
// transfer.outcome_verified and by nothing else after the end.
func wantTombstoneDischarged(t *testing.T, h *harness, clock *manualClock, id string) *orchestrator.Transfer {
	t.Helper()
	lapse(h, clock, id)
	end := h.store.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.Cleanup == nil })
	wantOutcome(t, end, orchestrator.StateFailed, orchestrator.ReasonConsultFailed, true)
	if !end.Outcome.Verified || !hasStep(end, orchestrator.StepVerify) {
		t.Errorf("outcome %+v, want verified, with a verify step", end.Outcome)
	}
	if n := countActions(h.f.ActionsFor(id), unhold); n != 1 {
		t.Errorf("%d unholds, want 1: the sweeper of a tombstone never unholds", n)
	}
	evs, err := h.store.Events(context.Background(), orchestrator.EventFilter{Tenant: orchestrator.DefaultTenant, TransferID: id})
	if err != nil {
		t.Fatal(err)
	}
	var types []orchestrator.EventType
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	failed := slices.Index(types, orchestrator.EventFailed)
	if n := len(types); failed < 0 || types[n-1] != orchestrator.EventOutcomeVerified ||
		slices.Contains(types[failed:], orchestrator.EventNeedsAttention) || slices.Contains(types[failed:], orchestrator.EventCompleted) {
		t.Errorf("events %v: want transfer.outcome_verified last, and after transfer.failed nothing else", types)
	}
	return end
}

// The caller, given back to the agent, hangs up while the tombstone still
// watches for the consult. The sweeper rewrote the verified outcome to
// caller_restored false and raised transfer.needs_attention: a false report
// of a stranded caller for every short call after a busy target.
func TestTombstoneKeepsTheVerifiedOutcomeWhenTheCallerHangsUp(t *testing.T) {
	clock := newManualClock()
	h := newHarness(t, tombstoneConfig(clock))
	h.f.SetTarget(orchestratortest.TargetVanishes)
	tr := tombstoned(t, h, func(id string) { h.f.HangupCaller(id) })
	wantTombstoneDischarged(t, h, clock, tr.ID)
	if c, _ := h.f.State(tr.ID); c.Caller != orchestrator.CallerGone {
		t.Errorf("provider shows the caller %v, want gone: the hang-up did not happen inside the tombstone", c.Caller)
	}
}

// After the outcome the agent puts the caller on hold for a consultation
// of their own. The sweeper saw the caller held and took them off hold:
// it undid the agent's action on a call that was no longer transferd's.
func TestTombstoneLeavesTheAgentsOwnHoldAlone(t *testing.T) {
	clock := newManualClock()
	h := newHarness(t, tombstoneConfig(clock))
	h.f.SetTarget(orchestratortest.TargetVanishes)
	tr := tombstoned(t, h, func(id string) { h.f.SetCaller(id, orchestrator.CallerHeld) })
	wantTombstoneDischarged(t, h, clock, tr.ID)
	if c, _ := h.f.State(tr.ID); c.Caller != orchestrator.CallerHeld {
		t.Errorf("provider shows the caller %v, want still held by the agent", c.Caller)
	}
}

// After the outcome the agent transfers the caller elsewhere: the caller's
// call shows neither the agent nor the target. The sweeper never judged
// its recovery done, and the transfer stayed open (claimed, read every
// visibility window) for ever.
func TestTombstoneEndsWhenTheCallerMovedOn(t *testing.T) {
	clock := newManualClock()
	h := newHarness(t, tombstoneConfig(clock))
	h.f.SetTarget(orchestratortest.TargetVanishes)
	tr := tombstoned(t, h, func(id string) { h.f.SetCaller(id, orchestrator.CallerUnknown) })
	wantTombstoneDischarged(t, h, clock, tr.ID)
	if c, _ := h.f.State(tr.ID); c.Caller != orchestrator.CallerUnknown {
		t.Errorf("provider shows the caller %v, want still elsewhere", c.Caller)
	}
}

// A caller seen with the target during a tombstone corrects the state to
// completed only when this transfer put the caller there. In a flow that
// needs a join, none was sent: the agent transferred the caller to the
// target themselves, after the verified outcome, and the outcome stands.
// In an announced flow the dial is the transfer: a late leg answered
// connects the caller, and completed is the truth.
func TestTombstoneCorrectsToCompletedOnlyWhatItsOwnLegDid(t *testing.T) {
	t.Run("the agent's own transfer to the target", func(t *testing.T) {
		clock := newManualClock()
		h := newHarness(t, tombstoneConfig(clock))
		h.f.SetTarget(orchestratortest.TargetVanishes)
		tr := tombstoned(t, h, func(id string) { h.f.SetCaller(id, orchestrator.CallerTransferred) })
		wantTombstoneDischarged(t, h, clock, tr.ID)
		if c, _ := h.f.State(tr.ID); c.Caller != orchestrator.CallerTransferred {
			t.Errorf("provider shows the caller %v, want with the target", c.Caller)
		}
	})
	t.Run("a late announced leg answered", func(t *testing.T) {
		f := orchestratortest.NewFake("fake").AnnouncedOnly().SetTarget(orchestratortest.TargetRings).Defer(dial, 1)
		h := newHarness(t, tombstoneConfig(newManualClock()), f)
		var once sync.Once
		f.Before(observe, func(r orchestratortest.Record) {
			tr, err := h.store.Get(context.Background(), r.TransferID)
			if err == nil && tr.State.Terminal() && tr.Cleanup != nil {
				once.Do(func() {
					// The leg appears, and its target answers before any
					// reading shows it ringing.
					if f.ApplyDeferred(r.TransferID) != 1 || f.Answer(r.TransferID) != 1 {
						t.Error("the late leg did not appear and get answered")
					}
				})
			}
		})
		req := request("fake", "1000")
		req.Mode = orchestrator.ModeAnnounced
		id := h.start(t, req)
		tr := h.done(t, id)
		wantOutcome(t, tr, orchestrator.StateFailed, orchestrator.ReasonConsultFailed, true)
		if !tr.Outcome.Verified || tr.Cleanup == nil {
			t.Fatalf("outcome %+v cleanup %+v, want verified with a tombstone", tr.Outcome, tr.Cleanup)
		}
		end := h.store.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.Cleanup == nil })
		wantOutcome(t, end, orchestrator.StateCompleted, orchestrator.ReasonTransferred, false)
		if !end.Outcome.Verified {
			t.Errorf("outcome %+v, want verified", end.Outcome)
		}
		wantTruthful(t, f, end)
	})
}

// cancelledUnread cancels a manual transfer on h while its target rings
// and the provider cannot be read (from then on, until the test clears
// h.f's faults), and returns it as it ended: its unhold sent, unverified.
func cancelledUnread(t *testing.T, h *harness) (string, *orchestrator.Transfer) {
	t.Helper()
	h.f.SetTarget(orchestratortest.TargetRings)
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	id := h.start(t, r)
	h.waitFor(t, id, inState(orchestrator.StateConsulting))
	heldSeen(t, h)
	h.f.FailOn(observe, fakeErr(observe, orchestrator.KindProviderUnavailable), -1)
	if _, err := h.e.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	return id, h.done(t, id)
}

// An unverified outcome whose caller moved on: the cancel's unhold was
// sent while the provider could not be read, and the agent then
// transferred the caller elsewhere. While reads fail nothing ends the
// obligation (a failed read is never evidence); once they work, a caller
// shown with neither the agent nor the target for the verification
// patience ends it, caller_restored corrected to false. It used to stay
// open for ever.
func TestUnverifiedObligationEndsWhenTheCallerMovedOn(t *testing.T) {
	cfg := testConfig()
	h := newHarness(t, cfg)
	id, tr := cancelledUnread(t, h)
	if tr.State != orchestrator.StateCancelled || tr.Outcome.Verified || !tr.Outcome.CallerRestored || tr.Cleanup == nil {
		t.Fatalf("state %s outcome %+v cleanup %+v, want cancelled, restored as far as known, unverified, with an obligation",
			tr.State, tr.Outcome, tr.Cleanup)
	}
	h.f.SetCaller(id, orchestrator.CallerUnknown) // the agent transferred the caller elsewhere

	// Failed readings, all taken well past the obligation's window and the
	// patience: the obligation stays.
	mark := tr.Cleanup.Until.Add(2 * cfg.VerifyTimeout)
	var late atomic.Int32
	h.f.Before(observe, func(r orchestratortest.Record) {
		if r.TransferID == id && time.Now().After(mark) {
			late.Add(1)
		}
	})
	eventually(t, "failed readings after the patience", func() bool { return late.Load() >= 5 })
	if cur, err := h.store.Get(context.Background(), id); err != nil || cur.Cleanup == nil || cur.Outcome.Verified {
		t.Fatalf("after failed readings: %+v (%v), want the obligation kept, unverified", cur, err)
	}

	h.f.ClearFaults() // readings work again, and show the caller elsewhere
	end := h.store.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.Cleanup == nil })
	wantOutcome(t, end, orchestrator.StateCancelled, orchestrator.ReasonCancelled, false)
	if !end.Outcome.Verified || !hasStep(end, orchestrator.StepVerify) {
		t.Errorf("outcome %+v, want verified, with a verify step", end.Outcome)
	}
	if c, _ := h.f.State(id); c.Caller != orchestrator.CallerUnknown {
		t.Errorf("provider shows the caller %v, want still elsewhere", c.Caller)
	}
	wantTruthful(t, h.f, end)
	evs, err := h.store.Events(context.Background(), orchestrator.EventFilter{Tenant: orchestrator.DefaultTenant, TransferID: id})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(evs, func(ev orchestrator.Event) bool { return ev.Type == orchestrator.EventOutcomeVerified }) {
		t.Error("no transfer.outcome_verified for the discharged obligation")
	}
}
