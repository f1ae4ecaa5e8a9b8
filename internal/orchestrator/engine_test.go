package orchestrator_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

func TestHappyPathAuto(t *testing.T) {
	h := newHarness(t, testConfig())
	id := h.start(t, request("fake", "1000"))
	tr := h.done(t, id)

	if tr.State != orchestrator.StateCompleted {
		t.Fatalf("state %s, want completed (outcome %+v)", tr.State, tr.Outcome)
	}
	if o := tr.Outcome; o == nil || o.Reason != orchestrator.ReasonTransferred || o.CallerRestored {
		t.Fatalf("outcome %+v, want transferred and the caller not restored (it is with the target)", o)
	}
	if got, want := h.f.Actions(), []string{locate, hold, dial, complete}; !slices.Equal(got, want) {
		t.Fatalf("provider actions %q, want %q", got, want)
	}
	// Observations sit between Dial and Complete (the answer) and after
	// Complete (the verification), and nowhere else.
	calls := h.f.Calls()
	if !slices.Equal(calls[:3], []string{locate, hold, dial}) {
		t.Fatalf("calls %q do not start with Locate, Hold, Dial", calls)
	}
	i := slices.Index(calls, complete)
	if i < 4 || i == len(calls)-1 {
		t.Fatalf("calls %q: want observations before and after Complete", calls)
	}
	for j, c := range calls[3:] {
		if c != observe && 3+j != i {
			t.Fatalf("calls %q: unexpected %s", calls, c)
		}
	}

	var names []string
	for _, s := range tr.Steps {
		names = append(names, s.Name)
		if s.Status != orchestrator.StepSucceeded || s.StartedAt.IsZero() || s.EndedAt.Before(s.StartedAt) {
			t.Errorf("step %+v: want succeeded with start and end times", s)
		}
	}
	// Verification is a reading, not a step of its own.
	wantSteps := []string{orchestrator.StepLocate, orchestrator.StepHold, orchestrator.StepDial,
		orchestrator.StepAnswered, orchestrator.StepTransfer}
	if !slices.Equal(names, wantSteps) {
		t.Errorf("steps %q, want %q", names, wantSteps)
	}
	if tr.Cleanup != nil || !tr.Outcome.Verified {
		t.Errorf("cleanup %+v verified %v: a completed transfer is verified and owes nothing", tr.Cleanup, tr.Outcome.Verified)
	}
	if !tr.Answered || tr.Failure != nil {
		t.Errorf("answered=%v failure=%+v", tr.Answered, tr.Failure)
	}

	// The fake agrees, and the record carries its leg ids.
	c, _ := h.f.State(id)
	if c.Caller != orchestrator.CallerTransferred || c.Consult != orchestrator.ConsultAnswered {
		t.Errorf("provider shows caller=%d consult=%d, want transferred and answered", c.Caller, c.Consult)
	}
	if tr.Legs != c.Legs || tr.Legs.Caller.IsZero() || tr.Legs.Consult.IsZero() {
		t.Errorf("legs %+v, provider has %+v", tr.Legs, c.Legs)
	}

	// Every transition was saved, in machine order, each save one version
	// up, every side effect between its saved intent and its saved result.
	wantStates := []orchestrator.State{orchestrator.StatePending, orchestrator.StateHolding, orchestrator.StateDialing,
		orchestrator.StateConsulting, orchestrator.StateCompleting, orchestrator.StateCompleted}
	if got := savedStates(h.store, id); !slices.Equal(got, wantStates) {
		t.Errorf("saved states %q, want %q", got, wantStates)
	}
	checkSaves(t, h.store, id)
	saves := h.store.saves(id)
	if last := saves[len(saves)-1]; tr.Version != last.Version || tr.Version != int64(len(saves)+1) {
		t.Errorf("stored version %d, last save %d, %d saves", tr.Version, last.Version, len(saves))
	}
}

func TestManualCompletion(t *testing.T) {
	h := newHarness(t, testConfig())
	h.f.SetTarget(orchestratortest.TargetRings)
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	id := h.start(t, r)
	ctx := context.Background()

	tr := h.waitFor(t, id, inState(orchestrator.StateConsulting))
	if tr.State != orchestrator.StateConsulting || tr.Answered {
		t.Fatalf("state %s answered %v, want consulting, not answered", tr.State, tr.Answered)
	}
	_, err := h.e.Complete(ctx, id)
	kindIs(t, err, orchestrator.KindConflict) // not answered yet

	if n := h.f.Answer(id); n != 1 {
		t.Fatalf("Answer answered %d consults, want 1", n)
	}
	tr = h.waitFor(t, id, answered)
	if tr.State != orchestrator.StateConsulting || !tr.Answered {
		t.Fatalf("state %s answered %v, want consulting and answered", tr.State, tr.Answered)
	}
	if got, want := h.f.ActionsFor(id), []string{locate, hold, dial}; !slices.Equal(got, want) {
		t.Fatalf("actions while consulting %q, want %q", got, want)
	}
	if c, _ := h.f.State(id); c.Caller != orchestrator.CallerHeld {
		t.Fatalf("caller %d while consulting, want held", c.Caller)
	}

	if _, err := h.e.Complete(ctx, id); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	tr = h.done(t, id)
	if tr.State != orchestrator.StateCompleted || tr.Outcome.Reason != orchestrator.ReasonTransferred {
		t.Fatalf("state %s outcome %+v, want completed, transferred", tr.State, tr.Outcome)
	}
	if got, want := h.f.ActionsFor(id), []string{locate, hold, dial, complete}; !slices.Equal(got, want) {
		t.Fatalf("actions %q, want %q", got, want)
	}
	_, err = h.e.Complete(ctx, id)
	kindIs(t, err, orchestrator.KindConflict) // completed already
	_, err = h.e.Cancel(ctx, id)
	kindIs(t, err, orchestrator.KindConflict)
	checkSaves(t, h.store, id)
}

func TestCompleteAutoTransferConflicts(t *testing.T) {
	h := newHarness(t, testConfig())
	h.f.SetTarget(orchestratortest.TargetRings)
	id := h.start(t, request("fake", "1000")) // completion auto
	h.waitFor(t, id, inState(orchestrator.StateConsulting))
	_, err := h.e.Complete(context.Background(), id)
	kindIs(t, err, orchestrator.KindConflict)
	if slices.Contains(h.f.Actions(), complete) {
		t.Fatal("a refused Complete reached the provider")
	}
}

func TestStartSameCallConflicts(t *testing.T) {
	h := newHarness(t, testConfig())
	h.f.SetTarget(orchestratortest.TargetRings)
	first := h.start(t, request("fake", "1000"))
	_, err := h.e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	kindIs(t, err, orchestrator.KindConflict)
	var active *orchestrator.ActiveTransferError
	if !errors.As(err, &active) || active.ID != first {
		t.Fatalf("error %v does not name the active transfer %s", err, first)
	}
}

func TestCancel(t *testing.T) {
	for _, ans := range []bool{false, true} {
		t.Run(fmt.Sprintf("consulting answered=%v", ans), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, testConfig())
			h.f.SetTarget(orchestratortest.TargetRings)
			r := request("fake", "1000")
			r.Completion = orchestrator.CompletionManual
			id := h.start(t, r)
			h.waitFor(t, id, inState(orchestrator.StateConsulting))
			if ans {
				h.f.Answer(id)
				h.waitFor(t, id, answered)
			}
			if _, err := h.e.Cancel(context.Background(), id); err != nil {
				t.Fatalf("Cancel: %v", err)
			}
			tr := h.done(t, id)
			wantOutcome(t, tr, orchestrator.StateCancelled, orchestrator.ReasonCancelled, true)
			if got, want := h.f.Actions(), []string{locate, hold, dial, hangup, unhold}; !slices.Equal(got, want) {
				t.Fatalf("actions %q, want %q (undos newest first)", got, want)
			}
			wantCallerSafe(t, h.f, id)
			checkSaves(t, h.store, id)
			_, err := h.e.Cancel(context.Background(), id)
			kindIs(t, err, orchestrator.KindConflict)
		})
	}

	// A cancel that arrives during a step takes effect before the next one;
	// only the steps made so far are undone.
	for _, tc := range []struct {
		during string
		want   []string
	}{
		{locate, []string{locate}},
		{hold, []string{locate, hold, unhold}},
		{dial, []string{locate, hold, dial, hangup, unhold}},
	} {
		t.Run("during "+tc.during, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, testConfig())
			h.f.SetTarget(orchestratortest.TargetRings) // nothing but the cancel ends the consult
			gate := h.f.Block(tc.during)
			id := h.start(t, request("fake", "1000"))
			<-gate.Entered()
			if _, err := h.e.Cancel(context.Background(), id); err != nil {
				t.Fatalf("Cancel: %v", err)
			}
			gate.Release()
			tr := h.done(t, id)
			wantOutcome(t, tr, orchestrator.StateCancelled, orchestrator.ReasonCancelled, true)
			// A hang-up sent before the consult was seen is sent again
			// when a reading taken while it was on its way still shows the
			// consult alive.
			if got := dropRepeats(h.f.Actions(), hangup); !slices.Equal(got, tc.want) {
				t.Fatalf("actions %q, want %q", got, tc.want)
			}
			wantCallerSafe(t, h.f, id)
			checkSaves(t, h.store, id)
		})
	}
}

