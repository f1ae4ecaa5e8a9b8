package orchestrator_test

import (
	"context"
	"slices"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// Found by the outcome review (fiftieth pass): a join refused because the
// target or the caller hung up as it was sent. A PBX may refuse it as
// "not found" (NetSapiens: a destination session that just ended), which
// the engine reads back as the party the first reading shows gone
// (notFoundWhich); Bandwidth refuses a bridge update naming an ended call
// with call-invalid-state (403), kind call_not_active, which it left as it
// was. The outcome blamed the call's state ("call_not_active") for a
// target who hung up, and for a caller who hung up, with a
// transfer.needs_attention saying the caller was not given back for a
// reason other than hanging up.
func TestAJoinRefusedAsAPartyHangsUpBlamesThatParty(t *testing.T) {
	for _, tc := range []struct {
		name     string
		hangup   func(f *orchestratortest.Fake, id string) int
		reason   orchestrator.Reason
		restored bool
	}{
		{"the target", func(f *orchestratortest.Fake, id string) int { return f.HangupTarget(id) }, orchestrator.ReasonTargetHungUp, true},
		{"the caller", func(f *orchestratortest.Fake, id string) int { return f.HangupCaller(id) }, orchestrator.ReasonCallerHungUp, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testConfig())
			h.f.SetTarget(orchestratortest.TargetRings)
			// The party hangs up as the join goes out, which the provider
			// refuses as Bandwidth does a bridge naming an ended call.
			h.f.FailOn(complete, fakeErr(complete, orchestrator.KindCallNotActive), 1)
			h.f.Before(complete, func(r orchestratortest.Record) {
				if tc.hangup(h.f, r.TransferID) != 1 {
					t.Error("nobody hung up")
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
			end := h.store.waitSaved(t, id, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
			if i := slices.IndexFunc(end.Steps, func(s orchestrator.Step) bool {
				return s.Name == orchestrator.StepTransfer && s.Status == orchestrator.StepFailed
			}); i < 0 {
				t.Fatalf("steps %+v: want the join refused", end.Steps)
			}
			wantOutcome(t, end, orchestrator.StateFailed, tc.reason, tc.restored)
			if !end.Outcome.Verified {
				t.Errorf("outcome %+v, want verified", end.Outcome)
			}
			types := eventTypes(t, h.store, id)
			if want := !tc.restored && tc.reason != orchestrator.ReasonCallerHungUp; slices.Contains(types, orchestrator.EventNeedsAttention) != want {
				t.Errorf("events %v: transfer.needs_attention sent %t, want %t", types, !want, want)
			}
		})
	}
}

// Found by the outcome review (fiftieth pass): a join refused as "not
// found" or "not active" while both parties stayed on the line (a
// NetSapiens join addresses the agent's call, which may have ended: an
// agent who hangs up as the client completes) was blamed on the target:
// the party it did not find was looked for in every reading of the
// recovery, and the recovery's own hang-up of the consult shows in the
// next one as the consult ended. Only the first reading after the refusal
// says which call it did not find.
func TestAJoinRefusedWhileBothPartiesStayIsNotBlamedOnTheTargetTheRecoveryHungUp(t *testing.T) {
	for _, tc := range []struct {
		k      orchestrator.Kind
		reason orchestrator.Reason
	}{
		{orchestrator.KindCallNotFound, orchestrator.ReasonCallNotFound},
		{orchestrator.KindCallNotActive, orchestrator.ReasonCallNotActive},
	} {
		t.Run(string(tc.reason), func(t *testing.T) {
			h := newHarness(t, testConfig())
			h.f.FailOn(complete, fakeErr(complete, tc.k), 1)
			id := h.start(t, request("fake", "1000"))
			end := h.store.waitSaved(t, id, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
			wantOutcome(t, end, orchestrator.StateFailed, tc.reason, true)
			if !end.Outcome.Verified {
				t.Errorf("outcome %+v, want verified", end.Outcome)
			}
		})
	}
}
