package orchestrator_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/store/sqlite"
)

// handoverStores are the stores the hand-over tests run on: the shared
// store of the replicas (PostgreSQL, where replicas run, when
// TRANSFERD_TEST_DATABASE_URL is set).
var handoverStores = map[string]func(t *testing.T) orchestrator.Store{
	"memory": func(*testing.T) orchestrator.Store { return memory.New() },
	"sqlite": func(t *testing.T) orchestrator.Store {
		s, err := sqlite.Open(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	},
	"postgres": openPostgres,
}

// shutdownWithin shuts e down with a generous timeout and returns its
// error.
func shutdownWithin(e *orchestrator.Engine) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return e.Shutdown(ctx)
}

// saysStep reports whether tr has a step whose detail contains s.
func saysStep(tr *orchestrator.Transfer, s string) bool {
	return slices.ContainsFunc(tr.Steps, func(st orchestrator.Step) bool { return strings.Contains(st.Detail, s) })
}

// openAll opens every engine.
func openAll(t *testing.T, engines ...*orchestrator.Engine) {
	t.Helper()
	for _, e := range engines {
		if err := e.Open(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// handoverPair builds and opens replicas a and b on store and fake, with
// a short lease and patience as the hand-over's.
func handoverPair(t *testing.T, store orchestrator.Store, fake *orchestratortest.Fake, patience time.Duration) (a, b *orchestrator.Engine) {
	t.Helper()
	cfg := func(owner string) orchestrator.Config {
		return orchestrator.Config{Owner: owner, LeaseTTL: 2 * time.Second, HandoverPatience: patience}
	}
	a, b = replicaWith(t, cfg("a"), store, fake), replicaWith(t, cfg("b"), store, fake)
	openAll(t, a, b)
	return a, b
}

// consultingOn starts a manual transfer of user's call on e and returns
// it once its target has answered.
func consultingOn(t *testing.T, e *orchestrator.Engine, user string) *orchestrator.Transfer {
	t.Helper()
	r := request("fake", user)
	r.Completion = orchestrator.CompletionManual
	tr, err := e.Start(context.Background(), r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, e, tr.ID, answered)
	return tr
}

// A replica shutting down while another runs hands its consult over: the
// consult goes on with the caller held, the other replica claims the
// transfer and completes it when the client says so. Nothing is hung up
// and the caller is never taken off hold: a rolling restart loses no
// transfer in progress.
func TestAShutdownHandsAConsultOverToAPeer(t *testing.T) {
	for name, open := range handoverStores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			store := open(t)
			fake := orchestratortest.NewFake("fake")
			// The peer's claims come every LeaseTTL/4; the patience is
			// long enough that only a claim ends the wait.
			a, b := handoverPair(t, store, fake, time.Minute)
			tr := consultingOn(t, a, "1000")

			if err := shutdownWithin(a); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			got, err := store.Get(ctx, tr.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Owner != "b" || got.State != orchestrator.StateConsulting {
				t.Fatalf("after a's shutdown the transfer is %s, owned by %q; want consulting, b's", got.State, got.Owner)
			}
			if !saysStep(got, "handed over") {
				t.Errorf("no step says the transfer was handed over: %+v", got.Steps)
			}
			if c, _ := fake.State(tr.ID); c.Caller != orchestrator.CallerHeld || c.Consult != orchestrator.ConsultAnswered {
				t.Fatalf("after a's shutdown the provider shows caller %d, consult %d; want held and answered", c.Caller, c.Consult)
			}

			waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "b" && saysStep(x, "resumed by b") })
			if _, err := b.Complete(ctx, tr.ID); err != nil {
				t.Fatalf("Complete through b: %v", err)
			}
			done := waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
			if done.State != orchestrator.StateCompleted {
				t.Fatalf("the transfer ended %s (%+v), want completed", done.State, done.Outcome)
			}
			if got, want := fake.ActionsFor(tr.ID), []string{locate, hold, dial, complete}; !slices.Equal(got, want) {
				t.Fatalf("actions %q, want %q: nothing given back at the shutdown", got, want)
			}
		})
	}
}

// A replica that finds a peer's heartbeat live at its shutdown, but no
// peer that claims what it hands over (the peer is shutting down too, or
// has stopped since its last heartbeat), takes the transfers back after
// HandoverPatience and gives their callers back as a shutdown without a
// peer does.
func TestAShutdownTakesBackWhatNoPeerClaims(t *testing.T) {
	for name, open := range handoverStores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			store := open(t)
			fake := orchestratortest.NewFake("fake")
			a := replicaWith(t, orchestrator.Config{Owner: "a", LeaseTTL: 2 * time.Second, HandoverPatience: 20 * time.Millisecond}, store, fake)
			openAll(t, a)
			// A peer that beat an hour's heartbeat and claims nothing.
			if _, err := store.Heartbeat(ctx, "gone", "token-gone", time.Now(), time.Hour, false); err != nil {
				t.Fatal(err)
			}
			tr := consultingOn(t, a, "1000")

			if err := shutdownWithin(a); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			got, err := store.Get(ctx, tr.ID)
			if err != nil {
				t.Fatal(err)
			}
			wantOutcome(t, got, orchestrator.StateFailed, orchestrator.ReasonShutdown, true)
			if got.Owner != "a" || !saysStep(got, "handed over") {
				t.Errorf("owner %q, steps %+v: want a's again, after a step saying it was handed over", got.Owner, got.Steps)
			}
			if got, want := fake.ActionsFor(tr.ID), []string{locate, hold, dial, hangup, unhold}; !slices.Equal(got, want) {
				t.Fatalf("actions %q, want %q", got, want)
			}
			wantCallerSafe(t, fake, tr.ID)
		})
	}
}

