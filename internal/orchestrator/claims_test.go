package orchestrator_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// clockedReplica builds an engine of owner on st and p whose clock is
// clock's, with a visibility window of window, and shuts it down at once
// (stopAtOnce) when the test ends, clock running by then: its windows (of
// an hour) would not pass before the shutdown's deadline. Its consults
// last a day: the jumps of the clock end none.
func clockedReplica(t *testing.T, owner string, clock *manualClock, window time.Duration, st orchestrator.Store, p orchestrator.Provider, crash func(*orchestrator.Transfer, string)) *orchestrator.Engine {
	t.Helper()
	e, err := orchestrator.New(orchestrator.Config{Owner: owner, LeaseTTL: 2 * time.Second, Clock: clock.Now,
		PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond, VerifyTimeout: time.Hour,
		VisibilityWindow: window, StepTimeout: time.Second, ConsultTimeout: 24 * time.Hour, MaxConsultTimeout: 48 * time.Hour, HandoverPatience: time.Minute, CrashPoint: crash},
		st, []orchestrator.Provider{p}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		clock.Run()
		stopAtOnce(e)
	})
	return e
}

// joinedWithin reports whether the join of id was sent before prov's
// account was read twenty times more (time stands still: a wait for a
// visibility window never ends).
func joinedWithin(t *testing.T, f *orchestratortest.Fake, prov *accountView, id string) bool {
	t.Helper()
	n := prov.reads.Load()
	eventually(t, "a join sent, or twenty readings taken", func() bool {
		return slices.Contains(f.ActionsFor(id), complete) || prov.reads.Load() >= n+20
	})
	return slices.Contains(f.ActionsFor(id), complete)
}

// crashedConsultOn has a replica a, on st and f, put a transfer into its
// consult and die at its next step boundary. a is never Opened: its
// heartbeat, written here, is never renewed, and has run out on clock
// (advanced a minute) when this returns. The replicas built before it
// shut down after it is let go.
func crashedConsultOn(t *testing.T, clock *manualClock, st orchestrator.Store, f *orchestratortest.Fake) *orchestrator.Transfer {
	t.Helper()
	dead := &freeze{release: make(chan struct{})}
	a := clockedReplica(t, "a", clock, 50*time.Millisecond, st, f, dead.point)
	t.Cleanup(func() { close(dead.release) }) // before a shuts down
	if _, err := st.Heartbeat(context.Background(), "a", "", clock.Now(), 30*time.Second, true); err != nil {
		t.Fatal(err)
	}
	tr := consultingOn(t, a, "1000")
	dead.arm() // a stops at its next step boundary
	clock.Advance(time.Minute)
	return tr
}

// wokenUntilEnded wakes id on e until it ends, and returns it ended: a
// jump of the clock also lapses e's lease until its next heartbeat, and
// nothing drives the transfer meanwhile but a wake.
func wokenUntilEnded(t *testing.T, e *orchestrator.Engine, id, what string) *orchestrator.Transfer {
	t.Helper()
	eventually(t, what, func() bool {
		orchestrator.Wake(e, id)
		x, err := e.Get(context.Background(), id)
		return err == nil && x.State.Terminal()
	})
	return waitFor(t, e, id, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
}

// completesOnceTheWindowPassed jumps clock past e's window of an hour,
// wants the join of id sent only then, and the transfer completed after
// the join's own window.
func completesOnceTheWindowPassed(t *testing.T, clock *manualClock, e *orchestrator.Engine, f *orchestratortest.Fake, id string) {
	t.Helper()
	clock.Advance(time.Hour)
	eventually(t, "the join, once the window passed", func() bool {
		orchestrator.Wake(e, id)
		return slices.Contains(f.ActionsFor(id), complete)
	})
	clock.Advance(2 * time.Hour) // the join's own window
	if done := wokenUntilEnded(t, e, id, "the transfer completed"); done.State != orchestrator.StateCompleted {
		t.Fatalf("the transfer ended %s (%+v), want completed", done.State, done.Outcome)
	}
}

// Found by the third look at this pass's claims: a transfer handed over at
// a graceful shutdown (saved with no owner) was resumed as one taken from
// a crashed replica, its join and the report of its completion held a
// visibility window after the takeover for a hang-up the replica before
// might have sent unrecorded, although the hand-over's save recorded all
// it sent. The claim now says which records had no owner (Unowned), and
// those are joined at once. Taken from a crashed replica, the join still
// waits.
func TestAHandedOverTransferJoinsWithoutWaitingTheWindow(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	f := orchestratortest.NewFake("fake")
	prov := &accountView{Fake: f}
	// Time runs until the hand-over, and then stands still for both
	// replicas: a wait for a visibility window after the adoption never
	// ends while it does.
	clock := newManualClock()
	clock.Run()
	b := clockedReplica(t, "b", clock, 50*time.Millisecond, st, prov, nil)
	a := clockedReplica(t, "a", clock, 50*time.Millisecond, st, f, nil)
	openAll(t, a, b)
	// A consult of b's own, so that its watcher reads the account all
	// along.
	consultingOn(t, b, "2000")

	tr := consultingOn(t, a, "1000")
	clock.Freeze()
	if err := shutdownWithin(a); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "b" && saysStep(x, "resumed by b") })
	if _, err := b.Complete(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	if !joinedWithin(t, f, prov, tr.ID) {
		t.Fatalf("actions %q: the join of a handed-over transfer waited a visibility window after the claim", f.ActionsFor(tr.ID))
	}
	clock.Run() // the join's own window
	done := waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if done.State != orchestrator.StateCompleted || done.Outcome == nil || !done.Outcome.Verified {
		t.Fatalf("the transfer ended %s (%+v), want completed, verified", done.State, done.Outcome)
	}
}

