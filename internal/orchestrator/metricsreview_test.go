package orchestrator_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// Found by a review of the metrics operators page on. The gauges of what
// a replica drives must equal what its records say, and a counter count
// an outcome once the store has it, whatever replica saved it.

// histogramCount returns how many observations the histogram name with
// exactly the given labels holds, 0 when the series does not exist.
func histogramCount(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) uint64 {
	t.Helper()
	return series(t, reg, name, labels).GetHistogram().GetSampleCount()
}

// refusingStore answers a save of a terminal record with a version
// conflict, as the store does when another replica claimed the transfer
// while this one was deciding its end.
type refusingStore struct{ *memory.Store }

func (s *refusingStore) Update(ctx context.Context, t *orchestrator.Transfer) error {
	if t.State.Terminal() {
		return orchestrator.ErrVersionConflict
	}
	return s.Store.Update(ctx, t)
}

// An end whose save another replica's claim refused never happened here:
// the claimer decides the transfer's end, and counts it. enter counted the
// outcome, its unverified flag and the caller's time on hold before the
// save, so the replica that lost the transfer counted an end the store
// never held, and TransferdUnverifiedOutcomes warned of an outcome that
// the new owner may well verify.
func TestAnEndAnotherReplicaTookIsNotCounted(t *testing.T) {
	st := &refusingStore{Store: memory.New()}
	f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings)
	reg := prometheus.NewRegistry()
	e := testEngine(t, testConfig(), st, f, reg)
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	tr, err := e.Start(context.Background(), r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, tr.ID, inState(orchestrator.StateConsulting))
	fake := map[string]string{"provider": "fake"}
	eventually(t, "a reading showing the caller held", func() bool {
		return metric(t, reg, "transferd_callers_on_hold", fake) == 1
	})
	// Unreadable from now on: the recovery ends unverified.
	f.FailOn(observe, fakeErr(observe, orchestrator.KindProviderUnavailable), -1)
	if _, err := e.Cancel(context.Background(), tr.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the transfer let go after its end's save was refused", func() bool {
		return len(e.Running()) == 0
	})
	if cur, err := st.Get(context.Background(), tr.ID); err != nil || cur.State.Terminal() {
		t.Fatalf("stored %+v (%v): set-up wants the end never saved", cur, err)
	}
	cancelled := map[string]string{"provider": "fake", "outcome": "cancelled", "reason": "cancelled"}
	if n := metric(t, reg, "transferd_transfers_total", cancelled); n != 0 {
		t.Errorf("transferd_transfers_total%v = %v, want 0: the store never held that end", cancelled, n)
	}
	if n := metric(t, reg, "transferd_outcomes_unverified_total", fake); n != 0 {
		t.Errorf("transferd_outcomes_unverified_total = %v, want 0: the store never held that outcome", n)
	}
	if n := histogramCount(t, reg, "transferd_caller_hold_duration_seconds", fake); n != 0 {
		t.Errorf("transferd_caller_hold_duration_seconds counted %d, want 0", n)
	}
	for _, g := range []string{"transferd_transfers_in_flight", "transferd_cleanups_pending", "transferd_callers_on_hold"} {
		if v := metric(t, reg, g, fake); v != 0 {
			t.Errorf("%s = %v after the transfer was let go, want 0", g, v)
		}
	}
}