// wantOutcome checks the end of a transfer.
func wantOutcome(t *testing.T, tr *orchestrator.Transfer, state orchestrator.State, reason orchestrator.Reason, restored bool) {
	t.Helper()
	if tr.State != state || tr.Outcome == nil {
		t.Fatalf("state %s outcome %+v, want %s", tr.State, tr.Outcome, state)
	}
	if tr.Outcome.Reason != reason || tr.Outcome.CallerRestored != restored {
		t.Fatalf("outcome %+v, want reason %s, caller_restored %v", tr.Outcome, reason, restored)
	}
	if tr.Outcome.Detail == "" {
		t.Errorf("outcome %+v has no detail", tr.Outcome)
	}
}

// wantCallerSafe checks at the provider that a restored caller talks to
// the agent again and that no consult leg was left behind.
func wantCallerSafe(t *testing.T, f *orchestratortest.Fake, id string) {
	t.Helper()
	c, _ := f.State(id)
	if c.Caller != orchestrator.CallerConnected {
		t.Errorf("provider shows the caller in state %d, want connected", c.Caller)
	}
	if c.Consult == orchestrator.ConsultRinging || c.Consult == orchestrator.ConsultAnswered {
		t.Errorf("the consult leg is still up (state %d)", c.Consult)
	}
}

