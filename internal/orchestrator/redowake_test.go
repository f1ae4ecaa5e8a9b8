package orchestrator_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
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
// Now the next reading decides. The window here is an hour, so that only
// a reading can make the hang-up go again within the test's life: the
// test asks when, by what happens, not by the clock (a count of readings
// in between depended on how fast the machine ran the unhold sent first).
func TestHangupSentUnseenIsRedoneOnTheNextReadingAfterItsAnswer(t *testing.T) {
	cfg := testConfig()
	cfg.VisibilityWindow = time.Hour
	cfg.VerifyTimeout = 2 * time.Hour
	cfg.TombstoneTTL = 2 * time.Hour
	h := newHarness(t, cfg)
	h.f.SetTarget(orchestratortest.TargetRings)
	h.f.Defer(dial, 1)   // the dial lands late: the consult is not there yet
	h.f.Defer(hangup, 1) // the first hang-up is accepted and lost
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	id := h.start(t, r)
	h.waitFor(t, id, inState(orchestrator.StateConsulting))

	var mu sync.Mutex
	var reads atomic.Int64
	hangups := 0
	h.f.Before(hangup, func(orchestratortest.Record) { mu.Lock(); hangups++; mu.Unlock() })
	unheld := make(chan struct{})
	var unheldOnce sync.Once
	h.f.Before(unhold, func(orchestratortest.Record) { unheldOnce.Do(func() { close(unheld) }) })
	// The first reading to show the consult started while the hang-up was
	// on its way: the dial lands as it starts. The one after it, started
	// before the hang-up was answered too, is slow: it answers once the
	// recovery has judged by the first and sent the unhold.
	cancelWithEarlyReading(t, h, id, func(rec orchestratortest.Record) { h.f.ApplyDeferred(rec.TransferID) }, unheld, &reads)

	// A window of an hour: before the fix the hang-up went again only
	// then, and this gives up after ten seconds.
	eventually(t, "the lost hang-up sent again on a reading started after its answer", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return hangups >= 2
	})
	eventually(t, "the caller back and the consult gone", func() bool {
		c, _ := h.f.State(id)
		return c.Caller == orchestrator.CallerConnected && c.Consult != orchestrator.ConsultRinging && c.Consult != orchestrator.ConsultAnswered
	})
	// The recovery would judge its compensations only an hour on: the
	// test ends it by a shutdown out of time, leaving it to a next owner.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h.stopped = true
	if err := h.e.Shutdown(ctx); err == nil {
		t.Error("Shutdown returned nil although the recovery was still waiting out its window")
	}
}

// A tombstone's late consult leg appears, and the hang-up the sweeper
// sends for it is lost: it was sent again only at the tombstone's Until
// (TombstoneTTL, two minutes by default), the leg ringing at the target
// meanwhile. Here the tombstone lasts an hour, and the leg appears once
// every wake-up the recovery scheduled has passed (a window after it
// ended: the watcher's polls see to it).
func TestTombstoneRedoesALostHangupOnceAReadingCanShowIt(t *testing.T) {
	h, cfg := hourLongTombstone(t)
	var mu sync.Mutex
	hangups := 0
	ended := afterTheRecoverysTimers(h, cfg, func(id string) {
		h.f.Defer(hangup, 1) // the next hang-up is accepted and lost
		h.f.ApplyDeferred(id)
	})
	h.f.Before(hangup, func(orchestratortest.Record) { mu.Lock(); hangups++; mu.Unlock() })
	id := h.start(t, request("fake", "1000"))
	end := h.store.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.State.Terminal() })
	if end.Cleanup == nil || !end.Outcome.Verified || !end.Outcome.CallerRestored {
		t.Fatalf("ended %s %+v cleanup %+v; want a verified, restored outcome with a tombstone", end.State, end.Outcome, end.Cleanup)
	}
	mu.Lock()
	before := hangups
	mu.Unlock()
	ended()
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
	h, cfg := hourLongTombstone(t)
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
	// Readable again (the caller shown held).
	ended := afterTheRecoverysTimers(h, cfg, func(string) { h.f.ClearFaults() })
	id := h.start(t, request("fake", "1000"))
	end := h.store.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.State.Terminal() })
	if end.Cleanup == nil || end.Outcome.Verified {
		t.Fatalf("ended %s %+v cleanup %+v; want an unverified outcome with an obligation", end.State, end.Outcome, end.Cleanup)
	}
	if c, _ := h.f.State(id); c.Caller != orchestrator.CallerHeld {
		t.Fatalf("the caller is in state %d, want held (the recovery's unhold was lost)", c.Caller)
	}
	ended()
	eventually(t, "the sweeper's lost unhold sent again", func() bool { mu.Lock(); defer mu.Unlock(); return unholds >= 3 })
	eventually(t, "the caller given back", func() bool {
		c, _ := h.f.State(id)
		return c.Caller == orchestrator.CallerConnected
	})
}

// afterTheRecoverysTimers runs fn once, as the first reading of a transfer
// starts two visibility windows after ended is called (the transfer's
// recovery having ended): every wake-up the recovery scheduled, each at
// most a window away, has passed by then, so that the sweeper's own
// schedule decides what follows. The watcher's polls see to the time.
func afterTheRecoverysTimers(h *harness, cfg orchestrator.Config, fn func(id string)) (ended func()) {
	var mu sync.Mutex
	var at time.Time
	h.f.Before(observe, func(rec orchestratortest.Record) {
		mu.Lock()
		due := !at.IsZero() && time.Since(at) > 2*cfg.VisibilityWindow
		if due {
			at = time.Time{}
		}
		mu.Unlock()
		if due {
			fn(rec.TransferID)
		}
	})
	return func() { mu.Lock(); at = time.Now(); mu.Unlock() }
}

// hourLongTombstone is a harness whose transfer's consult never appears
// while it runs (its dial lands only when applied), so that its outcome
// keeps a tombstone, of an hour; its recovery gives up after four
// visibility windows.
func hourLongTombstone(t *testing.T) (*harness, orchestrator.Config) {
	cfg := testConfig()
	cfg.VerifyTimeout = 4 * cfg.VisibilityWindow
	cfg.TombstoneTTL = time.Hour
	h := newHarness(t, cfg)
	h.f.SetTarget(orchestratortest.TargetRings)
	h.f.Defer(dial, 1)
	return h, cfg
}
