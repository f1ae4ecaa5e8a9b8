package orchestrator_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
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

// untellingEnds is a Fake whose readings cannot tell why a caller's call
// ended, nor why its consult did (Observation.Undecidable: Bandwidth
// announced, a transfer's leg that has never been readable, where the
// platform ends the caller's call itself when the transfer fails).
type untellingEnds struct {
	*orchestratortest.Fake
}

func (p *untellingEnds) Read(ctx context.Context, key string, ts []*orchestrator.Transfer) (orchestrator.View, error) {
	v, err := p.Fake.Read(ctx, key, ts)
	if err != nil {
		return v, err
	}
	return untellingView{v}, nil
}

type untellingView struct{ orchestrator.View }

func (v untellingView) Observe(t *orchestrator.Transfer) (orchestrator.Observation, error) {
	obs, err := v.View.Observe(t)
	if err == nil && obs.Caller == orchestrator.CallerGone {
		obs.Undecidable, obs.EndReason = true, ""
		obs.Detail = "the caller's call ended, and why no reading can show"
	}
	return obs, err
}

// The target refuses the consult and the provider ends the caller's call
// with it, and the reading can say neither (Undecidable). Taken for the
// caller hanging up (consulting judging a caller gone without looking at
// Undecidable, a mutation no test caught), the transfer blamed the caller,
// caller_hung_up, for an end the caller did not make and no reading
// showed.
func TestACallerGoneWhereNoReadingCanSayWhyIsNotBlamedOnTheCaller(t *testing.T) {
	f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings)
	p := &untellingEnds{Fake: f}
	st := &recStore{Store: memory.New(), saved: make(chan struct{})}
	reg := prometheus.NewRegistry()
	e, err := orchestrator.New(testConfig(), st, []orchestrator.Provider{p}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{e: e, f: f, store: st, reg: reg}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	id := h.start(t, r)
	h.waitFor(t, id, inState(orchestrator.StateConsulting))
	// The consult fails, and the platform ends the caller's call with it.
	if f.HangupTarget(id) != 1 || f.HangupCaller(id) != 1 {
		t.Fatal("the consult and the caller's call did not end")
	}
	end := h.done(t, id)
	if end.Outcome == nil || end.Outcome.Reason == orchestrator.ReasonCallerHungUp {
		t.Fatalf("outcome %+v: the caller is blamed for an end no reading could explain", end.Outcome)
	}
	if end.Outcome.Verified || end.Outcome.CallerRestored {
		t.Errorf("outcome %+v, want unverified and caller_restored false: whether the caller's call ended for the transfer, no reading shows", end.Outcome)
	}
}