// TestFailures injects a failure at every provider step and checks the end
// state and the exact order of the compensations.
//
// The engine runs on a manual clock going at real pace, with the
// verification's patience and the tombstone's window an hour on it: a case
// whose end is verified gets it however loaded the machine (with 50 ms of
// real time to read the caller back, and 100 ms for the tombstone, a
// reading held back that long left the outcome unverified, or the consult
// without its tombstone). A case that runs a patience out says where
// (lapse); the test moves the clock past it there.
func TestFailures(t *testing.T) {
	type fake = orchestratortest.Fake
	all := []string{locate, hold, dial, hangup, unhold}
	ev := &orchestrator.Evidence{Status: 403, Code: "hold_denied", Message: "not allowed"}
	manual := func(r *orchestrator.Request) { r.Completion = orchestrator.CompletionManual }
	shortConsult := func(r *orchestrator.Request) { r.ConsultTimeout = time.Second }
	// patience is VerifyTimeout and TombstoneTTL on the test's clock; a
	// lapse moves the clock by it, past them and the step timeout (5 s).
	const patience = time.Hour
	// clearedAndVerified lifts every fault, ends the obligation's window
	// (the tombstone's, when it has one) and waits for the sweeper to
	// verify the outcome at the provider and drop the obligation.
	clearedAndVerified := func(restored bool) func(*testing.T, *harness, *manualClock, string) {
		return func(t *testing.T, h *harness, clock *manualClock, id string) {
			h.f.ClearFaults()
			clock.Advance(patience)
			h.e.Notify(id)
			tr := h.store.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.Cleanup == nil })
			if !tr.Outcome.Verified || tr.Outcome.CallerRestored != restored {
				t.Fatalf("after the sweep: outcome %+v, want verified, caller_restored %v", tr.Outcome, restored)
			}
			if !hasStep(tr, orchestrator.StepVerify) {
				t.Errorf("the sweep recorded no verify step: %+v", tr.Steps)
			}
			wantCallerSafe(t, h.f, id)
		}
	}

	for _, tc := range []struct {
		name   string
		req    func(*orchestrator.Request)
		setup  func(*fake)
		during func(*testing.T, *harness, string)

		state    orchestrator.State
		reason   orchestrator.Reason
		restored bool
		actions  []string // provider calls other than Observe, in order
		// retried: compensations are retried a number of times that
		// depends on timing; consecutive repeats are folded before
		// comparing.
		retried bool
		// repeats: calls of these methods after their first are dropped
		// before comparing (a failed compensation is sent again when it
		// is due, which may or may not come before the end).
		repeats  []string
		evidence *orchestrator.Evidence
		// unverified: the transfer ends with an unverified outcome and a
		// cleanup obligation; after then runs once it has ended.
		unverified bool
		// tombstone: the outcome is verified, and an obligation watches
		// for a consult that was never seen.
		tombstone bool
		after     func(*testing.T, *harness, *manualClock, string)
		// lapse: the clock moves past every patience (by patience) at
		// the start of call number lapseAt (from 1) of method lapse, a
		// moment the case is sure to reach and that comes after what
		// the patience is counted from.
		lapse   string
		lapseAt int
	}{
		// Locate changes nothing: nothing is compensated. A call not
		// found may be one the provider does not list yet: it is looked
		// for again until VisibilityWindow, unless the locate found
		// several and cannot tell which.
		{name: "locate call_not_found once: a call listed late", setup: func(f *fake) { f.FailOn(locate, fakeErr(locate, orchestrator.KindCallNotFound), 1) },
			state: orchestrator.StateCompleted, reason: orchestrator.ReasonTransferred, actions: []string{locate, locate, hold, dial, complete}},
		{name: "locate call_not_found past the visibility window", setup: func(f *fake) { f.FailOn(locate, fakeErr(locate, orchestrator.KindCallNotFound), -1) },
			state: orchestrator.StateFailed, reason: orchestrator.ReasonCallNotFound, restored: true, actions: []string{locate}, retried: true},
		{name: "locate finds several calls", setup: func(f *fake) {
			f.FailOn(locate, orchestrator.E("fake.locate", orchestrator.KindCallNotFound, fmt.Errorf("%w: name one", orchestrator.ErrSeveralCalls)), 1)
		},
			state: orchestrator.StateFailed, reason: orchestrator.ReasonCallNotFound, restored: true, actions: []string{locate}},
		{name: "locate call_not_active", setup: func(f *fake) { f.FailOn(locate, fakeErr(locate, orchestrator.KindCallNotActive), 1) },
			state: orchestrator.StateFailed, reason: orchestrator.ReasonCallNotActive, restored: true, actions: []string{locate}},
		// A transient failure of a step that changes nothing yet is tried
		// again until StepTimeout.
		{name: "locate unavailable is retried", setup: func(f *fake) { f.FailOn(locate, fakeErr(locate, orchestrator.KindProviderUnavailable), 1) },
			state: orchestrator.StateCompleted, reason: orchestrator.ReasonTransferred, actions: []string{locate, locate, hold, dial, complete}},
		{name: "locate unavailable past step_timeout", lapse: locate, lapseAt: 2,
			setup: func(f *fake) { f.FailOn(locate, fakeErr(locate, orchestrator.KindProviderUnavailable), -1) },
			state: orchestrator.StateFailed, reason: orchestrator.ReasonProviderUnavailable, restored: true, actions: []string{locate}, retried: true},

		// A failed hold may have held the caller anyway: it is undone.
		{name: "hold unavailable is retried", setup: func(f *fake) { f.FailOn(hold, fakeErr(hold, orchestrator.KindProviderUnavailable), 1) },
			state: orchestrator.StateCompleted, reason: orchestrator.ReasonTransferred, actions: []string{locate, hold, hold, dial, complete}},
		{name: "hold unavailable past step_timeout", lapse: hold, lapseAt: 2,
			setup: func(f *fake) { f.FailOn(hold, fakeErr(hold, orchestrator.KindProviderUnavailable), -1) },
			state: orchestrator.StateFailed, reason: orchestrator.ReasonProviderUnavailable, restored: true, actions: []string{locate, hold, unhold}, retried: true},
		{name: "hold rejected", setup: func(f *fake) {
			f.FailOn(hold, &orchestrator.Error{Op: "fake.Hold", Kind: orchestrator.KindProviderRejected, Evidence: ev}, 1)
		}, state: orchestrator.StateFailed, reason: orchestrator.ReasonProviderError, restored: true, actions: []string{locate, hold, unhold}, evidence: ev},
		{name: "hold response lost is retried", setup: func(f *fake) { f.LoseResponse(hold, fakeErr(hold, orchestrator.KindTimeout), 1) },
			state: orchestrator.StateCompleted, reason: orchestrator.ReasonTransferred, actions: []string{locate, hold, hold, dial, complete}},
		{name: "hold of a caller who hung up", setup: func(f *fake) {
			f.Before(hold, func(r orchestratortest.Record) { f.HangupCaller(r.TransferID) })
		}, state: orchestrator.StateFailed, reason: orchestrator.ReasonCallNotFound, restored: false, actions: []string{locate, hold, unhold}},

		// The dial's effect is unknown: a tombstone watches for a consult
		// that may still appear, then the outcome is verified.
		{name: "dial unavailable", setup: func(f *fake) { f.FailOn(dial, fakeErr(dial, orchestrator.KindProviderUnavailable), 1) },
			state: orchestrator.StateFailed, reason: orchestrator.ReasonProviderUnavailable, restored: true, actions: all,
			tombstone: true, after: clearedAndVerified(true)},
		// A refused dial created nothing: there is nothing to hang up.
		{name: "dial rejected", setup: func(f *fake) { f.FailOn(dial, fakeErr(dial, orchestrator.KindProviderRejected), 1) },
			state: orchestrator.StateFailed, reason: orchestrator.ReasonProviderError, restored: true, actions: []string{locate, hold, dial, unhold}},
		// A lost answer is resolved by watching, never by dialling again:
		// the consult is found (with its ids) and joined.
		{name: "dial response lost", setup: func(f *fake) {
			f.LoseResponse(dial, fakeErr(dial, orchestrator.KindProviderUnavailable), 1)
		}, state: orchestrator.StateCompleted, reason: orchestrator.ReasonTransferred, actions: []string{locate, hold, dial, complete}},

		// A reading that fails is unknown, never a failure of the transfer.
		{name: "observe auth error", setup: func(f *fake) { f.FailOn(observe, fakeErr(observe, orchestrator.KindProviderAuth), 1) },
			state: orchestrator.StateCompleted, reason: orchestrator.ReasonTransferred, actions: []string{locate, hold, dial, complete}},
		{name: "observe unavailable is retried", setup: func(f *fake) { f.FailOn(observe, fakeErr(observe, orchestrator.KindProviderUnavailable), 3) },
			state: orchestrator.StateCompleted, reason: orchestrator.ReasonTransferred, restored: false, actions: []string{locate, hold, dial, complete}},

		{name: "observe unavailable until the consult deadline", req: shortConsult,
			setup: func(f *fake) {
				f.SetTarget(orchestratortest.TargetRings).FailOn(observe, fakeErr(observe, orchestrator.KindProviderUnavailable), -1)
			},
			// The hang-up and the unhold are sent blind; the outcome cannot
			// be verified until the provider can be read again.
			state: orchestrator.StateFailed, reason: orchestrator.ReasonProviderUnavailable, restored: true, actions: all,
			unverified: true, after: clearedAndVerified(true), lapse: unhold, lapseAt: 1},

		{name: "consult busy", setup: func(f *fake) { f.SetTarget(orchestratortest.TargetBusy) },
			state: orchestrator.StateFailed, reason: orchestrator.ReasonBusy, restored: true, actions: all},
		{name: "consult rejected", setup: func(f *fake) { f.SetTarget(orchestratortest.TargetRejects) },
			state: orchestrator.StateFailed, reason: orchestrator.ReasonRejected, restored: true, actions: all},
		{name: "consult not answered by the provider", setup: func(f *fake) { f.SetTarget(orchestratortest.TargetNoAnswer) },
			state: orchestrator.StateFailed, reason: orchestrator.ReasonNoAnswer, restored: true, actions: all},
		{name: "consult not answered within consult_timeout", req: shortConsult,
			setup: func(f *fake) { f.SetTarget(orchestratortest.TargetRings) },
			state: orchestrator.StateFailed, reason: orchestrator.ReasonNoAnswer, restored: true, actions: all},
		{name: "manual consult not completed within consult_timeout", req: func(r *orchestrator.Request) { manual(r); shortConsult(r) },
			state: orchestrator.StateFailed, reason: orchestrator.ReasonTimeout, restored: true, actions: all},
		{name: "target hangs up during manual consult", req: manual,
			during: func(t *testing.T, h *harness, id string) { h.waitFor(t, id, answered); h.f.HangupTarget(id) },
			state:  orchestrator.StateFailed, reason: orchestrator.ReasonTargetHungUp, restored: true, actions: all},
		{name: "target declines while ringing", setup: func(f *fake) { f.SetTarget(orchestratortest.TargetRings) },
			during: func(t *testing.T, h *harness, id string) {
				h.waitFor(t, id, inState(orchestrator.StateConsulting))
				h.f.HangupTarget(id)
			},
			state: orchestrator.StateFailed, reason: orchestrator.ReasonRejected, restored: true, actions: all},
		// Nobody is left to take off hold.
		{name: "caller hangs up during consult", setup: func(f *fake) { f.SetTarget(orchestratortest.TargetRings) },
			during: func(t *testing.T, h *harness, id string) {
				h.waitFor(t, id, inState(orchestrator.StateConsulting))
				h.f.HangupCaller(id)
			},
			state: orchestrator.StateFailed, reason: orchestrator.ReasonCallerHungUp, restored: false, actions: []string{locate, hold, dial, hangup}},

		{name: "complete rejected", setup: func(f *fake) { f.FailOn(complete, fakeErr(complete, orchestrator.KindProviderRejected), 1) },
			state: orchestrator.StateFailed, reason: orchestrator.ReasonProviderError, restored: true, actions: []string{locate, hold, dial, complete, hangup, unhold}},
		// A join that failed on the way may or may not have reached the
		// provider: once a reading shows it did not take, it is sent again
		// (it failed the transfer before), for as long as the step's
		// patience lasts.
		{name: "complete unavailable", setup: func(f *fake) { f.FailOn(complete, fakeErr(complete, orchestrator.KindProviderUnavailable), 1) },
			state: orchestrator.StateCompleted, reason: orchestrator.ReasonTransferred, restored: false, actions: []string{locate, hold, dial, complete, complete}},
		{name: "complete unavailable past the step's patience", setup: func(f *fake) { f.FailOn(complete, fakeErr(complete, orchestrator.KindProviderUnavailable), -1) },
			state: orchestrator.StateFailed, reason: orchestrator.ReasonProviderUnavailable, restored: true, actions: []string{locate, hold, dial, complete, hangup, unhold},
			retried: true, lapse: complete, lapseAt: 2},
		// The join happened but its response was lost: the provider's state
		// says so, and the consult leg (now the caller's) is not hung up.
		{name: "complete response lost", setup: func(f *fake) { f.LoseResponse(complete, fakeErr(complete, orchestrator.KindTimeout), 1) },
			state: orchestrator.StateCompleted, reason: orchestrator.ReasonTransferred, restored: false, actions: []string{locate, hold, dial, complete}},
		// Accepted, no effect (the NetSapiens pitfall): verification fails.
		{name: "complete without effect", setup: func(f *fake) { f.IgnoreComplete(true) },
			state: orchestrator.StateFailed, reason: orchestrator.ReasonProviderError, restored: true, actions: []string{locate, hold, dial, complete, hangup, unhold},
			lapse: complete, lapseAt: 1},
		{name: "caller hangs up while completing", setup: func(f *fake) {
			f.IgnoreComplete(true).Before(complete, func(r orchestratortest.Record) { f.HangupCaller(r.TransferID) })
		}, state: orchestrator.StateFailed, reason: orchestrator.ReasonCallerHungUp, restored: false, actions: []string{locate, hold, dial, complete, hangup}},
		{name: "target hangs up while completing", setup: func(f *fake) {
			f.IgnoreComplete(true).Before(complete, func(r orchestratortest.Record) { f.HangupTarget(r.TransferID) })
		}, state: orchestrator.StateFailed, reason: orchestrator.ReasonTargetHungUp, restored: true, actions: []string{locate, hold, dial, complete, hangup, unhold}},

		// Compensations that fail.
		{name: "unhold refused during compensation", setup: func(f *fake) {
			f.FailOn(dial, fakeErr(dial, orchestrator.KindProviderRejected), 1).
				FailOn(unhold, fakeErr(unhold, orchestrator.KindCallNotActive), 1)
		}, state: orchestrator.StateFailed, reason: orchestrator.ReasonProviderError, restored: false, actions: []string{locate, hold, dial, unhold}},
		// Rejected may be a state the provider has not applied yet.
		{name: "unhold rejected is retried", setup: func(f *fake) {
			f.SetTarget(orchestratortest.TargetBusy).FailOn(unhold, fakeErr(unhold, orchestrator.KindProviderRejected), 1)
		}, state: orchestrator.StateFailed, reason: orchestrator.ReasonBusy, restored: true, actions: []string{locate, hold, dial, hangup, unhold, unhold}},
		// A credential refused (a key rotated, a reload on its way) may be
		// accepted again: given up, the caller stayed held for good.
		{name: "unhold refused for credentials is retried", setup: func(f *fake) {
			f.SetTarget(orchestratortest.TargetBusy).FailOn(unhold, fakeErr(unhold, orchestrator.KindProviderAuth), 1)
		}, state: orchestrator.StateFailed, reason: orchestrator.ReasonBusy, restored: true, actions: []string{locate, hold, dial, hangup, unhold, unhold}},
		{name: "unhold refused for credentials until the verify deadline", setup: func(f *fake) {
			f.SetTarget(orchestratortest.TargetBusy).FailOn(unhold, fakeErr(unhold, orchestrator.KindProviderAuth), -1)
		}, state: orchestrator.StateFailed, reason: orchestrator.ReasonBusy, restored: false, actions: all, retried: true,
			unverified: true, after: clearedAndVerified(true), lapse: unhold, lapseAt: 1},
		// The caller is still held when VerifyTimeout ends the recovery:
		// the outcome says so, unverified, and the sweeper unholds the
		// caller once the provider accepts it.
		{name: "unhold unavailable until the verify deadline", setup: func(f *fake) {
			f.SetTarget(orchestratortest.TargetBusy).FailOn(unhold, fakeErr(unhold, orchestrator.KindProviderUnavailable), -1)
		}, state: orchestrator.StateFailed, reason: orchestrator.ReasonBusy, restored: false, actions: all, retried: true,
			unverified: true, after: clearedAndVerified(true), lapse: unhold, lapseAt: 1},
		{name: "unhold unavailable twice is retried", setup: func(f *fake) {
			f.SetTarget(orchestratortest.TargetBusy).FailOn(unhold, fakeErr(unhold, orchestrator.KindProviderUnavailable), 2)
		}, state: orchestrator.StateFailed, reason: orchestrator.ReasonBusy, restored: true, actions: []string{locate, hold, dial, hangup, unhold, unhold, unhold}},
		{name: "hangup rejected, unhold still runs", setup: func(f *fake) {
			f.SetTarget(orchestratortest.TargetBusy).FailOn(hangup, fakeErr(hangup, orchestrator.KindProviderRejected), 1)
		}, state: orchestrator.StateFailed, reason: orchestrator.ReasonBusy, restored: true, actions: all, repeats: []string{hangup}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := newManualClock()
			cfg := testConfig()
			cfg.VerifyTimeout, cfg.TombstoneTTL, cfg.Clock = patience, patience, clock.Now
			clock.Run()
			h := newHarness(t, cfg)
			if tc.setup != nil {
				tc.setup(h.f)
			}
			if tc.lapse != "" {
				var calls atomic.Int32
				h.f.Before(tc.lapse, func(orchestratortest.Record) {
					if calls.Add(1) == int32(tc.lapseAt) {
						clock.Advance(patience)
					}
				})
			}
			r := request("fake", "1000")
			if tc.req != nil {
				tc.req(&r)
			}
			id := h.start(t, r)
			if tc.during != nil {
				tc.during(t, h, id)
			}
			tr := h.done(t, id)
			wantOutcome(t, tr, tc.state, tc.reason, tc.restored)

			got := h.f.Actions()
			if tc.retried {
				got = slices.Compact(got)
			}
			got = dropRepeats(got, tc.repeats...)
			if !slices.Equal(got, tc.actions) {
				t.Errorf("actions %q, want %q", got, tc.actions)
			}
			if tc.evidence != nil && (tr.Outcome.Evidence == nil || *tr.Outcome.Evidence != *tc.evidence) {
				t.Errorf("evidence %+v, want %+v", tr.Outcome.Evidence, tc.evidence)
			}
			c, _ := h.f.State(id)
			switch {
			case tc.state == orchestrator.StateCompleted:
				if c.Caller != orchestrator.CallerTransferred {
					t.Errorf("provider shows the caller in state %d, want transferred", c.Caller)
				}
			case tc.unverified:
				if tr.Cleanup == nil || tr.Outcome.Verified {
					t.Errorf("cleanup %+v verified %v, want an unverified outcome with an obligation", tr.Cleanup, tr.Outcome.Verified)
				}
			case tc.tombstone:
				wantCallerSafe(t, h.f, id)
				// The terminal record as saved: what the recovery
				// decided, whatever the sweeper did since.
				saves := h.store.saves(id)
				i := slices.IndexFunc(saves, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
				if i < 0 {
					t.Fatalf("no terminal save among %d", len(saves))
				}
				if end := saves[i]; end.Cleanup == nil || !strings.HasPrefix(end.Cleanup.Reason, "tombstone") || !end.Outcome.Verified {
					t.Errorf("cleanup %+v verified %v, want a verified outcome and a tombstone", end.Cleanup, end.Outcome.Verified)
				}
			case tc.restored:
				wantCallerSafe(t, h.f, id)
				if tr.Cleanup != nil || !tr.Outcome.Verified {
					t.Errorf("cleanup %+v verified %v although the caller is restored", tr.Cleanup, tr.Outcome.Verified)
				}
			}
			if tc.after != nil {
				tc.after(t, h, clock, id)
			}
			checkSaves(t, h.store, id)
			lbl := map[string]string{"provider": "fake"}
			eventually(t, "no caller on hold once the transfer is closed", func() bool {
				return metric(t, h.reg, "transferd_callers_on_hold", lbl) == 0
			})
			lbl = map[string]string{"provider": "fake", "outcome": string(tc.state), "reason": string(tc.reason)}
			if v := metric(t, h.reg, "transferd_transfers_total", lbl); v != 1 {
				t.Errorf("transfers_total%v = %v, want 1", lbl, v)
			}
		})
	}
}

