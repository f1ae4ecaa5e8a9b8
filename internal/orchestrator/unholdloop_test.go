package orchestrator_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// Found by a third review, of the second review's fixes.

// As in TestUnholdNotFoundWhileTheCallerShowsHeldAfterAnUnknownJoin, the
// join is accepted and the target hangs up before it applies, so the
// join's effect stays unknown. But here the leg the unhold addresses is
// gone for good (NetSapiens' unhold addresses the agent's call-id): every
// unhold answers "not found" while every reading shows the caller held.
// The recovery took each 404 back, sent the unhold again, and never ended;
// at its deadline it left an obligation that the sweeper worked the same
// way for as long as the call lasted. Now a second "not found" while the
// caller shows held gives the unhold up: the caller's call is up and held,
// not restored, verified.
func TestUnholdAlwaysNotFoundWhileTheCallerShowsHeldEnds(t *testing.T) {
	f := orchestratortest.NewFake("fake").Defer(orchestratortest.MethodComplete, 1)
	// The target hangs up; the accepted join, not applied yet, never is.
	// The agent's leg is gone for good: every unhold answers 404.
	afterJoinWindow(f, func(id string) {
		f.HangupTarget(id)
		f.FailOn(orchestratortest.MethodUnhold,
			orchestrator.E("fake.Unhold", orchestrator.KindCallNotFound, errors.New("HTTP 404")), -1)
	})
	const many = 40
	var unholds atomic.Int32
	manyUnholds := make(chan struct{})
	f.Before(orchestratortest.MethodUnhold, func(orchestratortest.Record) {
		if unholds.Add(1) == many {
			close(manyUnholds)
		}
	})
	e, st := unknowableEngine(t, f)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	timeout := time.After(20 * time.Second)
	for {
		st.mu.Lock()
		ch := st.saved
		x, err := st.Store.Get(context.Background(), tr.ID)
		st.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		if x.State.Terminal() && x.Cleanup == nil {
			// The caller's call is up and held: the provider shows it, and
			// nothing of ours can take the caller off hold.
			if o := x.Outcome; !o.Verified || o.CallerRestored || strings.Contains(o.Detail, "cannot be verified") {
				t.Errorf("%s %+v; want not restored, verified (the caller's call is up)", x.State, o)
			}
			if n := unholds.Load(); n > 3 {
				t.Errorf("%d unholds sent, want the unhold given up after a second \"not found\"", n)
			}
			return
		}
		select {
		case <-ch:
		case <-manyUnholds:
			c, _ := f.State(tr.ID)
			t.Fatalf("after %d unholds answered 404 the transfer is %s, outcome %+v, cleanup %+v (caller %v at the provider): "+
				"the recovery/sweeper re-sends the unhold forever and never ends the obligation", many, x.State, x.Outcome, x.Cleanup, c.Caller)
		case <-timeout:
			t.Fatalf("timed out: %s cleanup %+v", x.State, x.Cleanup)
		}
	}
}

// The join is accepted as a read outage begins and never applies: the
// transfer ends unverified with an obligation, and the consult (which may
// carry the caller) is not hung up without a fresh reading. The caller,
// still held, hangs up; the agent's consult with the target goes on. When
// the provider can be read again, the sweeper ended the obligation as soon
// as it saw the caller gone with the join unknown, before hanging up the
// consult leg of ours: a leg left up (invariant (b)). Now it hangs the leg
// up first and discharges once none is up.
func TestUnknowableSweepHangsUpOurConsultLegFirst(t *testing.T) {
	f := orchestratortest.NewFake("fake").Defer(orchestratortest.MethodComplete, 1)
	unavailable := orchestrator.E("fake.Observe", orchestrator.KindProviderUnavailable, errors.New("HTTP 503"))
	f.Before(orchestratortest.MethodComplete, func(orchestratortest.Record) {
		f.FailOn(orchestratortest.MethodObserve, unavailable, -1)
	})
	e, st := unknowableEngine(t, f)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := st.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if end.Outcome.Verified || end.Cleanup == nil {
		t.Fatalf("set-up: %s %+v cleanup %+v; want unverified with an obligation", end.State, end.Outcome, end.Cleanup)
	}
	if c, _ := f.State(tr.ID); c.Consult != orchestrator.ConsultAnswered || c.Caller != orchestrator.CallerHeld {
		t.Fatalf("set-up: caller %v consult %v; want held, answered (the join never applied)", c.Caller, c.Consult)
	}
	f.HangupCaller(tr.ID) // the attended consult (agent <-> target) goes on
	f.ClearFaults()
	end = st.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Cleanup == nil })
	if o := end.Outcome; o.Verified || o.CallerRestored || !strings.Contains(o.Detail, "cannot be verified") {
		t.Errorf("%s %+v; want not restored, unverified for good", end.State, o)
	}
	if c, _ := f.State(tr.ID); c.Consult == orchestrator.ConsultRinging || c.Consult == orchestrator.ConsultAnswered {
		t.Errorf("obligation ended (%s %+v) with the consult leg of ours still %v: invariant (b) broken", end.State, end.Outcome, c.Consult)
	}
	if !slices.Contains(f.ActionsFor(tr.ID), orchestratortest.MethodHangupConsult) {
		t.Errorf("no consult hang-up was ever sent: actions %v", f.ActionsFor(tr.ID))
	}
}
