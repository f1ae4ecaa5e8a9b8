package orchestrator_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// handedTwiceAfterACrash has replica b take a transfer from a crash, the
// clock jump by jump (none: 0), b hand it over to c and c, at once, to d;
// every window is an hour, and a consult of c's and d's own keeps their
// watchers reading the account. c hands over once it has seen the consult
// live. It returns d, the fake, the account d
// reads it through, the clock and the transfer, once d has claimed it.
func handedTwiceAfterACrash(t *testing.T, jump time.Duration) (*orchestrator.Engine, *orchestratortest.Fake, *accountView, *manualClock, *orchestrator.Transfer) {
	t.Helper()
	st := memory.New()
	f := orchestratortest.NewFake("fake")
	clock := newManualClock()
	clock.Run()
	cProv, dProv := &accountView{Fake: f}, &accountView{Fake: f}
	c := clockedReplica(t, "c", clock, time.Hour, st, cProv, nil)
	d := clockedReplica(t, "d", clock, time.Hour, st, dProv, nil)
	tr := crashedConsultOn(t, clock, st, f)
	b := clockedReplica(t, "b", clock, time.Hour, st, f, nil)
	openAll(t, b)
	waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "b" && saysStep(x, "resumed by b") })
	if jump > 0 {
		clock.Advance(jump)
		// The jump lapsed b's heartbeat: c, opened before b renews it,
		// would take the transfer from b as from a crash.
		eventually(t, "b's heartbeat renewed after the jump", func() bool {
			n, err := st.Peers(context.Background(), "c", clock.Now())
			return err == nil && n == 1
		})
	}
	openAll(t, c)
	consultingOn(t, c, "2000")
	if err := shutdownWithin(b); err != nil {
		t.Fatalf("Shutdown b: %v", err)
	}
	waitFor(t, c, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "c" && saysStep(x, "resumed by c") })
	eventually(t, "a reading by c of the consult live", func() bool {
		orchestrator.Wake(c, tr.ID)
		return !orchestrator.SeenLive(c, tr.ID).IsZero()
	})
	openAll(t, d)
	consultingOn(t, d, "3000")
	if err := shutdownWithin(c); err != nil {
		t.Fatalf("Shutdown c: %v", err)
	}
	got := waitFor(t, d, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "d" && saysStep(x, "resumed by d") })
	if n := countSteps(got, "handed over"); n != 2 {
		t.Fatalf("steps %+v: %d hand-overs, want b's and c's", got.Steps, n)
	}
	return d, f, dProv, clock, tr
}

// countSteps is how many of tr's steps have a detail containing s.
func countSteps(tr *orchestrator.Transfer, s string) int {
	n := 0
	for _, st := range tr.Steps {
		if strings.Contains(st.Detail, s) {
			n++
		}
	}
	return n
}

// The sixty-sixth pass's engine review left it noted, measured by the
// sixty-seventh's: after two hand-overs in a row, the first by a replica
// that took the transfer from a crash, the last replica waited a window
// from the resumption of the replica between (c), not from the takeover
// (b) where the doubt began: longer by the time c claimed the transfer
// after b took it (here two hours, the clock jumped before b's hand-over:
// its join waited an hour it need not). c took it from b's hand-over,
// which recorded all b sent, and recorded all it sent itself before its
// own: no request of c's went out unrecorded. c's hand-over now passes on
// the adoption it waited from, and d joins at once.
func TestASecondHandOverAfterATakeoverWaitsFromTheTakeover(t *testing.T) {
	d, f, prov, clock, tr := handedTwiceAfterACrash(t, 2*time.Hour)
	if _, err := d.Complete(context.Background(), tr.ID); err != nil {
		t.Fatal(err)
	}
	if !joinedWithin(t, f, prov, tr.ID) {
		t.Fatalf("actions %q: the join waited a window from c's resumption, passed since b's takeover", f.ActionsFor(tr.ID))
	}
	clock.Advance(2 * time.Hour) // the join's own window
	if done := wokenUntilEnded(t, d, tr.ID, "the transfer completed"); done.State != orchestrator.StateCompleted {
		t.Fatalf("the transfer ended %s (%+v), want completed", done.State, done.Outcome)
	}
}

// The other side: the same two hand-overs before b's window passed. A
// hang-up the crashed replica sent unrecorded may land up to a window
// after b's takeover: d's join waits for it, and goes once it has passed.
func TestASecondHandOverWithinTheTakeoversWindowStillWaits(t *testing.T) {
	d, f, prov, clock, tr := handedTwiceAfterACrash(t, 0)
	if _, err := d.Complete(context.Background(), tr.ID); err != nil {
		t.Fatal(err)
	}
	if joinedWithin(t, f, prov, tr.ID) {
		t.Fatalf("actions %q: the join went out within a window of b's takeover", f.ActionsFor(tr.ID))
	}
	completesOnceTheWindowPassed(t, clock, d, f, tr.ID)
}