// Two replicas shut down at once, each seeing the other's heartbeat live
// as it begins: each may hand its transfers to the other, which takes
// nothing while it stops, so each takes back what nobody claimed. Every
// caller is given back and no transfer is left open, whichever order the
// two go in.
func TestTwoReplicasShuttingDownAtOnceGiveEveryCallerBack(t *testing.T) {
	for name, open := range handoverStores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			store := open(t)
			fake := orchestratortest.NewFake("fake")
			a, b := handoverPair(t, store, fake, 50*time.Millisecond)
			engines := []*orchestrator.Engine{a, b}
			var ids []string
			for i, e := range engines {
				for j := range 3 {
					ids = append(ids, consultingOn(t, e, fmt.Sprintf("10%d%d", i, j)).ID)
				}
			}
			var wg sync.WaitGroup
			errs := make([]error, len(engines))
			for i, e := range engines {
				wg.Go(func() { errs[i] = shutdownWithin(e) })
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("Shutdown of replica %d: %v", i, err)
				}
			}
			for _, id := range ids {
				got, err := store.Get(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if got.Open() {
					t.Errorf("transfer %s left open (%s, owner %q)", id, got.State, got.Owner)
					continue
				}
				wantOutcome(t, got, orchestrator.StateFailed, orchestrator.ReasonShutdown, true)
				wantCallerSafe(t, fake, id)
			}
		})
	}
}

// disownFails fails the first save that hands a transfer over, without
// saving it.
type disownFails struct {
	orchestrator.Store
	failed atomic.Bool
}

func (s *disownFails) Update(ctx context.Context, t *orchestrator.Transfer) error {
	if t.Owner == "" && s.failed.CompareAndSwap(false, true) {
		return errors.New("the store is down")
	}
	return s.Store.Update(ctx, t)
}

// A hand-over whose save fails leaves the transfer this replica's, which
// no peer can claim while its heartbeat lives: it is taken back at once,
// not after HandoverPatience, and its caller given back.
func TestAHandoverThatCannotBeSavedIsTakenBackAtOnce(t *testing.T) {
	ctx := context.Background()
	store := &disownFails{Store: memory.New()}
	fake := orchestratortest.NewFake("fake")
	// A patience of an hour, and a shutdown with no deadline: waiting
	// the patience out would hang the test.
	a, _ := handoverPair(t, store, fake, time.Hour)
	tr := consultingOn(t, a, "1000")
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if !store.failed.Load() {
		t.Fatal("no hand-over was tried")
	}
	got, err := store.Get(ctx, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantOutcome(t, got, orchestrator.StateFailed, orchestrator.ReasonShutdown, true)
	if got.Owner != "a" {
		t.Errorf("owner %q, want a", got.Owner)
	}
	wantCallerSafe(t, fake, tr.ID)
}

// A transfer taken back is logged by its id, once, and so is one handed
// over and one whose hand-over could not be saved: the storm counts the
// hand-overs by these lines (crashtest's countHandovers, which names
// them), where the one line of a stop's take-back ("taking them back")
// also counts what it kept, whose hand-over was never saved.
func TestEachHandoverAndTakeBackIsLoggedByTransfer(t *testing.T) {
	ctx := context.Background()
	store := &disownFails{Store: memory.New()}
	fake := orchestratortest.NewFake("fake")
	var logs logLines
	cfg := orchestrator.Config{Owner: "a", LeaseTTL: 2 * time.Second, HandoverPatience: 20 * time.Millisecond,
		PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond, StepTimeout: time.Second,
		VerifyTimeout: 200 * time.Millisecond, VisibilityWindow: 50 * time.Millisecond}
	a := loggingEngine(t, cfg, store, fake, nil, zerolog.New(&logs))
	openAll(t, a)
	// A peer that beat an hour's heartbeat and claims nothing.
	if _, err := store.Heartbeat(ctx, "gone", "token-gone", time.Now(), time.Hour, false); err != nil {
		t.Fatal(err)
	}
	kept, handed := consultingOn(t, a, "1000"), consultingOn(t, a, "1001")
	if err := shutdownWithin(a); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// The first hand-over's save fails (disownFails): which transfer's
	// it was depends on the order the shutdown takes them in.
	if logs.has("handed the transfer over to the other replicas", kept.ID) {
		kept, handed = handed, kept
	}
	for _, c := range []struct{ what, msg, id string }{
		{"the hand-over", "handed the transfer over to the other replicas", handed.ID},
		{"the hand-over not saved", "handing the transfer over could not be saved; checking what the store holds before this replica stops", kept.ID},
		{"the take-back of the transfer handed over", "took back a transfer handed over, to give its caller back", handed.ID},
		{"the take-back of the transfer kept", "took back a transfer handed over, to give its caller back", kept.ID},
	} {
		if n := logs.count(c.msg, c.id); n != 1 {
			t.Errorf("%s of %s: %d lines %q, want 1", c.what, c.id, n, c.msg)
		}
	}
	for _, tr := range []*orchestrator.Transfer{kept, handed} {
		wantCallerSafe(t, fake, tr.ID)
	}
}

// count is how many lines contain every one of parts.
func (l *logLines) count(parts ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			n++
		}
	}
	return n
}