// A caller who hung up while held cannot be taken off hold: the unhold
// finds no call, which is recorded, not retried.
func TestUnholdCallerGone(t *testing.T) {
	h := newHarness(t, testConfig())
	h.f.FailOn(dial, fakeErr(dial, orchestrator.KindProviderRejected), 1).
		Before(dial, func(r orchestratortest.Record) { h.f.HangupCaller(r.TransferID) })
	id := h.start(t, request("fake", "1000"))
	tr := h.done(t, id)
	wantOutcome(t, tr, orchestrator.StateFailed, orchestrator.ReasonProviderError, false)
	if got, want := h.f.Actions(), []string{locate, hold, dial, unhold}; !slices.Equal(got, want) {
		t.Fatalf("actions %q, want %q", got, want)
	}
	s := tr.Steps[len(tr.Steps)-1]
	if s.Name != orchestrator.StepUnhold || s.Status != orchestrator.StepFailed || s.Detail == "" {
		t.Fatalf("last step %+v, want a failed unhold with its detail", s)
	}
	if !strings.Contains(tr.Outcome.Detail, tr.Failure.Detail) || len(tr.Outcome.Detail) <= len(tr.Failure.Detail) {
		t.Fatalf("outcome detail %q does not add why the caller was not restored to %q", tr.Outcome.Detail, tr.Failure.Detail)
	}
	if tr.Cleanup != nil || !tr.Outcome.Verified {
		t.Errorf("cleanup %+v verified %v: a gone caller needs no more unholding", tr.Cleanup, tr.Outcome.Verified)
	}
	eventually(t, "no caller on hold", func() bool {
		return metric(t, h.reg, "transferd_callers_on_hold", map[string]string{"provider": "fake"}) == 0
	})
}

func TestAnnounced(t *testing.T) {
	announced := func(user string) orchestrator.Request {
		r := request("bw", user)
		r.Mode = orchestrator.ModeAnnounced
		return r
	}
	newFake := func() *orchestratortest.Fake { return orchestratortest.NewFake("bw").AnnouncedOnly() }

	t.Run("success", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testConfig(), newFake())
		id := h.start(t, announced("1000"))
		tr := h.done(t, id)
		wantOutcome(t, tr, orchestrator.StateCompleted, orchestrator.ReasonTransferred, false)
		if got, want := h.f.Actions(), []string{locate, dial}; !slices.Equal(got, want) {
			t.Fatalf("actions %q, want %q: no hold, no complete", got, want)
		}
		if c, _ := h.f.State(id); c.Caller != orchestrator.CallerTransferred || !c.Announced {
			t.Fatalf("provider shows %+v, want the caller transferred", c)
		}
		checkSaves(t, h.store, id)
	})
	t.Run("busy returns the caller", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testConfig(), newFake().SetTarget(orchestratortest.TargetBusy))
		id := h.start(t, announced("1000"))
		tr := h.done(t, id)
		wantOutcome(t, tr, orchestrator.StateFailed, orchestrator.ReasonBusy, true)
		if got, want := h.f.Actions(), []string{locate, dial, hangup}; !slices.Equal(got, want) {
			t.Fatalf("actions %q, want %q", got, want)
		}
		// Nothing of ours held the caller: only the provider's state
		// tells that the caller is back, and it was read.
		if !tr.Outcome.Verified || tr.Cleanup != nil {
			t.Fatalf("outcome %+v cleanup %+v, want verified with nothing owed", tr.Outcome, tr.Cleanup)
		}
		wantCallerSafe(t, h.f, id)
	})
	t.Run("caller gone", func(t *testing.T) {
		t.Parallel()
		f := newFake()
		f.FailOn(dial, fakeErr(dial, orchestrator.KindProviderUnavailable), 1).
			Before(dial, func(r orchestratortest.Record) { f.HangupCaller(r.TransferID) })
		h := newHarness(t, testConfig(), f)
		id := h.start(t, announced("1000"))
		tr := h.done(t, id)
		// The dial's effect was unknown; the reading that followed shows
		// why the transfer cannot go on.
		wantOutcome(t, tr, orchestrator.StateFailed, orchestrator.ReasonCallerHungUp, false)
		if got, want := h.f.Actions(), []string{locate, dial, hangup}; !slices.Equal(got, want) {
			t.Fatalf("actions %q, want %q", got, want)
		}
	})
	t.Run("caller hangs up while the target rings", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testConfig(), newFake().SetTarget(orchestratortest.TargetRings))
		id := h.start(t, announced("1000"))
		h.waitFor(t, id, inState(orchestrator.StateConsulting))
		h.f.HangupCaller(id)
		tr := h.done(t, id)
		wantOutcome(t, tr, orchestrator.StateFailed, orchestrator.ReasonCallerHungUp, false)
	})
}

