package orchestrator_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// Found by review of the fix above. A compensation is sent again only on a
// reading that started a visibility window after its request was
// answered; but the watcher wakes a transfer only when a reading shows
// something new, and a compensation the provider accepted and lost
// leaves every later reading unchanged. So a transfer must look again
// when such a reading can exist, or ask for the next one.

// A hang-up sent before the consult was ever seen, and lost; the dial
// lands while it is on its way, so the first reading to show the consult
// started before the hang-up was answered. That reading is no proof, and
// the recovery asked for no newer one: the hang-up was sent again only
// when its visibility-window timer fired, hundreds of readings later.
// Now the next reading decides.
func TestHangupSentUnseenIsRedoneOnTheNextReadingAfterItsAnswer(t *testing.T) {
	cfg := testConfig()
	cfg.VisibilityWindow = 500 * time.Millisecond // many polls long
	cfg.VerifyTimeout = 20 * time.Second
	cfg.TombstoneTTL = 30 * time.Second
	h := newHarness(t, cfg)
	h.f.SetTarget(orchestratortest.TargetRings)
	h.f.Defer(dial, 1)   // the dial lands late: the consult is not there yet
	h.f.Defer(hangup, 1) // the first hang-up is accepted and lost
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	id := h.start(t, r)
	h.waitFor(t, id, inState(orchestrator.StateConsulting))

	gate := h.f.Block(hangup)
	var mu sync.Mutex
	reads, readsAtRedo, hangups := 0, 0, 0
	readsAtRelease := 0
	h.f.Before(hangup, func(orchestratortest.Record) {
		mu.Lock()
		defer mu.Unlock()
		if hangups++; hangups == 2 {
			readsAtRedo = reads
		}
	})
	early := make(chan struct{})
	unheld := make(chan struct{})
	var unheldOnce sync.Once
	h.f.Before(unhold, func(orchestratortest.Record) { unheldOnce.Do(func() { close(unheld) }) })
	h.f.Before(observe, func(rec orchestratortest.Record) {
		select {
		case <-gate.Entered():
		default:
			return
		}
		mu.Lock()
		reads++
		n := reads
		mu.Unlock()
		switch n {
		case 1:
			// Started while the hang-up is on its way: the dial lands
			// now, and this reading is the first to show the consult.
			h.f.ApplyDeferred(rec.TransferID)
		case 2:
			// The first reading is done. This one, started before the
			// hang-up was answered too, is slow: it answers once the
			// recovery has judged by the first and sent the unhold.
			close(early)
			<-unheld
		}
	})
	if _, err := h.e.Cancel(context.Background(), id); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	<-gate.Entered()
	<-early
	mu.Lock()
	readsAtRelease = reads
	mu.Unlock()
	gate.Release()

	tr := h.done(t, id)
	wantOutcome(t, tr, orchestrator.StateCancelled, orchestrator.ReasonCancelled, true)
	wantCallerSafe(t, h.f, id)
	mu.Lock()
	defer mu.Unlock()
	if hangups < 2 {
		t.Fatalf("%d hang-ups: the lost hang-up was never sent again", hangups)
	}
	// The reading under way at the release started before the answer;
	// the one after it decides. A few more may start while the redo is
	// being decided, not a window's worth of polls.
	if n := readsAtRedo - readsAtRelease; n > 5 {
		t.Errorf("the hang-up was sent again after %d readings that started after the first was answered and showed the consult up", n)
	}
}