// The other side of TestAHandedOverTransferJoinsWithoutWaitingTheWindow:
// a transfer taken from a replica that stopped without handing it over
// (it may have hung the consult up blind) waits a visibility window after
// the claim, and one handed over by a replica that had resumed it from
// such a one a moment before waits one after that resumption: the
// hand-over's save records what that replica sent, not what the one
// before it did.
func TestATransferTakenFromACrashStillWaitsTheWindow(t *testing.T) {
	for _, handed := range []bool{false, true} {
		name := "crashed"
		if handed {
			name = "handed over after a crash"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st := memory.New()
			f := orchestratortest.NewFake("fake")
			prov := &accountView{Fake: f}
			clock := newManualClock()
			clock.Run()
			// c's window is an hour: only a jump of the clock ends it.
			c := clockedReplica(t, "c", clock, time.Hour, st, prov, nil)
			tr := crashedConsultOn(t, clock, st, f)
			if handed {
				b := clockedReplica(t, "b", clock, 50*time.Millisecond, st, f, nil)
				openAll(t, b)
				waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "b" && saysStep(x, "resumed by b") })
				openAll(t, c)
				if err := shutdownWithin(b); err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
			} else {
				openAll(t, c)
			}
			// A consult of c's own, so that its watcher reads the account
			// all along.
			consultingOn(t, c, "2000")
			waitFor(t, c, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "c" && saysStep(x, "resumed by c") })
			if _, err := c.Complete(ctx, tr.ID); err != nil {
				t.Fatal(err)
			}
			if joinedWithin(t, f, prov, tr.ID) {
				t.Fatalf("actions %q: the join was sent while a hang-up of a crashed replica could still land", f.ActionsFor(tr.ID))
			}
			completesOnceTheWindowPassed(t, clock, c, f, tr.ID)
		})
	}
}

// gatedUpdates holds every Update, once held, until release is closed, so
// that an entry a save would drop stays for the test to see.
type gatedUpdates struct {
	orchestrator.Store
	held    atomic.Bool
	release chan struct{}
}

func (s *gatedUpdates) Update(ctx context.Context, t *orchestrator.Transfer) error {
	if s.held.Load() {
		<-s.release
	}
	return s.Store.Update(ctx, t)
}