// consultingAtShutdown starts a manual transfer, waits until its target
// answered, runs before and shuts the engine down.
func consultingAtShutdown(t *testing.T, h *harness, before func()) string {
	t.Helper()
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	id := h.start(t, r)
	h.waitFor(t, id, answered)
	before()
	if err := h.e.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	return id
}

func TestShutdown(t *testing.T) {
	t.Run("consulting transfer is compensated", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testConfig())
		id := consultingAtShutdown(t, h, func() {})
		ctx := context.Background()
		tr, err := h.e.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		wantOutcome(t, tr, orchestrator.StateFailed, orchestrator.ReasonShutdown, true)
		if got, want := h.f.Actions(), []string{locate, hold, dial, hangup, unhold}; !slices.Equal(got, want) {
			t.Fatalf("actions %q, want %q", got, want)
		}
		wantCallerSafe(t, h.f, id)
		if len(h.e.Running()) != 0 {
			t.Fatalf("still running after Shutdown: %v", h.e.Running())
		}
		_, err = h.e.Start(ctx, request("fake", "1001"), orchestrator.StartOptions{})
		kindIs(t, err, orchestrator.KindUnavailable)
		if h.e.Ready(ctx) == nil {
			t.Fatal("Ready reports ready after Shutdown")
		}
		if v := metric(t, h.reg, "transferd_transfers_in_flight", map[string]string{"provider": "fake"}); v != 0 {
			t.Errorf("in flight %v after Shutdown", v)
		}
	})

	// A transfer whose compensation cannot be verified (no reading of the
	// provider comes) ends owing its call a verification, stored for the
	// next owner's sweeper; Shutdown lets it go rather than leave it
	// listed as running here, driven by nothing. (Seen in CI: a reading
	// that came after the verification window on a loaded machine.)
	t.Run("transfer ending unverified is let go", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testConfig())
		id := consultingAtShutdown(t, h, func() { t.Cleanup(h.f.Block(orchestratortest.MethodObserve).Release) })
		ctx := context.Background()
		tr, err := h.store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		wantOutcome(t, tr, orchestrator.StateFailed, orchestrator.ReasonShutdown, true)
		if tr.Outcome.Verified || tr.Cleanup == nil {
			t.Fatalf("stored outcome %+v cleanup %+v, want unverified with its obligation", tr.Outcome, tr.Cleanup)
		}
		if len(h.e.Running()) != 0 {
			t.Fatalf("still running after Shutdown: %v", h.e.Running())
		}
		for _, name := range []string{"transferd_transfers_in_flight", "transferd_cleanups_pending"} {
			if v := metric(t, h.reg, name, map[string]string{"provider": "fake"}); v != 0 {
				t.Errorf("%s %v after Shutdown", name, v)
			}
		}
	})

	t.Run("completing transfer is finished", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testConfig())
		gate := h.f.Block(complete)
		id := h.start(t, request("fake", "1000"))
		<-gate.Entered()
		go func() {
			// Let the join through once shutdown has begun.
			for h.e.Ready(context.Background()) == nil {
				runtime.Gosched()
			}
			gate.Release()
		}()
		if err := h.e.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		tr, _ := h.e.Get(context.Background(), id)
		wantOutcome(t, tr, orchestrator.StateCompleted, orchestrator.ReasonTransferred, false)
	})

	t.Run("deadline passes, next process resumes", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testConfig())
		gate := h.f.Block(hold)
		id := h.start(t, request("fake", "1000"))
		<-gate.Entered()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		h.stopped = true
		if err := h.e.Shutdown(ctx); err == nil {
			t.Fatal("Shutdown returned nil although a transfer was still running at its deadline")
		}
		gate.Release()
		tr, _ := h.e.Get(context.Background(), id)
		if tr.State.Terminal() || tr.Sent.Hold.IsZero() || !tr.Open() {
			t.Fatalf("state %s hold sent %v: want an open record that still owes the unhold", tr.State, tr.Sent.Hold)
		}

		// The next process, under the same owner name, resumes it over the
		// same store and provider at once.
		e2, err := orchestrator.New(testConfig(), h.store, []orchestrator.Provider{h.f}, zerolog.Nop(), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		if err := e2.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		h2 := &harness{e: e2, f: h.f, store: h.store}
		tr = h2.done(t, id)
		if err := e2.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		// The cancelled hold had no effect; the next process holds (a hold
		// is safe to repeat) and carries the transfer on.
		wantOutcome(t, tr, orchestrator.StateCompleted, orchestrator.ReasonTransferred, false)
		if got, want := h.f.ActionsFor(id), []string{locate, hold, hold, dial, complete}; !slices.Equal(got, want) {
			t.Fatalf("actions %q, want %q", got, want)
		}
		if !hasStep(tr, orchestrator.StepReconcile) {
			t.Errorf("steps %+v: the resumed transfer does not say it was resumed", tr.Steps)
		}
	})

	// A Start that was past its shutdown check when Shutdown began is
	// waited for: its transfer ends before Shutdown returns.
	t.Run("Start in progress", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testConfig())
		entered, release := make(chan struct{}), make(chan struct{})
		h.store.onCreate = func() { close(entered); <-release }
		started := make(chan string, 1)
		go func() {
			tr, err := h.e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
			if err != nil {
				t.Errorf("Start: %v", err)
				started <- ""
				return
			}
			started <- tr.ID
		}()
		<-entered
		shut := make(chan error, 1)
		go func() { shut <- h.e.Shutdown(context.Background()) }()
		for h.e.Ready(context.Background()) == nil { // Shutdown has begun
			runtime.Gosched()
		}
		select {
		case err := <-shut:
			t.Fatalf("Shutdown returned (%v) while a Start was creating its transfer", err)
		default:
		}
		close(release)
		id := <-started
		if err := <-shut; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if id == "" {
			return
		}
		tr, _ := h.e.Get(context.Background(), id)
		wantOutcome(t, tr, orchestrator.StateFailed, orchestrator.ReasonShutdown, true)
		if calls := h.f.Calls(); len(calls) != 0 {
			t.Fatalf("a transfer started during shutdown reached the provider: %q", calls)
		}
	})

	// Every transfer accepted before Shutdown is driven to its end before
	// Shutdown returns; every Start after it is refused.
	t.Run("races with Start", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, testConfig())
		h.f.SetTarget(orchestratortest.TargetRings)
		var (
			wg  sync.WaitGroup
			mu  sync.Mutex
			ids []string
		)
		for i := range 40 {
			wg.Go(func() {
				tr, err := h.e.Start(context.Background(), request("fake", fmt.Sprint(2000+i)), orchestrator.StartOptions{})
				if err != nil {
					if orchestrator.KindOf(err) != orchestrator.KindUnavailable {
						t.Errorf("Start: %v", err)
					}
					return
				}
				mu.Lock()
				ids = append(ids, tr.ID)
				mu.Unlock()
			})
		}
		if err := h.e.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		// Starts that were accepted had reserved their run before
		// Shutdown began waiting, so they are finished by now.
		mu.Lock()
		accepted := slices.Clone(ids)
		mu.Unlock()
		for _, id := range accepted {
			if tr, _ := h.e.Get(context.Background(), id); !tr.State.Terminal() {
				t.Errorf("transfer %s is %s after Shutdown returned", id, tr.State)
			}
		}
		wg.Wait()
		for _, id := range ids {
			if tr, _ := h.e.Get(context.Background(), id); !tr.State.Terminal() {
				t.Errorf("transfer %s is %s after Shutdown", id, tr.State)
			}
		}
	})
}

