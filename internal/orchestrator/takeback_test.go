package orchestrator_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// claimBeforeTakeBack lands a claim of claimer's on the stored record just
// before the first take-back of a transfer handed over (a save by taker
// of a record stored with no owner): the claim of a peer that committed
// between the taker's last look and its take-back.
type claimBeforeTakeBack struct {
	orchestrator.Store
	taker, claimer string
	claimed        atomic.Bool
}

func (s *claimBeforeTakeBack) Update(ctx context.Context, t *orchestrator.Transfer) error {
	if t.Owner == s.taker && !s.claimed.Load() {
		if cur, err := s.Store.Get(ctx, t.ID); err == nil && cur.Owner == "" && s.claimed.CompareAndSwap(false, true) {
			if _, err := s.Store.Claim(ctx, s.claimer, "", time.Now(), false, 0); err != nil {
				return err
			}
		}
	}
	return s.Store.Update(ctx, t)
}

// A peer's claim that lands between the last look of a replica shutting
// down and its take-back makes the take-back fail on the version. The
// claimer may be one that never drives the transfer (stopping itself, or
// with no account of its provider), the case the resumption rule covers
// for a claim the look saw: the take-back's conflict was taken as "the
// claimer drives it", and the caller stayed on hold.
func TestAClaimLandingJustBeforeTheTakeBackLeavesNoCallerOnHold(t *testing.T) {
	ctx := context.Background()
	store := &claimBeforeTakeBack{Store: memory.New(), taker: "a", claimer: "b"}
	fake := orchestratortest.NewFake("fake")
	a := replicaWith(t, orchestrator.Config{Owner: "a", LeaseTTL: 2 * time.Second, HandoverPatience: 20 * time.Millisecond}, store, fake)
	openAll(t, a)
	// b: a live heartbeat, and a claim that drives nothing.
	if _, err := store.Heartbeat(ctx, "b", "token-b", time.Now(), time.Hour, false); err != nil {
		t.Fatal(err)
	}
	tr := consultingOn(t, a, "1000")

	err := shutdownWithin(a)
	if !store.claimed.Load() {
		t.Fatal("no take-back was tried")
	}
	got, gerr := store.Get(ctx, tr.ID)
	if gerr != nil {
		t.Fatal(gerr)
	}
	if got.Open() {
		c, _ := fake.State(tr.ID)
		t.Fatalf("a's shutdown returned %v; the transfer is %s, owned by %q, which never drives it; the provider shows caller %d, consult %d: want the caller given back",
			err, got.State, got.Owner, c.Caller, c.Consult)
	}
	if err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	wantOutcome(t, got, orchestrator.StateFailed, orchestrator.ReasonShutdown, true)
	wantCallerSafe(t, fake, tr.ID)
}

// handoverAnswerLost writes the first save that hands a transfer over and
// answers it with an error: a commit whose answer was lost.
type handoverAnswerLost struct {
	orchestrator.Store
	lost atomic.Bool
}

func (s *handoverAnswerLost) Update(ctx context.Context, t *orchestrator.Transfer) error {
	owner := t.Owner
	err := s.Store.Update(ctx, t)
	if err == nil && owner == "" && s.lost.CompareAndSwap(false, true) {
		return errors.New("the connection ended before the commit's answer")
	}
	return err
}

// A long poll on a transfer that the replica drives waits on that
// replica's own records, which its saves publish. A replica that stops
// driving the transfer without publishing a record (a hand-over whose
// save landed with its answer lost; equally a transfer another replica
// took over) left the poll parked on a record nobody would publish again:
// the peer that took the transfer over completed it, and the poll went on
// waiting, to answer at its end with the record from before the
// hand-over, consulting.
func TestALongPollOnATransferHandedOverSeesThePeersOutcome(t *testing.T) {
	ctx := context.Background()
	store := &handoverAnswerLost{Store: memory.New()}
	fake := orchestratortest.NewFake("fake")
	a, b := handoverPair(t, store, fake, time.Minute)
	tr := consultingOn(t, a, "1000")

	parked := make(chan struct{})
	var once atomic.Bool
	polled := make(chan *orchestrator.Transfer, 1)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	go func() {
		got, err := a.Wait(wctx, tr.ID, func(x *orchestrator.Transfer) bool {
			if once.CompareAndSwap(false, true) {
				close(parked) // the poll has its first record and waits
			}
			return false
		})
		if err != nil {
			t.Error(err)
		}
		polled <- got
	}()
	<-parked

	if err := shutdownWithin(a); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if !store.lost.Load() {
		t.Fatal("no hand-over was saved")
	}
	waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "b" && saysStep(x, "resumed by b") })
	if _, err := b.Complete(ctx, tr.ID); err != nil {
		t.Fatalf("Complete through b: %v", err)
	}
	if done := waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() }); done.State != orchestrator.StateCompleted {
		t.Fatalf("b ended the transfer %s, want completed", done.State)
	}
	select {
	case got := <-polled:
		if got.State != orchestrator.StateCompleted {
			t.Fatalf("the long poll on a answered %s, want completed", got.State)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the long poll on a still waits 20 s after b completed the transfer it handed over")
	}
}

