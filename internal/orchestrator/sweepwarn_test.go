package orchestrator_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// An unverified outcome's obligation that the provider holds open says
// so in the log, in every life of the process that sweeps it. A storm
// case once stayed unverified across 23 restarted processes, each of
// which logged only "resuming transfer" about it: nothing told whether
// its readings failed or showed something that kept the obligation open.
func TestSweepSaysWhyTheObligationStaysOpen(t *testing.T) {
	unavailable := orchestrator.E("fake.Observe", orchestrator.KindProviderUnavailable, errors.New("HTTP 503"))

	t.Run("the provider cannot be read", func(t *testing.T) {
		f := orchestratortest.NewFake("fake")
		f.Before(orchestratortest.MethodDial, func(orchestratortest.Record) {
			f.FailOn(orchestratortest.MethodObserve, unavailable, -1) // the outage begins with the dial
		})
		st := &recStore{Store: memory.New(), saved: make(chan struct{})}
		cfg := fastConfig(200*time.Millisecond, stormWindowShort)
		first := testEngine(t, cfg, st, f, nil)
		endsUnverified(t, first, st, "during the outage")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := first.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		// The next life of the process finds the outage still on.
		const unread = "the provider cannot be read"
		watch := watchLog(unread)
		second := loggingEngine(t, cfg, st, f, nil, zerolog.New(watch))
		if err := second.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
		watch.await(t, unread)
	})

	t.Run("readings show a leg of ours alive", func(t *testing.T) {
		f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings)
		// The consult rings on, and every hang-up of it fails.
		f.FailOn(orchestratortest.MethodHangupConsult, unavailable, -1)
		const open = "the cleanup obligation is still open"
		watch := watchLog(open)
		st := &recStore{Store: memory.New(), saved: make(chan struct{})}
		e := loggingEngine(t, fastConfig(200*time.Millisecond, stormWindowShort), st, f, nil, zerolog.New(watch))
		tr := endsUnverified(t, e, st, "with the consult still ringing")
		watch.await(t, open)
		if c, _ := f.State(tr.ID); c.Consult != orchestrator.ConsultRinging {
			t.Fatalf("the consult is %v, want still ringing: the warning must come while the obligation is open", c.Consult)
		}
	})
}

// endsUnverified starts a transfer with a short consult timeout and waits
// for its end, which must be an unverified outcome with an obligation;
// what names the provider's trouble in the failure message.
func endsUnverified(t *testing.T, e *orchestrator.Engine, st *recStore, what string) *orchestrator.Transfer {
	t.Helper()
	r := request("fake", "1000")
	r.ConsultTimeout = time.Second
	tr, err := e.Start(context.Background(), r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := st.waitSaved(t, tr.ID, func(tr *orchestrator.Transfer) bool { return tr.State.Terminal() })
	if end.Outcome.Verified || end.Cleanup == nil {
		t.Fatalf("%s: %s %+v cleanup %+v; want unverified, an obligation", what, end.State, end.Outcome, end.Cleanup)
	}
	return end
}
