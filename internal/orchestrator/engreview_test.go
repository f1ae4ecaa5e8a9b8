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

// Found by the engine review (fiftieth pass): a join accepted and not
// applied yet, and readings, taken before it could have applied, that
// leave the consult out (a PBX rewriting the consult's row into the
// caller's as it joins them, or a listing that drops a row once; the
// NetSapiens adapter reads a missing consult by its id only before a join
// is sent). The engine took the seen consult's absence for the target
// hanging up: it gave the transfer up, target_hung_up, and the recovery,
// on the same reading, hung up the consult the join was landing on and
// unheld the caller. A seen consult's absence now counts only on a reading
// taken once the join could have applied: before, it is unknown, and the
// join is waited for.
func TestAConsultMissingBeforeTheJoinCouldApplyIsNotTakenForTheTargetGone(t *testing.T) {
	f := orchestratortest.NewFake("fake").Defer(orchestratortest.MethodComplete, 1)
	var mu sync.Mutex
	var joinAt time.Time
	applied := false
	f.Before(orchestratortest.MethodComplete, func(r orchestratortest.Record) {
		mu.Lock()
		joinAt = time.Now()
		mu.Unlock()
		f.HideConsult(r.TransferID, 1<<30)
	})
	// Every reading leaves the consult out until the join applies, which
	// it does a visibility window after it was sent: no later than the
	// engine may count the consult's absence.
	f.Before(orchestratortest.MethodObserve, func(r orchestratortest.Record) {
		mu.Lock()
		defer mu.Unlock()
		if joinAt.IsZero() || applied || time.Since(joinAt) < stormWindowShort {
			return
		}
		applied = true
		f.ApplyDeferred(r.TransferID)
		f.HideConsult(r.TransferID, 0)
	})
	e, st := unknowableEngine(t, f)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := st.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if end.State != orchestrator.StateCompleted {
		t.Errorf("%s %+v; want completed: the consult was only missing from readings taken before the join could apply", end.State, end.Outcome)
	}
	if slices.Contains(f.ActionsFor(tr.ID), orchestratortest.MethodHangupConsult) {
		t.Errorf("actions %v: the consult the join was landing on was hung up", f.ActionsFor(tr.ID))
	}
	if c, _ := f.State(tr.ID); c.Caller != orchestrator.CallerTransferred {
		t.Errorf("the provider shows the caller %v, want with the target", c.Caller)
	}
}

// Found by the engine review (fiftieth pass): an unhold answered "not
// found" (a NetSapiens unhold addresses the agent's call-id, and a PBX may
// answer 404 for a call it does not show for a moment) closed the
// recovery in the pass that sent it, on the reading taken before it: the
// consult had ended and the hold had settled, so restored took the 404 for
// the caller gone, verified, "the caller hung up before being taken off
// hold", with the caller still on hold and nobody watching. The 404 is
// now judged by a reading taken after the unhold, whatever the join: it
// shows the caller held, and the unhold is sent again.
func TestAnUnholdNotFoundIsJudgedByAReadingTakenAfterIt(t *testing.T) {
	f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings)
	f.FailOn(orchestratortest.MethodUnhold,
		orchestrator.E("fake.Unhold", orchestrator.KindCallNotFound, errors.New("HTTP 404")), 1)
	// The target declines once the hold has settled (two visibility
	// windows after the dial, which follows the hold's step).
	var mu sync.Mutex
	var dialAt time.Time
	declined := false
	f.Before(orchestratortest.MethodDial, func(orchestratortest.Record) {
		mu.Lock()
		dialAt = time.Now()
		mu.Unlock()
	})
	f.Before(orchestratortest.MethodObserve, func(r orchestratortest.Record) {
		mu.Lock()
		defer mu.Unlock()
		if dialAt.IsZero() || declined || time.Since(dialAt) < 2*stormWindowShort {
			return
		}
		declined = f.HangupTarget(r.TransferID) == 1
	})
	e, st := unknowableEngine(t, f)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := st.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	if c, _ := f.State(tr.ID); c.Caller != orchestrator.CallerConnected {
		t.Errorf("the provider shows the caller %v, want connected (given back)", c.Caller)
	}
	if o := end.Outcome; end.State != orchestrator.StateFailed || !o.CallerRestored || !o.Verified {
		t.Errorf("%s %+v; want failed, the caller restored, verified", end.State, o)
	}
}