// A join the provider could not be read about ends the transfer failed,
// unverified; the sweeper then sees the caller with the target and
// corrects it to completed. The caller's time on hold was observed at both
// ends, the second from the hold to the correction (the sweeper's
// patience, minutes in production, while the caller talked to the target):
// it inflated the hold-time quantiles operators watch. It is observed
// once, at the first end. The outcome counter counts both ends (the
// README says so), and the unverified one once.
func TestACorrectedOutcomeObservesTheHoldOnce(t *testing.T) {
	h := newHarness(t, testConfig())
	h.f.Defer(complete, 1).Before(complete, func(orchestratortest.Record) {
		h.f.FailOn(observe, fakeErr(observe, orchestrator.KindProviderUnavailable), -1)
	})
	id := h.start(t, request("fake", "1000"))
	tr := h.done(t, id)
	if tr.State != orchestrator.StateFailed || tr.Outcome.Verified || tr.Cleanup == nil {
		t.Fatalf("state %s outcome %+v cleanup %+v: set-up wants failed, unverified, with an obligation", tr.State, tr.Outcome, tr.Cleanup)
	}
	fake := map[string]string{"provider": "fake"}
	if v := metric(t, h.reg, "transferd_cleanups_pending", fake); v != 1 {
		t.Errorf("cleanups_pending = %v with the obligation open, want 1", v)
	}
	h.f.ApplyDeferred(id)
	h.f.ClearFaults()
	tr = h.store.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.Cleanup == nil })
	if tr.State != orchestrator.StateCompleted || !tr.Outcome.Verified {
		t.Fatalf("state %s outcome %+v: set-up wants corrected to a verified completed", tr.State, tr.Outcome)
	}
	eventually(t, "the corrected transfer let go", func() bool { return len(h.e.Running()) == 0 })
	if n := histogramCount(t, h.reg, "transferd_caller_hold_duration_seconds", fake); n != 1 {
		t.Errorf("transferd_caller_hold_duration_seconds counted %d, want 1: one caller, held once", n)
	}
	for _, c := range []struct {
		outcome, reason string
	}{{"failed", string(orchestrator.ReasonProviderUnavailable)}, {"completed", string(orchestrator.ReasonTransferred)}} {
		l := map[string]string{"provider": "fake", "outcome": c.outcome, "reason": c.reason}
		if n := metric(t, h.reg, "transferd_transfers_total", l); n != 1 {
			t.Errorf("transferd_transfers_total%v = %v, want 1", l, n)
		}
	}
	if n := metric(t, h.reg, "transferd_outcomes_unverified_total", fake); n != 1 {
		t.Errorf("transferd_outcomes_unverified_total = %v, want 1", n)
	}
	if v := metric(t, h.reg, "transferd_cleanups_pending", fake); v != 0 {
		t.Errorf("cleanups_pending = %v once discharged, want 0", v)
	}
}

// A tombstone watches for a consult leg that never appeared, after an
// outcome the provider verified: the caller is back with the agent. It was
// counted in transferd_cleanups_pending, which the README describes, and
// TransferdCallersAwaitingCleanup pages on, as callers not confirmed safe:
// a TRANSFERD_TOMBSTONE_TTL of 10 minutes or more, or a provider
// unreadable for that long after a busy target, paged for callers
// verified safe. It counts in transfers_in_flight only.
func TestATombstoneIsNoCallerAwaitingCleanup(t *testing.T) {
	clock := newManualClock()
	h := newHarness(t, tombstoneConfig(clock))
	h.f.SetTarget(orchestratortest.TargetVanishes)
	fake := map[string]string{"provider": "fake"}
	var mu sync.Mutex
	var pending, inFlight float64
	tr := tombstoned(t, h, func(string) {
		mu.Lock()
		defer mu.Unlock()
		pending = metric(t, h.reg, "transferd_cleanups_pending", fake)
		inFlight = metric(t, h.reg, "transferd_transfers_in_flight", fake)
	})
	wantTombstoneDischarged(t, h, clock, tr.ID)
	mu.Lock()
	defer mu.Unlock()
	if pending != 0 || inFlight != 1 {
		t.Errorf("during the tombstone: cleanups_pending %v, in_flight %v; want 0 and 1", pending, inFlight)
	}
}