// The consult's side of TestASecondHandOverAfterATakeoverWaitsFromTheTakeover:
// c saw the consult live after its claim, two hours after b's takeover,
// and passed it on; judged against b's takeover, that reading outlived any
// hang-up sent unrecorded before it, and the target who hangs up once d
// claimed the transfer hung up (target_hung_up). Judged against c's
// resumption, as before, it was consult_failed.
func TestATargetWhoHangsUpAfterTwoHandOversPastTheTakeoversWindowHungUp(t *testing.T) {
	d, f, _, _, tr := handedTwiceAfterACrash(t, 2*time.Hour)
	f.HangupTarget(tr.ID)
	end := wokenUntilEnded(t, d, tr.ID, "the transfer ended")
	if end.Outcome == nil || end.Outcome.Reason != orchestrator.ReasonTargetHungUp || !end.Outcome.CallerRestored {
		t.Fatalf("%s %+v; want target_hung_up, the caller restored", end.State, end.Outcome)
	}
}

// Its other side: within b's window, what c saw proves nothing of a
// hang-up the crashed replica sent unrecorded, and the consult's end is
// not blamed on the target.
func TestATargetGoneAfterTwoHandOversWithinTheTakeoversWindowIsNotBlamed(t *testing.T) {
	d, f, _, clock, tr := handedTwiceAfterACrash(t, 0)
	f.HangupTarget(tr.ID)
	clock.Advance(2 * time.Hour) // d's window, for the recovery's readings
	end := wokenUntilEnded(t, d, tr.ID, "the transfer ended")
	if end.Outcome == nil || end.Outcome.Reason != orchestrator.ReasonConsultFailed || !end.Outcome.CallerRestored {
		t.Fatalf("%s %+v; want consult_failed, the caller restored", end.State, end.Outcome)
	}
}

// blindAccount is an accountView whose readings fail once blind is set,
// as a provider that cannot be read does: the replica reading through it
// sees nothing of its consults from then on.
type blindAccount struct {
	accountView
	blind atomic.Bool
}

func (p *blindAccount) Read(ctx context.Context, key string, ts []*orchestrator.Transfer) (orchestrator.View, error) {
	if p.blind.Load() {
		return nil, orchestrator.E("blind.Read", orchestrator.KindProviderUnavailable, errors.New("the provider cannot be read"))
	}
	return p.accountView.Read(ctx, key, ts)
}

// Mutant M2 of the sixty-sixth pass's second engine review, equivalent
// only while a chain of hand-overs was judged from the last resumption,
// killed by the sixty-seventh pass's second engine review: the replica
// claiming a hand-over keeps the reading the note passes on, and passes
// it on in turn. b takes the transfer from a crash, sees the consult live
// two hours after (its window an hour), and hands over to c; c cannot
// read the provider, so no reading of its own shows the consult, and
// hands over to d; the target hangs up once c's hand-over is saved,
// before d reads. b's reading, judged against b's takeover, outlived any
// hang-up sent unrecorded before it: the target hung up (target_hung_up).
// Without b's reading kept by c, c's hand-over named none, and the end
// was blamed on nobody (consult_failed).
func TestAConsultSeenLiveBeforeTwoHandOversIsEndedByTheTarget(t *testing.T) {
	f := orchestratortest.NewFake("fake")
	var mu sync.Mutex
	handovers := map[string]int{}
	st := &handOverHook{Store: memory.New(), handed: func(id string) {
		mu.Lock()
		defer mu.Unlock()
		if handovers[id]++; handovers[id] == 2 {
			f.HangupTarget(id) // c's hand-over, the second of the transfer
		}
	}}
	clock := newManualClock()
	clock.Run()
	cProv, dProv := &blindAccount{accountView: accountView{Fake: f}}, &accountView{Fake: f}
	c := clockedReplica(t, "c", clock, time.Hour, st, cProv, nil)
	d := clockedReplica(t, "d", clock, time.Hour, st, dProv, nil)
	tr := crashedConsultOn(t, clock, st, f)
	b := clockedReplica(t, "b", clock, time.Hour, st, f, nil)
	openAll(t, b)
	waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "b" && saysStep(x, "resumed by b") })
	clock.Advance(2 * time.Hour) // b's window
	eventually(t, "a reading by b of the consult live once its window passed", func() bool {
		orchestrator.Wake(b, tr.ID)
		return orchestrator.Outlived(b, tr.ID)
	})
	// The jump lapsed b's heartbeat: c, opened before b renews it, would
	// take the transfer from b as from a crash.
	eventually(t, "b's heartbeat renewed after the jump", func() bool {
		n, err := st.Peers(context.Background(), "c", clock.Now())
		return err == nil && n == 1
	})
	openAll(t, c)
	consultingOn(t, c, "2000")
	cProv.blind.Store(true)
	if err := shutdownWithin(b); err != nil {
		t.Fatalf("Shutdown b: %v", err)
	}
	waitFor(t, c, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "c" && saysStep(x, "resumed by c") })
	openAll(t, d)
	consultingOn(t, d, "3000")
	if err := shutdownWithin(c); err != nil {
		t.Fatalf("Shutdown c: %v", err)
	}
	got := waitFor(t, d, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "d" && saysStep(x, "resumed by d") })
	if n := countSteps(got, "handed over"); n != 2 {
		t.Fatalf("steps %+v: %d hand-overs, want b's and c's", got.Steps, n)
	}
	end := wokenUntilEnded(t, d, tr.ID, "the transfer ended")
	if end.Outcome == nil || end.Outcome.Reason != orchestrator.ReasonTargetHungUp || !end.Outcome.CallerRestored {
		t.Fatalf("%s %+v; want target_hung_up, the caller restored", end.State, end.Outcome)
	}
}