// Found by the third look at this pass's claims: a process another took
// its name over from (superseded) still adopted, at its look for orphans,
// the name's transfers the newer process drives: each entry was dropped
// at its first save, refused for the token, and nothing was sent, but
// meanwhile it counted them in flight (and their callers on hold) beside
// the newer process. A superseded process now adopts nothing.
func TestASupersededProcessAdoptsNoOrphans(t *testing.T) {
	ctx := context.Background()
	st := memory.New()
	fake := orchestratortest.NewFake("fake")
	gated := &gatedUpdates{Store: st, release: make(chan struct{})}
	first := replica(t, "x", gated, fake, nil)
	t.Cleanup(func() { close(gated.release) }) // before first shuts down
	if err := first.Open(ctx); err != nil {
		t.Fatal(err)
	}
	second := replica(t, "x", st, fake, nil)
	if err := second.Open(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first.Superseded():
	case <-time.After(20 * time.Second):
		t.Fatal("the first process never found that the second took its name over")
	}
	tr := consultingOn(t, second, "1000")
	gated.held.Store(true) // first's saves wait from here

	orchestrator.AdoptOrphans(ctx, first)
	if first.Drives(tr.ID) {
		t.Errorf("the superseded process adopted %s, which the process that took its name over drives", tr.ID)
	}
}

// skippingClaims leaves transfer skip out of the claims of a process's
// own transfers, as PostgreSQL's SKIP LOCKED does while another
// transaction holds its row (a peer's PutSignal at that instant). The row
// is left as it was.
type skippingClaims struct {
	orchestrator.Store
	skip string
}

func (s *skippingClaims) Claim(ctx context.Context, owner, token string, now time.Time, own bool, limit int) ([]*orchestrator.Transfer, error) {
	if !own {
		return s.Store.Claim(ctx, owner, token, now, own, limit)
	}
	ts, err := s.Store.Claim(ctx, owner, token, now, own, limit)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(ts, func(t *orchestrator.Transfer) bool { return t.ID == s.skip }), nil
}

// Found by the third look at this pass's claims: a process restarted
// under its name after a crash (the heartbeat it took had run out, so no
// look at afterTakeover) claims its transfers at Open, and its claim
// skips a row another transaction holds at that instant. Such a transfer
// waited for the look for orphans, a minute, its caller perhaps held.
// Open now looks for them at once.
func TestOpenDrivesTheOwnTransfersItsClaimSkipped(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		st := memory.New()
		openSkipping(t, st, func(id string) (orchestrator.Store, func()) { return &skippingClaims{Store: st, skip: id}, func() {} })
	})
	// The row held for real, by a transaction of the test's.
	t.Run("postgres", func(t *testing.T) {
		url := postgresSchema(t)
		st := openPostgresAt(t, url)
		openSkipping(t, st, func(id string) (orchestrator.Store, func()) {
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `SELECT 1 FROM transfers WHERE id = $1 FOR UPDATE`, id); err != nil {
				t.Fatal(err)
			}
			return st, func() { _ = conn.Close(ctx) } // its transaction with it
		})
	})
}

// openSkipping runs TestOpenDrivesTheOwnTransfersItsClaimSkipped on st,
// the restarted process's store made by holding(id of the transfer whose
// row is held), which also gives what lets the row go.
func openSkipping(t *testing.T, st orchestrator.Store, holding func(id string) (orchestrator.Store, func())) {
	ctx := context.Background()
	fake := orchestratortest.NewFake("fake")
	dead := &freeze{release: make(chan struct{})}
	// The first process is never Opened: its heartbeat, written here, has
	// run out when the second starts.
	first := replica(t, "x", st, fake, dead.point)
	t.Cleanup(func() { close(dead.release) }) // before first shuts down
	if _, err := st.Heartbeat(ctx, "x", "", time.Now(), time.Hour, true); err != nil {
		t.Fatal(err)
	}
	skipped := consultingOn(t, first, "1000")
	claimed := consultingOn(t, first, "1001")
	dead.arm()
	if _, err := st.Heartbeat(ctx, "x", "", time.Now().Add(-time.Hour), time.Nanosecond, true); err != nil {
		t.Fatal(err)
	}

	held, release := holding(skipped.ID)
	second := replicaWith(t, orchestrator.Config{Owner: "x", LeaseTTL: 2 * time.Second, OrphanInterval: time.Hour}, held, fake)
	err := second.Open(ctx)
	release()
	if err != nil {
		t.Fatal(err)
	}
	if !second.Drives(claimed.ID) {
		t.Fatalf("the restarted process does not drive %s, which its claim took", claimed.ID)
	}
	if !second.Drives(skipped.ID) {
		t.Errorf("the restarted process does not drive %s, which its claim skipped: it waits for the look for orphans", skipped.ID)
	}
}