// A tombstone's late consult leg appears, and the hang-up the sweeper
// sends for it is lost: it was sent again only at the tombstone's Until
// (TombstoneTTL, two minutes by default), the leg ringing at the target
// meanwhile. Here the tombstone lasts an hour, and the leg appears once
// every wake-up the recovery scheduled has passed (a window after it
// ended: the watcher's polls see to it).
func TestTombstoneRedoesALostHangupOnceAReadingCanShowIt(t *testing.T) {
	cfg := testConfig()
	cfg.VerifyTimeout = 4 * cfg.VisibilityWindow
	cfg.TombstoneTTL = time.Hour
	h := newHarness(t, cfg)
	h.f.SetTarget(orchestratortest.TargetRings)
	h.f.Defer(dial, 1) // the consult never appears while the transfer runs
	var mu sync.Mutex
	var ended time.Time
	hangups := 0
	h.f.Before(observe, func(rec orchestratortest.Record) {
		mu.Lock()
		due := !ended.IsZero() && time.Since(ended) > 2*cfg.VisibilityWindow
		if due {
			ended = time.Time{}
		}
		mu.Unlock()
		if due {
			h.f.Defer(hangup, 1) // the next hang-up is accepted and lost
			h.f.ApplyDeferred(rec.TransferID)
		}
	})
	h.f.Before(hangup, func(orchestratortest.Record) { mu.Lock(); hangups++; mu.Unlock() })
	id := h.start(t, request("fake", "1000"))
	end := h.store.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.State.Terminal() })
	if end.Cleanup == nil || !end.Outcome.Verified || !end.Outcome.CallerRestored {
		t.Fatalf("ended %s %+v cleanup %+v; want a verified, restored outcome with a tombstone", end.State, end.Outcome, end.Cleanup)
	}
	mu.Lock()
	before := hangups
	ended = time.Now()
	mu.Unlock()
	eventually(t, "the late leg's lost hang-up sent again", func() bool { mu.Lock(); defer mu.Unlock(); return hangups >= before+2 })
	eventually(t, "the late leg hung up", func() bool {
		c, _ := h.f.State(id)
		return c.Consult != orchestrator.ConsultRinging && c.Consult != orchestrator.ConsultAnswered
	})
}

// An unverified outcome (the provider could not be read when the recovery
// ended) with its caller still held: the sweeper's unhold is lost too. It
// was sent again only at the obligation's Until (here an hour: the
// tombstone of a consult never seen), the caller held meanwhile.
func TestUnverifiedSweepRedoesALostUnholdOnceAReadingCanShowIt(t *testing.T) {
	cfg := testConfig()
	cfg.VerifyTimeout = 4 * cfg.VisibilityWindow
	cfg.TombstoneTTL = time.Hour
	h := newHarness(t, cfg)
	h.f.SetTarget(orchestratortest.TargetRings)
	h.f.Defer(dial, 1)   // the consult never appears: the outcome keeps a tombstone
	h.f.Defer(unhold, 2) // the recovery's unhold and the sweeper's first are lost
	unavailable := orchestrator.E("fake.Observe", orchestrator.KindProviderUnavailable, errors.New("HTTP 503"))
	var mu sync.Mutex
	unholds := 0
	h.f.Before(unhold, func(orchestratortest.Record) {
		mu.Lock()
		defer mu.Unlock()
		if unholds == 0 {
			// The provider cannot be read from the recovery's unhold on:
			// the recovery ends unverified, with an obligation.
			h.f.FailOn(observe, unavailable, -1)
		}
		unholds++
	})
	// Readable again (the caller shown held) once every wake-up the
	// recovery scheduled has passed: a window after it ended.
	var ended time.Time
	h.f.Before(observe, func(orchestratortest.Record) {
		mu.Lock()
		due := !ended.IsZero() && time.Since(ended) > 2*cfg.VisibilityWindow
		if due {
			ended = time.Time{}
		}
		mu.Unlock()
		if due {
			h.f.ClearFaults()
		}
	})
	id := h.start(t, request("fake", "1000"))
	end := h.store.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.State.Terminal() })
	if end.Cleanup == nil || end.Outcome.Verified {
		t.Fatalf("ended %s %+v cleanup %+v; want an unverified outcome with an obligation", end.State, end.Outcome, end.Cleanup)
	}
	if c, _ := h.f.State(id); c.Caller != orchestrator.CallerHeld {
		t.Fatalf("the caller is in state %d, want held (the recovery's unhold was lost)", c.Caller)
	}
	mu.Lock()
	ended = time.Now()
	mu.Unlock()
	eventually(t, "the sweeper's lost unhold sent again", func() bool { mu.Lock(); defer mu.Unlock(); return unholds >= 3 })
	eventually(t, "the caller given back", func() bool {
		c, _ := h.f.State(id)
		return c.Caller == orchestrator.CallerConnected
	})
}
