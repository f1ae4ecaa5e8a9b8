package orchestrator_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// lateAnswer runs an announced transfer whose B-leg does not show within
// the visibility window: it ends verified, with a tombstone (end). Once arm
// is called, between two readings the late B-leg appears and is answered
// (the provider connects A and B), then the caller hangs up, B with it.
func lateAnswer(t *testing.T, reg *prometheus.Registry) (st *recStore, tr, end *orchestrator.Transfer, arm func()) {
	t.Helper()
	f := orchestratortest.NewFake("bw").AnnouncedOnly().Defer(orchestratortest.MethodDial, 1)
	p := &keepsAnswer{Fake: f}
	st = &recStore{Store: memory.New(), saved: make(chan struct{})}
	e := testEngine(t, fastConfig(200*time.Millisecond, time.Second), st, p, reg)
	var armed, scripted atomic.Bool
	f.Before(orchestratortest.MethodObserve, func(r orchestratortest.Record) {
		if !armed.Load() || !scripted.CompareAndSwap(false, true) {
			return
		}
		if f.ApplyDeferred(r.TransferID) != 1 {
			t.Error("the dial was not waiting to land")
		}
		if c, _ := f.State(r.TransferID); c.Caller != orchestrator.CallerTransferred {
			t.Errorf("the late leg did not connect the caller to the target: caller %v", c.Caller)
		}
		p.answered.Store(r.TransferID, true)
		f.HangupCaller(r.TransferID)
	})
	r := orchestrator.Request{Provider: "bw", Mode: orchestrator.ModeAnnounced,
		Call: orchestrator.CallRef{Domain: "TEST", User: "1000"}, Target: "+15550001010", ConsultTimeout: 30 * time.Second}
	tr, err := e.Start(context.Background(), r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end = st.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if end.Cleanup == nil || !end.Outcome.Verified {
		t.Fatalf("set-up: %s %+v cleanup %+v; want verified with a tombstone", end.State, end.Outcome, end.Cleanup)
	}
	return st, tr, end, func() { armed.Store(true) }
}

// keepsAnswer is the Fake with Bandwidth's habit the engine relies on:
// an ended consult leg that had been answered says so
// (Observation.ConsultWasAnswered), as bandwidth.consultEnded does from
// the leg's activeTime.
type keepsAnswer struct {
	*orchestratortest.Fake
	answered sync.Map // transfer id -> true once its leg was answered
}

type keepsAnswerView struct {
	orchestrator.View
	p *keepsAnswer
}

func (v keepsAnswerView) Observe(t *orchestrator.Transfer) (orchestrator.Observation, error) {
	obs, err := v.View.Observe(t)
	if _, ok := v.p.answered.Load(t.ID); ok && err == nil && obs.Consult == orchestrator.ConsultEnded {
		obs.ConsultWasAnswered = true
	}
	return obs, err
}

func (p *keepsAnswer) Read(ctx context.Context, key string, ts []*orchestrator.Transfer) (orchestrator.View, error) {
	v, err := p.Fake.Read(ctx, key, ts)
	if err != nil {
		return v, err
	}
	return keepsAnswerView{v, p}, nil
}

// Found by review: an announced transfer (no join: the provider connects
// caller and target when the B-leg answers) whose B-leg did not show
// within the visibility window ends failed, consult_failed, the caller
// restored, verified, with a tombstone that watches for the late leg. The
// late leg appears, the target answers (the provider connects the caller
// to the target), and the caller's call ends before any reading shows it
// (Bandwidth ends B with A): the next reading shows the caller gone and B
// ended with an answer time. The tombstone's sweep never asked whether the
// outcome could still be known: it stayed "the caller restored, verified",
// and the answer was published as transfer.target_answered after
// transfer.failed. Now the outcome is unverified for good, not restored,
// and no event says the target answered after the end.
func TestLateAnsweredLegThenCallerGoneUnverifiesATombstonesOutcome(t *testing.T) {
	st, tr, end, arm := lateAnswer(t, nil)
	if !end.Outcome.CallerRestored {
		t.Fatalf("set-up: %s %+v cleanup %+v; want failed, restored, verified, with a tombstone", end.State, end.Outcome, end.Cleanup)
	}
	arm()
	end = st.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered || x.Cleanup == nil })
	if !end.Answered {
		t.Fatalf("the answer was never read: %+v", end.Outcome)
	}
	end = st.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Cleanup == nil })
	o := end.Outcome
	if o.Verified {
		t.Errorf("final outcome %s %+v: verified, although the provider connected the caller to the target "+
			"and the caller's call ended before any reading showed it (joinUnknown holds: no join, dialled, answered)", end.State, o)
	}
	if o.CallerRestored {
		t.Errorf("caller_restored stays true for a caller last connected to the target, now gone")
	}
	types := eventTypes(t, st, tr.ID)
	if i, j := slices.Index(types, orchestrator.EventFailed), slices.Index(types, orchestrator.EventTargetAnswered); i >= 0 && j > i {
		t.Errorf("events %v: transfer.target_answered after transfer.failed", types)
	}
}
