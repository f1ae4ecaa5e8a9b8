package orchestrator_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// A join that cannot be known: the caller's call ends after a join was
// sent and before any reading showed whether it took. Every reading from
// then on shows the same ended call, whichever it was, so the outcome is
// final and unverified.

// testEngine is an engine of cfg on st driving p, shut down when the test
// ends; reg, when not nil, holds its metrics.
func testEngine(t *testing.T, cfg orchestrator.Config, st orchestrator.Store, p orchestrator.Provider,
	reg *prometheus.Registry) *orchestrator.Engine {
	t.Helper()
	return loggingEngine(t, cfg, st, p, reg, zerolog.Nop())
}

// loggingEngine is testEngine logging to log.
func loggingEngine(t *testing.T, cfg orchestrator.Config, st orchestrator.Store, p orchestrator.Provider,
	reg *prometheus.Registry, log zerolog.Logger) *orchestrator.Engine {
	t.Helper()
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	e, err := orchestrator.New(cfg, st, []orchestrator.Provider{p}, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
	})
	return e
}

// fastConfig is the engine configuration of these tests: quick polls, a
// short visibility window, and the given patience and tombstone.
func fastConfig(verify, tombstone time.Duration) orchestrator.Config {
	return orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		StepTimeout: time.Second, VerifyTimeout: verify, VisibilityWindow: stormWindowShort, TombstoneTTL: tombstone}
}

func unknowableEngine(t *testing.T, f *orchestratortest.Fake) (*orchestrator.Engine, *recStore) {
	t.Helper()
	st := &recStore{Store: memory.New(), saved: make(chan struct{})}
	return testEngine(t, fastConfig(200*time.Millisecond, stormWindowShort), st, f, nil), st
}

// afterJoinWindow scripts the Fake for a test about what a reading shows
// once a join could have applied: from the join on, every reading fails
// (the provider is unreadable) until the join is three visibility windows
// (stormWindowShort) old; then, once, then runs before the next reading is
// taken.
func afterJoinWindow(f *orchestratortest.Fake, then func(id string)) {
	var mu sync.Mutex
	var joinAt time.Time
	var done bool
	f.Before(orchestratortest.MethodComplete, func(orchestratortest.Record) {
		mu.Lock()
		joinAt = time.Now()
		mu.Unlock()
	})
	unavailable := orchestrator.E("fake.Observe", orchestrator.KindProviderUnavailable, errors.New("HTTP 503"))
	f.Before(orchestratortest.MethodObserve, func(r orchestratortest.Record) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case joinAt.IsZero() || done:
		case time.Since(joinAt) < 3*stormWindowShort:
			f.FailOn(orchestratortest.MethodObserve, unavailable, 1)
		default:
			done = true
			then(r.TransferID)
		}
	})
}

func eventTypes(t *testing.T, st *recStore, id string) []orchestrator.EventType {
	t.Helper()
	evs, err := st.Events(context.Background(), orchestrator.EventFilter{Tenant: orchestrator.DefaultTenant, TransferID: id, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var types []orchestrator.EventType
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	return types
}

// The provider accepts the join and then cannot be read: past the
// verification patience the transfer ends failed, unverified, with an
// obligation. Meanwhile the join lands and the caller then hangs up. When
// the provider can be read again it shows the caller's call ended, which
// it would also show had the join never landed: the sweeper ends the
// obligation (transfer.outcome_verified: the outcome is final) and leaves
// the outcome unverified. Before, it verified a failure while the caller
// had been with the target.
func TestSweeperLeavesAJoinItCannotKnowUnverified(t *testing.T) {
	f := orchestratortest.NewFake("fake").Defer(orchestratortest.MethodComplete, 1)
	unavailable := orchestrator.E("fake.Observe", orchestrator.KindProviderUnavailable, errors.New("HTTP 503"))
	f.Before(orchestratortest.MethodComplete, func(orchestratortest.Record) {
		f.FailOn(orchestratortest.MethodObserve, unavailable, -1) // the outage begins as the join is sent
	})
	e, st := unknowableEngine(t, f)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := st.waitSaved(t, tr.ID, func(tr *orchestrator.Transfer) bool { return tr.State.Terminal() })
	if end.State != orchestrator.StateFailed || end.Outcome.Verified || end.Cleanup == nil {
		t.Fatalf("during the outage: %s %+v cleanup %+v; want failed, unverified, an obligation", end.State, end.Outcome, end.Cleanup)
	}
	if f.ApplyDeferred(tr.ID) != 1 {
		t.Fatal("the join was not waiting to land")
	}
	if c, _ := f.State(tr.ID); c.Caller != orchestrator.CallerTransferred {
		t.Fatalf("the join landed but the caller is in state %d", c.Caller)
	}
	f.HangupCaller(tr.ID)
	f.ClearFaults() // the outage ends
	end = st.waitSaved(t, tr.ID, func(tr *orchestrator.Transfer) bool { return tr.Cleanup == nil })
	o := end.Outcome
	if end.State != orchestrator.StateFailed || o.Verified || o.CallerRestored || !strings.Contains(o.Detail, "cannot be verified") {
		t.Errorf("after the outage: %s %+v; want failed, not restored, unverified for good", end.State, o)
	}
	if !hasStep(end, orchestrator.StepVerify) {
		t.Error("no verify step records the end of the obligation")
	}
	if types := eventTypes(t, st, tr.ID); !slices.Contains(types, orchestrator.EventOutcomeVerified) {
		t.Errorf("events %v: no transfer.outcome_verified says the outcome is final", types)
	}
	if c, _ := f.State(tr.ID); c.Consult == orchestrator.ConsultRinging || c.Consult == orchestrator.ConsultAnswered {
		t.Error("the consult leg is left up")
	}
}

// The other side: the join was sent, and a reading taken once it could
// have applied shows the caller still held: it did not take (and it never
// will: the provider accepted it and did nothing). The caller then hangs
// up as the recovery gives them back. That ended call is the whole truth:
// failed, verified.
func TestJoinSeenNotToTakeThenCallerGoneIsVerified(t *testing.T) {
	f := orchestratortest.NewFake("fake").IgnoreComplete(true)
	f.Before(orchestratortest.MethodUnhold, func(r orchestratortest.Record) { f.HangupCaller(r.TransferID) })
	e, st := unknowableEngine(t, f)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := st.waitSaved(t, tr.ID, func(tr *orchestrator.Transfer) bool { return tr.State.Terminal() && tr.Cleanup == nil })
	if !end.Seen.NotJoined {
		t.Error("no reading was taken as showing the join did not take")
	}
	if end.State != orchestrator.StateFailed || !end.Outcome.Verified || end.Outcome.CallerRestored {
		t.Errorf("%s %+v; want failed, not restored, verified", end.State, end.Outcome)
	}
	if c, _ := f.State(tr.ID); c.Caller != orchestrator.CallerGone {
		t.Errorf("the caller is in state %d, want gone", c.Caller)
	}
}