// A replica cut off from the store keeps its entry of a transfer; another
// claims the transfer and ends it unverified, with an obligation, and is
// cut off in turn; the first claims it back and goes on from the claimed
// record (Engine.reclaim). Its entry had never counted an obligation, and
// the claimed one was not counted: transferd_cleanups_pending showed none
// of this replica's while the caller was not confirmed safe, and
// TransferdCallersAwaitingCleanup could not fire.
func TestAnObligationClaimedBackIsCounted(t *testing.T) {
	ctx := context.Background()
	aLog, aReg := &logLines{}, prometheus.NewRegistry()
	p := claimedAcrossAPartition(t, 100*time.Millisecond, zerolog.New(aLog), aReg)
	mem, fake, a, b, aStore, bStore, tr := p.mem, p.fake, p.a, p.b, p.aStore, p.bStore, p.tr
	fake.FailOn(observe, fakeErr(observe, orchestrator.KindProviderUnavailable), -1)
	if _, err := b.Cancel(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	ended := waitFor(t, b, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if ended.Outcome == nil || ended.Outcome.Verified || ended.Cleanup == nil {
		t.Fatalf("b ended the transfer %s with outcome %+v cleanup %+v: set-up wants unverified with an obligation",
			ended.State, ended.Outcome, ended.Cleanup)
	}
	aStore.unlisted.Store(true) // or a, back, lets its entry go (lookForTakeovers)
	bStore.cut.Store(true)
	aStore.cut.Store(false)
	eventually(t, "a claimed it back into the entry it still held", func() bool {
		return aLog.has("claimed back a transfer this replica still held", tr.ID)
	})
	fakeLbl := map[string]string{"provider": "fake"}
	eventually(t, "a counting the obligation it claimed back", func() bool {
		return metric(t, aReg, "transferd_cleanups_pending", fakeLbl) == 1
	})
	fake.ClearFaults()
	a.Notify(tr.ID)
	eventually(t, "the obligation discharged and taken off a's gauges", func() bool {
		return metric(t, aReg, "transferd_cleanups_pending", fakeLbl) == 0 &&
			metric(t, aReg, "transferd_transfers_in_flight", fakeLbl) == 0
	})
	if cur, err := mem.Get(ctx, tr.ID); err != nil || cur.Cleanup != nil || cur.Owner != "a" {
		t.Fatalf("stored %+v (%v): want discharged by a", cur, err)
	}
}

// A replica back from a partition counted the transfers another replica
// had claimed meanwhile until its next save of each, whose version
// conflict told it they were gone: a manual consult waiting for the
// agent, a caller on hold, made none for as long as the consult lasted,
// and transferd_transfers_in_flight and transferd_callers_on_hold, summed
// over replicas, counted that caller twice. Once its heartbeat is renewed
// after the lapse, it lists what the store says it owns and reads the
// record of each transfer left out: one another replica owns leaves its
// gauges at once. The new owner drives it on.
func TestATransferClaimedAcrossAPartitionLeavesTheGauges(t *testing.T) {
	ctx := context.Background()
	aLog, aReg := &logLines{}, prometheus.NewRegistry()
	p := claimedAcrossAPartition(t, 10*time.Second, zerolog.New(aLog), aReg)
	fakeLbl := map[string]string{"provider": "fake"}
	eventually(t, "a reading at a showing the caller held", func() bool {
		return metric(t, aReg, "transferd_callers_on_hold", fakeLbl) == 1
	})
	if v := metric(t, aReg, "transferd_transfers_in_flight", fakeLbl); v != 1 {
		t.Fatalf("a's transfers_in_flight = %v while cut off, want 1: it cannot know the transfer was claimed", v)
	}
	p.aStore.cut.Store(false)
	eventually(t, "a letting go of the transfer b claimed", func() bool {
		return !slices.Contains(p.a.Running(), p.tr.ID)
	})
	if !aLog.has("another replica took the transfer over while this one's heartbeat had lapsed", p.tr.ID) {
		t.Error("a let the transfer go, but not for b's claim")
	}
	for _, g := range []string{"transferd_transfers_in_flight", "transferd_callers_on_hold"} {
		if v := metric(t, aReg, g, fakeLbl); v != 0 {
			t.Errorf("a's %s = %v once it learnt b owns the transfer, want 0", g, v)
		}
	}
	if !slices.Contains(p.b.Running(), p.tr.ID) {
		t.Fatalf("b runs %v: want the transfer b's", p.b.Running())
	}
	// b drives it on: the agent's completion reaches the target.
	if _, err := p.b.Complete(ctx, p.tr.ID); err != nil {
		t.Fatal(err)
	}
	final := waitFor(t, p.b, p.tr.ID, func(*orchestrator.Transfer) bool { return false })
	if final.State != orchestrator.StateCompleted || final.Owner != "b" {
		t.Fatalf("transfer %s, owner %s: want completed by b", final.State, final.Owner)
	}
}

// listedAccounts is a tenants file's accounts: tenant acme has an account
// of each provider in names, and the Accounts can list their tenants.
type listedAccounts struct {
	mu    sync.Mutex
	names []string
}

func (a *listedAccounts) Provider(string, string) (orchestrator.Provider, bool) { return nil, false }

func (a *listedAccounts) Names(tenant string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if tenant != "acme" {
		return nil
	}
	return slices.Clone(a.names)
}

func (a *listedAccounts) Tenants() []string { return []string{"acme"} }

func (a *listedAccounts) add(name string) {
	a.mu.Lock()
	a.names = append(a.names, name)
	a.mu.Unlock()
}

// seriesExists reports whether reg has the series name with exactly the
// given labels.
func seriesExists(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) bool {
	t.Helper()
	return series(t, reg, name, labels) != nil
}

// The series alerts watch existed, at 0, only for the default accounts'
// providers (those passed to New). A deployment whose accounts are all in
// a tenants file had none until something was counted: its first
// unverified outcome made transferd_outcomes_unverified_total appear at
// 1, and Prometheus' increase() counts nothing on a series that starts
// there, so TransferdUnverifiedOutcomes never warned of the first
// unverified outcome of a replica (often the only one). They now exist
// for every provider a tenant has an account of, from the start and
// from the reload that brings one; a look for orphans keeps them. So does
// transferd_transfers_started_total, which the dashboard rates and lists
// the providers of: it appeared at 1, with each provider's first transfer
// after a start, which rate() did not count.
func TestWatchedSeriesExistForTheTenantsProviders(t *testing.T) {
	accounts := &listedAccounts{names: []string{"netsapiens"}}
	reg := prometheus.NewRegistry()
	e, err := orchestrator.New(orchestrator.Config{Accounts: accounts}, memory.New(), nil, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	watched := []string{"transferd_outcomes_unverified_total", "transferd_cleanups_pending", "transferd_callers_on_hold",
		"transferd_transfers_in_flight", "transferd_transfers_undriven", "transferd_transfers_started_total"}
	want := func(when string, providers ...string) {
		t.Helper()
		for _, name := range watched {
			for _, p := range providers {
				if !seriesExists(t, reg, name, map[string]string{"provider": p}) {
					t.Errorf("%s: no series %s{provider=%q}", when, name, p)
				}
			}
		}
		for _, p := range providers {
			for _, end := range [][2]orchestrator.State{{orchestrator.StateCompleted, "transferred"},
				{orchestrator.StateCancelled, "cancelled"}, {orchestrator.StateFailed, "no_answer"}, {orchestrator.StateFailed, "shutdown"}} {
				if !seriesExists(t, reg, "transferd_transfers_total", map[string]string{"provider": p, "outcome": string(end[0]), "reason": string(end[1])}) {
					t.Errorf("%s: no series transferd_transfers_total{provider=%q,outcome=%q,reason=%q}", when, p, end[0], end[1])
				}
			}
			// Only ends a transfer can reach: it completes only transferred.
			if seriesExists(t, reg, "transferd_transfers_total", map[string]string{"provider": p, "outcome": "completed", "reason": "no_answer"}) {
				t.Errorf("%s: a series for an end no transfer reaches, completed with no_answer", when)
			}
		}
	}
	want("after New", "netsapiens")
	accounts.add("bandwidth")
	e.AccountsChanged()
	want("after a reload that brought an account", "netsapiens", "bandwidth")
	if !orchestrator.AdoptOrphans(context.Background(), e) {
		t.Fatal("the look for orphans could not read the store")
	}
	want("after a look for orphans", "netsapiens", "bandwidth")
}