func TestValidate(t *testing.T) {
	rich := orchestratortest.NewFake("rich").SetCapabilities(orchestrator.Capabilities{
		Attended: true, Announced: true, CallerID: true, Whisper: true, Diversion: true, Recording: true})
	h := newHarness(t, testConfig(),
		orchestratortest.NewFake("fake").Require("call.user"),
		orchestratortest.NewFake("bw").AnnouncedOnly(),
		rich)
	yes := true

	for _, tc := range []struct {
		name   string
		edit   func(*orchestrator.Request)
		kind   orchestrator.Kind // ignored when fields is nil
		fields []string
	}{
		{name: "valid", edit: func(*orchestrator.Request) {}},
		{name: "shortest consult_timeout", edit: func(r *orchestrator.Request) { r.ConsultTimeout = time.Second }},
		{name: "longest consult_timeout", edit: func(r *orchestrator.Request) { r.ConsultTimeout = 10 * time.Minute }},
		{name: "options the provider has", edit: func(r *orchestrator.Request) {
			r.Provider = "rich"
			r.CallerID, r.Whisper, r.Diversion = "+15551230000", &orchestrator.Whisper{Sentence: "hi"}, &orchestrator.Diversion{Treatment: "propagate"}
			r.Recording = &orchestrator.Recording{Enabled: &yes}
		}},
		{name: "announced", edit: func(r *orchestrator.Request) { r.Provider, r.Mode = "bw", orchestrator.ModeAnnounced }},

		{name: "no provider", edit: func(r *orchestrator.Request) { r.Provider = "" },
			kind: orchestrator.KindInvalid, fields: []string{"provider"}},
		{name: "unknown provider", edit: func(r *orchestrator.Request) { r.Provider = "nope" },
			kind: orchestrator.KindInvalid, fields: []string{"provider"}},
		{name: "missing target", edit: func(r *orchestrator.Request) { r.Target = "" },
			kind: orchestrator.KindInvalid, fields: []string{"target"}},
		{name: "bad completion", edit: func(r *orchestrator.Request) { r.Completion = "whenever" },
			kind: orchestrator.KindInvalid, fields: []string{"completion"}},
		{name: "bad mode", edit: func(r *orchestrator.Request) { r.Mode = "blind" },
			kind: orchestrator.KindInvalid, fields: []string{"mode"}},
		{name: "consult_timeout too short", edit: func(r *orchestrator.Request) { r.ConsultTimeout = 999 * time.Millisecond },
			kind: orchestrator.KindInvalid, fields: []string{"consult_timeout"}},
		{name: "consult_timeout too long", edit: func(r *orchestrator.Request) { r.ConsultTimeout = 10*time.Minute + time.Second },
			kind: orchestrator.KindInvalid, fields: []string{"consult_timeout"}},
		{name: "negative consult_timeout", edit: func(r *orchestrator.Request) { r.ConsultTimeout = -time.Second },
			kind: orchestrator.KindInvalid, fields: []string{"consult_timeout"}},
		{name: "every problem at once", edit: func(r *orchestrator.Request) { r.Target, r.Completion, r.Call.User = "", "later", "" },
			kind: orchestrator.KindInvalid, fields: []string{"call.user", "completion", "target"}},
		{name: "provider's own rule", edit: func(r *orchestrator.Request) { r.Call.User = "" },
			kind: orchestrator.KindInvalid, fields: []string{"call.user"}},
		{name: "announced and manual", edit: func(r *orchestrator.Request) {
			r.Mode, r.Completion = orchestrator.ModeAnnounced, orchestrator.CompletionManual
		}, kind: orchestrator.KindInvalid, fields: []string{"completion"}},

		{name: "whisper unsupported", edit: func(r *orchestrator.Request) { r.Whisper = &orchestrator.Whisper{Sentence: "hi"} },
			kind: orchestrator.KindUnsupported, fields: []string{"whisper"}},
		{name: "caller_id unsupported", edit: func(r *orchestrator.Request) { r.CallerID = "+15551230000" },
			kind: orchestrator.KindUnsupported, fields: []string{"caller_id"}},
		{name: "diversion and recording unsupported", edit: func(r *orchestrator.Request) {
			r.Diversion, r.Recording = &orchestrator.Diversion{Reason: "unavailable"}, &orchestrator.Recording{Enabled: &yes}
		}, kind: orchestrator.KindUnsupported, fields: []string{"diversion", "recording"}},
		{name: "attended on an announced-only provider", edit: func(r *orchestrator.Request) { r.Provider = "bw" },
			kind: orchestrator.KindUnsupported, fields: []string{"mode"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := request("fake", "1000")
			tc.edit(&r)
			err := h.e.Validate(context.Background(), &r)
			if tc.fields == nil {
				if err != nil {
					t.Fatalf("Validate: %v (fields %v)", err, orchestrator.FieldsOf(err))
				}
				return
			}
			kindIs(t, err, tc.kind)
			fields := orchestrator.FieldsOf(err)
			var got []string
			for f, msg := range fields {
				got = append(got, f)
				if msg == "" {
					t.Errorf("field %s has no message", f)
				}
			}
			sort.Strings(got)
			if !slices.Equal(got, tc.fields) {
				t.Fatalf("fields %v, want %v", fields, tc.fields)
			}
			// Bad input never reaches a provider and is never stored.
			if _, err := h.e.Start(context.Background(), r, orchestrator.StartOptions{}); orchestrator.KindOf(err) != tc.kind {
				t.Fatalf("Start: %v, want kind %s", err, tc.kind)
			}
		})
	}
	if calls := h.f.Calls(); len(calls) != 0 {
		t.Errorf("validation called the provider: %q", calls)
	}
	if ts, _, _ := h.e.List(context.Background(), orchestrator.ListFilter{Limit: 100}); len(ts) != 0 {
		t.Errorf("invalid requests were stored: %d", len(ts))
	}

	t.Run("defaults", func(t *testing.T) {
		r := request("fake", "1000")
		if err := h.e.Validate(context.Background(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Completion != orchestrator.CompletionAuto || r.Mode != orchestrator.ModeAttended || r.ConsultTimeout != h.e.Config().ConsultTimeout {
			t.Fatalf("defaults not applied: %+v", r)
		}
	})
}

func TestWait(t *testing.T) {
	h := newHarness(t, testConfig())
	h.f.SetTarget(orchestratortest.TargetRings)
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	id := h.start(t, r)
	ctx := context.Background()

	tr := h.waitFor(t, id, inState(orchestrator.StateConsulting))
	if tr.State != orchestrator.StateConsulting {
		t.Fatalf("Wait returned %s, want consulting", tr.State)
	}

	t.Run("ctx done returns the latest record", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		tr, err := h.e.Wait(cctx, id, answered)
		if err != nil || tr == nil || tr.State != orchestrator.StateConsulting {
			t.Fatalf("Wait = %+v, %v; want the consulting record and no error", tr, err)
		}
	})
	t.Run("unknown transfer", func(t *testing.T) {
		_, err := h.e.Wait(ctx, orchestrator.NewID(time.Now()), answered)
		kindIs(t, err, orchestrator.KindNotFound)
		_, err = h.e.Wait(ctx, "tr_nope", answered)
		kindIs(t, err, orchestrator.KindNotFound)
	})

	// A waiter that is satisfied and leaves must not take the wake-up of
	// another waiter of the same transfer with it.
	t.Run("concurrent waiters", func(t *testing.T) {
		registered := make(chan struct{})
		var once sync.Once
		res := make(chan *orchestrator.Transfer, 1)
		go func() {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			tr, _ := h.e.Wait(wctx, id, func(tr *orchestrator.Transfer) bool {
				once.Do(func() { close(registered) }) // B now holds the watch
				return tr.Answered
			})
			res <- tr
		}()
		<-registered
		for range 3 { // A: satisfied at once
			if tr, err := h.e.Wait(ctx, id, inState(orchestrator.StateConsulting)); err != nil || tr.State != orchestrator.StateConsulting {
				t.Fatalf("Wait = %v, %v", tr, err)
			}
		}
		h.f.Answer(id)
		if tr := <-res; !tr.Answered {
			t.Fatalf("the remaining waiter missed the answer: %+v", tr)
		}
	})
}

// Notify makes the engine observe now instead of at its next poll.
func TestNotify(t *testing.T) {
	cfg := testConfig()
	cfg.PollInterval, cfg.PollMaxInterval = time.Hour, time.Hour
	h := newHarness(t, cfg)
	h.f.SetTarget(orchestratortest.TargetRings)
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	id := h.start(t, r)
	h.waitFor(t, id, inState(orchestrator.StateConsulting))
	// The first reading of the consult is taken before the answer, so
	// that only Notify can bring the next one before an hour passes.
	eventually(t, "a reading of the consult", func() bool { return countActions(h.f.Calls(), observe) > 0 })
	h.f.Answer(id)
	h.e.Notify(id)
	if tr := h.waitFor(t, id, answered); !tr.Answered {
		t.Fatalf("not answered: %+v", tr)
	}
	h.e.Notify("tr_unknown") // harmless
}

func TestList(t *testing.T) {
	h := newHarness(t, testConfig(), orchestratortest.NewFake("alpha"),
		orchestratortest.NewFake("beta").SetTarget(orchestratortest.TargetRings))
	var all, alpha, beta []string
	for i := range 3 {
		id := h.start(t, request("alpha", fmt.Sprint(1000+i)))
		h.done(t, id)
		all, alpha = append(all, id), append(alpha, id)
	}
	for i := range 2 {
		r := request("beta", fmt.Sprint(2000+i))
		r.Completion = orchestrator.CompletionManual
		id := h.start(t, r)
		h.waitFor(t, id, inState(orchestrator.StateConsulting))
		all, beta = append(all, id), append(beta, id)
	}
	for _, s := range [][]string{all, alpha, beta} {
		slices.Sort(s)
		slices.Reverse(s) // newest first
	}
	ctx := context.Background()
	ids := func(ts []*orchestrator.Transfer) []string {
		var out []string
		for _, t := range ts {
			out = append(out, t.ID)
		}
		return out
	}

	ts, more, err := h.e.List(ctx, orchestrator.ListFilter{Limit: 10})
	if err != nil || more || !slices.Equal(ids(ts), all) {
		t.Fatalf("List = %q, more %v, %v; want %q", ids(ts), more, err, all)
	}
	for _, tc := range []struct {
		f    orchestrator.ListFilter
		want []string
	}{
		{orchestrator.ListFilter{Provider: "beta", Limit: 10}, beta},
		{orchestrator.ListFilter{Provider: "alpha", Limit: 10}, alpha},
		{orchestrator.ListFilter{States: []orchestrator.State{orchestrator.StateConsulting}, Limit: 10}, beta},
		{orchestrator.ListFilter{States: []orchestrator.State{orchestrator.StateCompleted, orchestrator.StateFailed}, Provider: "alpha", Limit: 10}, alpha},
		{orchestrator.ListFilter{States: []orchestrator.State{orchestrator.StateConsulting}, Provider: "alpha", Limit: 10}, nil},
		{orchestrator.ListFilter{States: []orchestrator.State{orchestrator.StateCancelled}, Limit: 10}, nil},
	} {
		ts, more, err := h.e.List(ctx, tc.f)
		if err != nil || more || !slices.Equal(ids(ts), tc.want) {
			t.Errorf("List(%+v) = %q, more %v, %v; want %q", tc.f, ids(ts), more, err, tc.want)
		}
	}

	// Pages of 2 follow the cursor to the end without gaps or repeats.
	var paged []string
	f := orchestrator.ListFilter{Limit: 2}
	for page := 0; ; page++ {
		ts, more, err := h.e.List(ctx, f)
		if err != nil || len(ts) > 2 || page > 3 {
			t.Fatalf("page %d: %d transfers, %v", page, len(ts), err)
		}
		paged = append(paged, ids(ts)...)
		if !more {
			break
		}
		f.After = ts[len(ts)-1].ID
	}
	if !slices.Equal(paged, all) {
		t.Fatalf("paged %q, want %q", paged, all)
	}
}

func TestGetMalformedID(t *testing.T) {
	h := newHarness(t, testConfig())
	ctx := context.Background()
	for _, id := range []string{"", "nope", "tr_", "tr_0000000000000000000000000i", orchestrator.NewID(time.Now())} {
		_, err := h.e.Get(ctx, id)
		kindIs(t, err, orchestrator.KindNotFound)
		_, err = h.e.Cancel(ctx, id)
		kindIs(t, err, orchestrator.KindNotFound)
		_, err = h.e.Complete(ctx, id)
		kindIs(t, err, orchestrator.KindNotFound)
	}
}

func TestID(t *testing.T) {
	base := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	prev := ""
	for i := range 1000 {
		now := base.Add(time.Duration(i/10) * time.Millisecond) // ten per millisecond
		id := orchestrator.NewID(now)
		if !orchestrator.ValidID(id) || len(id) != 29 || !strings.HasPrefix(id, "tr_") {
			t.Fatalf("NewID = %q is not valid", id)
		}
		if seen[id] {
			t.Fatalf("NewID repeated %q", id)
		}
		seen[id] = true
		if i%10 == 0 && id <= prev {
			t.Fatalf("NewID(%v) = %q sorts before the id of an earlier millisecond %q", now, id, prev)
		}
		prev = max(prev, id)
	}
	for _, now := range []time.Time{time.Unix(0, 0), time.Now(), time.UnixMilli(1<<48 - 1)} {
		if id := orchestrator.NewID(now); !orchestrator.ValidID(id) {
			t.Errorf("NewID(%v) = %q is not valid", now, id)
		}
	}
	good := orchestrator.NewID(base)
	for _, bad := range []string{
		"", "tr_", good[:28], good + "0", "TR_" + good[3:], "tx_" + good[3:],
		"tr_8" + good[4:],                     // more than 128 bits
		good[:10] + "I" + good[11:],           // not Crockford
		good[:10] + "L" + good[11:],           //
		good[:10] + "O" + good[11:],           //
		good[:10] + "U" + good[11:],           //
		good[:10] + "a" + good[11:],           // lower case
		good[:10] + "-" + good[11:],           //
		strings.Repeat("x", 29),               //
		"tr_" + strings.Repeat("Z", 26),       //
		"tr_" + strings.Repeat("0", 25) + "!", //
	} {
		if orchestrator.ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
}

func TestMetrics(t *testing.T) {
	h := newHarness(t, testConfig())
	fake := map[string]string{"provider": "fake"}
	total := func(outcome orchestrator.State, reason orchestrator.Reason) float64 {
		return metric(t, h.reg, "transferd_transfers_total",
			map[string]string{"provider": "fake", "outcome": string(outcome), "reason": string(reason)})
	}

	// A transfer parked in consulting holds its caller.
	h.f.SetTarget(orchestratortest.TargetRings)
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	id := h.start(t, r)
	h.waitFor(t, id, inState(orchestrator.StateConsulting))
	// The gauge follows readings: the first one after the hold shows it.
	eventually(t, "the held caller counted", func() bool { return metric(t, h.reg, "transferd_callers_on_hold", fake) == 1 })
	if v := metric(t, h.reg, "transferd_transfers_in_flight", fake); v != 1 {
		t.Fatalf("in flight while consulting = %v, want 1", v)
	}
	if _, err := h.e.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	h.done(t, id)
	// Counted by the time the terminal state can be seen.
	if v := total(orchestrator.StateCancelled, orchestrator.ReasonCancelled); v != 1 {
		t.Fatalf("cancelled/cancelled = %v, want 1", v)
	}
	eventually(t, "no caller on hold after the cancel", func() bool { return metric(t, h.reg, "transferd_callers_on_hold", fake) == 0 })

	h.f.SetTarget(orchestratortest.TargetAnswers)
	h.done(t, h.start(t, request("fake", "1000")))
	if v := total(orchestrator.StateCompleted, orchestrator.ReasonTransferred); v != 1 {
		t.Fatalf("completed/transferred = %v, want 1", v)
	}
	h.f.SetTarget(orchestratortest.TargetBusy)
	h.done(t, h.start(t, request("fake", "1000")))
	if v := total(orchestrator.StateFailed, orchestrator.ReasonBusy); v != 1 {
		t.Fatalf("failed/busy = %v, want 1", v)
	}
	if v := total(orchestrator.StateCompleted, orchestrator.ReasonTransferred); v != 1 {
		t.Fatalf("completed/transferred = %v, want still 1", v)
	}
	eventually(t, "no caller on hold after the transfers ended", func() bool { return metric(t, h.reg, "transferd_callers_on_hold", fake) == 0 })
	if v := metric(t, h.reg, "transferd_transfers_started_total", fake); v != 3 {
		t.Fatalf("started = %v, want 3", v)
	}
	// A run leaves the in-flight count when its goroutine ends, which
	// Shutdown waits for.
	if err := h.e.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := metric(t, h.reg, "transferd_transfers_in_flight", fake); v != 0 {
		t.Fatalf("in flight after Shutdown = %v, want 0", v)
	}
}

// --- helpers ---

// Method names, short for the tables.
const (
	locate   = orchestratortest.MethodLocate
	hold     = orchestratortest.MethodHold
	unhold   = orchestratortest.MethodUnhold
	dial     = orchestratortest.MethodDial
	observe  = orchestratortest.MethodObserve
	complete = orchestratortest.MethodComplete
	hangup   = orchestratortest.MethodHangupConsult
)

// testConfig keeps every wait of the engine short so that failing paths end
// fast; no test asserts on timing.
func testConfig() orchestrator.Config {
	return orchestrator.Config{
		PollInterval:     time.Millisecond,
		PollMaxInterval:  5 * time.Millisecond,
		StepTimeout:      5 * time.Second,
		VerifyTimeout:    50 * time.Millisecond,
		VisibilityWindow: 50 * time.Millisecond,
		TombstoneTTL:     100 * time.Millisecond,
	}
}

// patientConfig is testConfig for a test whose recovery must end verified
// and that never waits the verification's patience out: the recovery
// waits an hour, not 50 ms of real time, for a reading that can show the
// caller back or gone, which a loaded machine can hold back that long (the
// outcome then ended unverified, and the sweeper verified it later).
func patientConfig() orchestrator.Config {
	cfg := testConfig()
	cfg.VerifyTimeout = time.Hour
	return cfg
}

// event is one entry of the interleaved log of saves and provider calls.
type event struct {
	id   string
	call string                 // a provider method, or "" for a save
	save *orchestrator.Transfer // the record as saved
}

// recStore is the memory store recording every successful Update, in one
// log with the provider calls, so tests can check what was saved before
// each side effect.
type recStore struct {
	*memory.Store
	mu  sync.Mutex
	log []event
	// saved is closed and replaced on every successful Update.
	saved chan struct{}
	// failing makes Update fail, as a full disk does.
	failing atomic.Bool
	// onCreate, when set, runs at the start of every Create.
	onCreate func()
}

func (s *recStore) Create(ctx context.Context, t *orchestrator.Transfer) error {
	if s.onCreate != nil {
		s.onCreate()
	}
	return s.Store.Create(ctx, t)
}

// Update saves and logs under one lock that Get and List also take, so no
// reader sees a version the log does not hold yet.
func (s *recStore) Update(ctx context.Context, t *orchestrator.Transfer) error {
	if s.failing.Load() {
		return errors.New("recStore: no space left on device")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.Store.Update(ctx, t); err != nil {
		return err
	}
	s.log = append(s.log, event{id: t.ID, save: t.Clone()})
	close(s.saved)
	s.saved = make(chan struct{})
	return nil
}

// waitSaved waits until the stored record of id satisfies cond and returns
// it: for conditions on terminal transfers, which Engine.Wait does not wait
// for.
func (s *recStore) waitSaved(t testing.TB, id string, cond func(*orchestrator.Transfer) bool) *orchestrator.Transfer {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		ch := s.saved
		tr, err := s.Store.Get(context.Background(), id)
		s.mu.Unlock()
		if err != nil {
			t.Fatalf("Get %s: %v", id, err)
		}
		if cond(tr) {
			return tr
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("gave up waiting for a save of %s; it is %s, cleanup %+v, outcome %+v", id, tr.State, tr.Cleanup, tr.Outcome)
		}
	}
}

func (s *recStore) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Store.Get(ctx, id)
}

func (s *recStore) List(ctx context.Context, f orchestrator.ListFilter) ([]*orchestrator.Transfer, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Store.List(ctx, f)
}

func (s *recStore) add(ev event) {
	s.mu.Lock()
	s.log = append(s.log, ev)
	s.mu.Unlock()
}

// events returns the log of one transfer.
func (s *recStore) events(id string) []event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []event
	for _, ev := range s.log {
		if ev.id == id {
			out = append(out, ev)
		}
	}
	return out
}

