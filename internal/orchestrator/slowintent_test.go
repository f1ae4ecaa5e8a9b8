package orchestrator_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// slowIntents is a memory store whose every save of the intent of a step
// named in steps takes longer than the step timeout: the engine's clock
// moves on by slow while it saves (a database that commits, but slowly,
// while the replica's heartbeat holds).
type slowIntents struct {
	*memory.Store
	steps []string
	slow  time.Duration
	clock *manualClock
}

func (s *slowIntents) Update(ctx context.Context, t *orchestrator.Transfer) error {
	if n := len(t.Steps); n > 0 && t.Steps[n-1].Status == orchestrator.StepStarted && slices.Contains(s.steps, t.Steps[n-1].Name) {
		s.clock.Advance(s.slow)
	}
	return s.Store.Update(ctx, t)
}

// refusedForItsSave counts the steps named name not sent because their
// intent took longer than the step timeout to save.
func refusedForItsSave(t *orchestrator.Transfer, name string) int {
	n := 0
	for _, s := range t.Steps {
		if s.Name == name && strings.Contains(s.Detail, "took longer than the step timeout") {
			n++
		}
	}
	return n
}

// Found by the second review of the sixty-third pass: the bound put on a
// step's requests (its start plus the step timeout, its intent's save
// included) held the restorative steps too, which are sent even when
// their intent cannot be saved. With a store whose commits took longer
// than the step timeout (and a heartbeat that still renewed), every
// unhold and every hang-up of the consult was refused as its intent
// took too long to save, tried again, refused again: the caller stayed
// held for as long as the store was slow, a client's cancel could not
// give the caller back either, and the recovery ended unverified at
// its patience with the caller on hold. A restorative step has the step
// timeout from its intent's save, as before the pass: a process that
// resumes the transfer sends an interrupted unhold or hang-up again and
// judges from its own (stepInterrupted).
func TestARestorativeStepIsSentWhateverItsIntentTookToSave(t *testing.T) {
	const stepTimeout = time.Minute
	clock := newManualClock()
	clock.Run() // a step tried again waits its back-off
	f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetBusy)
	st := &slowIntents{Store: memory.New(), steps: []string{orchestrator.StepHangup, orchestrator.StepUnhold}, slow: stepTimeout + time.Second, clock: clock}
	e := testEngine(t, orchestrator.Config{
		PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		StepTimeout: stepTimeout, VerifyTimeout: time.Hour, VisibilityWindow: 50 * time.Millisecond,
		TombstoneTTL: 100 * time.Millisecond, Clock: clock.Now,
	}, st, f, nil)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := waitFor(t, e, tr.ID, func(x *orchestrator.Transfer) bool {
		return x.State.Terminal() || refusedForItsSave(x, orchestrator.StepUnhold) >= 2 || refusedForItsSave(x, orchestrator.StepHangup) >= 2
	})
	if n, m := refusedForItsSave(end, orchestrator.StepHangup), refusedForItsSave(end, orchestrator.StepUnhold); n+m > 0 {
		t.Errorf("%d hang-ups and %d unholds not sent because their intent took longer than the step timeout to save", n, m)
	}
	if acts := f.ActionsFor(tr.ID); !slices.Contains(acts, unhold) || !slices.Contains(acts, hangup) {
		t.Errorf("actions %q; want the hang-up of the consult and the unhold sent", acts)
	}
	if end.State != orchestrator.StateFailed || end.Outcome == nil || !end.Outcome.CallerRestored {
		t.Errorf("%s %+v; want failed, the caller restored", end.State, end.Outcome)
	}
}

// Found by the second review of the sixty-third pass: a dial or a join
// whose intent took longer than the step timeout to save is not sent (the
// bound above), and was tried again without a patience. With a store
// whose commits took longer than that every time (they went through, the
// heartbeat with them), the caller, held, stayed held for as long as the
// store was slow: a dial never sent, or a join never sent from
// completing, where a cancel no longer counts. Refused so a second time
// past the step's patience, the step is given up: the transfer fails
// (internal; the saves go through, so a process resuming it finds it
// failed) and the recovery, whose unhold and hang-up are sent whatever
// their saves take, gives the caller back.
func TestAStepWhoseIntentIsAlwaysTooSlowToSaveIsGivenUp(t *testing.T) {
	for _, step := range []string{orchestrator.StepDial, orchestrator.StepTransfer} {
		t.Run(step, func(t *testing.T) {
			const stepTimeout = time.Minute
			clock := newManualClock()
			clock.Run()
			f := orchestratortest.NewFake("fake")
			st := &slowIntents{Store: memory.New(), steps: []string{step}, slow: stepTimeout + time.Second, clock: clock}
			e := testEngine(t, orchestrator.Config{
				PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
				StepTimeout: stepTimeout, VerifyTimeout: time.Hour, VisibilityWindow: 50 * time.Millisecond,
				TombstoneTTL: 100 * time.Millisecond, Clock: clock.Now,
			}, st, f, nil)
			tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			end := waitFor(t, e, tr.ID, func(x *orchestrator.Transfer) bool {
				return x.State.Terminal() || refusedForItsSave(x, step) >= 4
			})
			if !end.State.Terminal() {
				t.Fatalf("%s, its %s refused %d times for its intent's save; want given up, the caller given back",
					end.State, step, refusedForItsSave(end, step))
			}
			if end.State != orchestrator.StateFailed || end.Outcome == nil || end.Outcome.Reason != orchestrator.ReasonInternal || !end.Outcome.CallerRestored {
				t.Errorf("%s %+v; want failed, internal, the caller restored", end.State, end.Outcome)
			}
			acts := f.ActionsFor(tr.ID)
			if !slices.Contains(acts, unhold) {
				t.Errorf("actions %q; want the caller unheld", acts)
			}
			if m := map[string]string{orchestrator.StepDial: dial, orchestrator.StepTransfer: complete}[step]; slices.Contains(acts, m) {
				t.Errorf("actions %q; the %s refused for its save went out", acts, step)
			}
		})
	}
}
