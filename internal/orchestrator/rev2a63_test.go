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

// slowRestorative is a memory store whose every save of the intent of a
// hang-up of the consult or an unhold takes longer than the step timeout:
// the engine's clock moves on by slow while it saves (a database that
// commits, but slowly, while the replica's heartbeat holds).
type slowRestorative struct {
	*memory.Store
	slow  time.Duration
	clock *manualClock
}

func (s *slowRestorative) Update(ctx context.Context, t *orchestrator.Transfer) error {
	if n := len(t.Steps); n > 0 && t.Steps[n-1].Status == orchestrator.StepStarted &&
		(t.Steps[n-1].Name == orchestrator.StepUnhold || t.Steps[n-1].Name == orchestrator.StepHangup) {
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
	st := &slowRestorative{Store: memory.New(), slow: stepTimeout + time.Second, clock: clock}
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