// saves returns every saved version of one transfer, in order.
func (s *recStore) saves(id string) []*orchestrator.Transfer {
	var out []*orchestrator.Transfer
	for _, ev := range s.events(id) {
		if ev.save != nil {
			out = append(out, ev.save)
		}
	}
	return out
}

type harness struct {
	e     *orchestrator.Engine
	f     *orchestratortest.Fake // the first provider
	store *recStore
	reg   *prometheus.Registry
	// stopped: the test shut the engine down with a deadline that passed;
	// the transfers it left belong to the next process.
	stopped bool
}

// newHarness builds an engine over a recording memory store, a fresh
// registry and the given fakes (one called "fake" when none is given). The
// engine is shut down when the test ends.
func newHarness(t testing.TB, cfg orchestrator.Config, fakes ...*orchestratortest.Fake) *harness {
	t.Helper()
	if len(fakes) == 0 {
		fakes = []*orchestratortest.Fake{orchestratortest.NewFake("fake")}
	}
	st := &recStore{Store: memory.New(), saved: make(chan struct{})}
	ps := make([]orchestrator.Provider, len(fakes))
	for i, f := range fakes {
		ps[i] = f
		f.Before("", func(r orchestratortest.Record) { st.add(event{id: r.TransferID, call: r.Method}) })
	}
	reg := prometheus.NewRegistry()
	e, err := orchestrator.New(cfg, st, ps, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{e: e, f: fakes[0], store: st, reg: reg}
	t.Cleanup(func() {
		if h.stopped {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return h
}

func request(provider, user string) orchestrator.Request {
	return orchestrator.Request{
		Provider: provider,
		Call:     orchestrator.CallRef{Domain: "TEST", User: user},
		Target:   "1010",
	}
}

func (h *harness) start(t testing.TB, r orchestrator.Request) string {
	t.Helper()
	tr, err := h.e.Start(context.Background(), r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return tr.ID
}

// waitFor waits until cond holds or the transfer is terminal.
func (h *harness) waitFor(t testing.TB, id string, cond func(*orchestrator.Transfer) bool) *orchestrator.Transfer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr, err := h.e.Wait(ctx, id, cond)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if !tr.State.Terminal() && !cond(tr) {
		t.Fatalf("gave up waiting for transfer %s in state %s", id, tr.State)
	}
	return tr
}

// done waits until the transfer is terminal.
func (h *harness) done(t testing.TB, id string) *orchestrator.Transfer {
	t.Helper()
	return h.waitFor(t, id, func(*orchestrator.Transfer) bool { return false })
}

func inState(s orchestrator.State) func(*orchestrator.Transfer) bool {
	return func(t *orchestrator.Transfer) bool { return t.State == s }
}

func answered(t *orchestrator.Transfer) bool { return t.Answered }

// eventually waits until cond holds, for state that publishes no change to
// wait on (metrics, the Fake's calls). It yields between checks and gives
// up after 10 seconds.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		runtime.Gosched()
	}
}

// dropRepeats drops every call of the given methods after its first.
func dropRepeats(calls []string, methods ...string) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range calls {
		if slices.Contains(methods, c) {
			if seen[c] {
				continue
			}
			seen[c] = true
		}
		out = append(out, c)
	}
	return out
}

// stepOf names the step saved around each provider side effect, and sentOf
// the time of it that must be saved before it.
var (
	stepOf = map[string]string{
		locate: orchestrator.StepLocate, hold: orchestrator.StepHold, unhold: orchestrator.StepUnhold,
		dial: orchestrator.StepDial, complete: orchestrator.StepTransfer, hangup: orchestrator.StepHangup,
	}
	sentOf = map[string]func(orchestrator.Sent) time.Time{
		hold:     func(s orchestrator.Sent) time.Time { return s.Hold },
		dial:     func(s orchestrator.Sent) time.Time { return s.Dial },
		complete: func(s orchestrator.Sent) time.Time { return s.Join },
		hangup:   func(s orchestrator.Sent) time.Time { return s.Hangup },
		unhold:   func(s orchestrator.Sent) time.Time { return s.Unhold },
	}
)

// checkSaves asserts the write-ahead discipline on one transfer's log:
// versions grow by one per save; before every provider side effect its
// intent (the step started, and when it was sent, so that a later process
// knows it may have happened) is the last thing saved, and its result is
// saved right after.
func checkSaves(t *testing.T, st *recStore, id string) {
	t.Helper()
	evs := st.events(id)
	var last *orchestrator.Transfer
	for i, ev := range evs {
		if ev.save != nil {
			want := int64(2) // Create saves version 1
			if last != nil {
				want = last.Version + 1
			}
			if ev.save.Version != want {
				t.Errorf("save %d has version %d, want %d", i, ev.save.Version, want)
			}
			last = ev.save
			continue
		}
		name, ok := stepOf[ev.call]
		if !ok || name == orchestrator.StepLocate {
			continue // Observe and Locate change nothing: no intent to save
		}
		if last == nil || len(last.Steps) == 0 {
			t.Errorf("%s called before its intent was saved", ev.call)
			continue
		}
		n := len(last.Steps)
		if s := last.Steps[n-1]; s.Name != name || s.Status != orchestrator.StepStarted || s.StartedAt.IsZero() {
			t.Errorf("%s called when the last saved step is %s/%s, want the intent %s/started", ev.call, s.Name, s.Status, name)
		}
		if sent := sentOf[ev.call]; sent != nil && sent(last.Sent).IsZero() {
			t.Errorf("%s called before the time it was sent was saved: %+v", ev.call, last.Sent)
		}
		var next *orchestrator.Transfer
		for _, e := range evs[i+1:] {
			if e.save != nil {
				next = e.save
				break
			}
		}
		if next == nil || len(next.Steps) < n {
			t.Errorf("the result of %s was never saved", ev.call)
			continue
		}
		if s := next.Steps[n-1]; s.Name != name || s.Status == orchestrator.StepStarted || s.EndedAt.Before(s.StartedAt) {
			t.Errorf("after %s the next save has step %+v, want %s ended", ev.call, s, name)
		}
	}
}

// savedStates returns the states a transfer was saved in, consecutive
// repeats folded.
func savedStates(st *recStore, id string) []orchestrator.State {
	out := []orchestrator.State{orchestrator.StatePending} // Create
	for _, s := range st.saves(id) {
		if out[len(out)-1] != s.State {
			out = append(out, s.State)
		}
	}
	return out
}

// series returns the series name of reg with exactly the given labels,
// nil when it does not exist.
func series(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	each:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
					continue each
				}
			}
			return m
		}
	}
	return nil
}