// A replica shutting down beside a peer that claims nothing (stopping
// too) waits for its hand-overs for the patience, then gives their
// callers back. It began to wait only once every transfer it drives had
// settled: one completing whose join is slow (a provider answering at its
// step timeout, a verification) held the take-back back, and the callers
// of the consults handed over stayed on hold the whole time. Were the
// completion to take the rest of the shutdown's timeout, nothing was
// taken back at all, and those callers stayed on hold with no replica
// running. The wait for the claims now begins once nothing is left that
// can be handed over.
func TestASlowCompletionDoesNotHoldBackTheTakeBack(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	fake := orchestratortest.NewFake("fake")
	a := replicaWith(t, orchestrator.Config{Owner: "a", LeaseTTL: 2 * time.Second, HandoverPatience: 20 * time.Millisecond, StepTimeout: time.Minute}, store, fake)
	openAll(t, a)
	if _, err := store.Heartbeat(ctx, "gone", "token-gone", time.Now(), time.Hour, false); err != nil {
		t.Fatal(err)
	}
	handed := consultingOn(t, a, "1000")
	joining := consultingOn(t, a, "1001")
	join := fake.Block(orchestratortest.MethodComplete)
	t.Cleanup(join.Release)
	if _, err := a.Complete(ctx, joining.ID); err != nil {
		t.Fatal(err)
	}
	<-join.Entered() // the join is on its way, and answers when released

	errA := make(chan error, 1)
	go func() { errA <- shutdownWithin(a) }()
	got := waitFor(t, a, handed.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	wantOutcome(t, got, orchestrator.StateFailed, orchestrator.ReasonShutdown, true)
	wantCallerSafe(t, fake, handed.ID)

	join.Release()
	if err := <-errA; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	done, err := store.Get(ctx, joining.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != orchestrator.StateCompleted {
		t.Fatalf("the transfer joining as the shutdown began ended %s, want completed", done.State)
	}
}

// cutAtFirstLook ends a shutdown's context at its first look for the
// claims: the first read of a transfer stored with no owner once armed.
type cutAtFirstLook struct {
	orchestrator.Store
	armed atomic.Bool
	cut   context.CancelFunc
}

func (s *cutAtFirstLook) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	t, err := s.Store.Get(ctx, id)
	if err == nil && t.Owner == "" && s.armed.CompareAndSwap(true, false) {
		s.cut()
	}
	return t, err
}

// A shutdown cut while it looks for the claims reports what it leaves:
// the transfers handed over that nobody claimed, and, now that the looks
// run beside them, those still completing here.
func TestAShutdownCutWhileItLooksForTheClaimsCountsWhatIsStillRunning(t *testing.T) {
	ctx := context.Background()
	store := &cutAtFirstLook{Store: memory.New()}
	fake := orchestratortest.NewFake("fake")
	a := replicaWith(t, orchestrator.Config{Owner: "a", LeaseTTL: 2 * time.Second, HandoverPatience: time.Minute, StepTimeout: time.Minute}, store, fake)
	openAll(t, a)
	if _, err := store.Heartbeat(ctx, "gone", "token-gone", time.Now(), time.Hour, false); err != nil {
		t.Fatal(err)
	}
	consultingOn(t, a, "1000")
	joining := consultingOn(t, a, "1001")
	join := fake.Block(orchestratortest.MethodComplete)
	t.Cleanup(join.Release)
	if _, err := a.Complete(ctx, joining.ID); err != nil {
		t.Fatal(err)
	}
	<-join.Entered()

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	store.cut = cancel
	store.armed.Store(true)
	err := a.Shutdown(sctx)
	if store.armed.Load() {
		t.Fatal("the shutdown never looked for the claims")
	}
	if err == nil || !strings.Contains(err.Error(), "with 2 transfers") {
		t.Fatalf("Shutdown: %v; want 2 transfers left: the one handed over and the one joining", err)
	}
}