// metric returns the value of the counter or gauge name with exactly the
// given labels, 0 when the series does not exist.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	m := series(t, reg, name, labels)
	switch {
	case m == nil:
		return 0
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	t.Fatalf("metric %s is neither a counter nor a gauge", name)
	return 0
}

func kindIs(t *testing.T, err error, want orchestrator.Kind) {
	t.Helper()
	var oe *orchestrator.Error
	if !errors.As(err, &oe) {
		t.Fatalf("error %v (%T) is not an *orchestrator.Error", err, err)
	}
	if got := orchestrator.KindOf(err); got != want {
		t.Fatalf("error kind %s, want %s (%v)", got, want, err)
	}
}

// fakeErr builds the error a provider adapter returns.
func fakeErr(op string, k orchestrator.Kind) error {
	return orchestrator.E("fake."+op, k, errors.New("injected "+k.String()))
}

// TestValidateNamesTheModeAProviderLacks: a mode the provider cannot do
// read "mode: is not supported by provider netsapiens in mode announced";
// it names the mode once (found by the demo-mode review).
func TestValidateNamesTheModeAProviderLacks(t *testing.T) {
	h := newHarness(t, testConfig(), orchestratortest.NewFake("bw").AnnouncedOnly())
	r := request("bw", "1000")
	fields := orchestrator.FieldsOf(h.e.Validate(context.Background(), &r))
	if want := `"attended" is not supported by provider bw`; fields["mode"] != want {
		t.Fatalf("mode: %q, want %q (fields %v)", fields["mode"], want, fields)
	}
}
