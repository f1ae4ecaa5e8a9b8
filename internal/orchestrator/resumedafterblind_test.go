package orchestrator_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// Found by the second review of the sixty-fourth pass's engine fixes: a
// join whose intent the store refused past the step's patience is given
// up, and the recovery hangs the consult up blind (no intent saved); the
// saved record still says completing, with no join sent. The process
// that resumes it sent the join at once, before that hang-up could have
// landed: the provider joined the caller to the consult, the hang-up then
// ended the caller's call with the target, and the transfer was reported
// completed, verified, from a reading taken before it landed. A resumed
// transfer now sends its join, and takes a reading of the caller with
// the target as final, only a visibility window after its adoption (as
// recovering and the sweep do): the hang-up has landed by then, and the
// caller is given back.
func TestAJoinResumedAfterABlindHangupWaitsForIt(t *testing.T) {
	ctx := context.Background()
	st := &failingUpdates{Store: memory.New()}
	f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings)
	prov := &accountView{Fake: f}

	// The replica that resumes the transfer (resumerAnHourAhead).
	own := request("fake", "2000")
	own.Completion = orchestrator.CompletionManual
	second, clock := resumerAnHourAhead(t, st, prov, own)

	f.Defer(orchestratortest.MethodHangupConsult, 1) // accepted, applied later
	first, hit := joinGivenUpReplica(t, st, f)
	tr := startCompleted(t, first, f)
	<-hit
	st.failing.Store(false)
	if saved, err := st.Get(ctx, tr.ID); err != nil || saved.State != orchestrator.StateCompleting || !saved.Sent.Join.IsZero() {
		t.Fatalf("saved %+v (%v); want completing, no join sent", saved, err)
	}

	// The second replica claims the transfer (its look for stopped
	// replicas' transfers runs every quarter of its lease) and resumes
	// it, saving a note that says so; its clock stands still, so that no
	// time passes for it. The join, when sent at once, goes out in the
	// same pass as that note: twenty readings of the account later, it
	// has.
	eventually(t, "the transfer resumed", func() bool {
		got, err := st.Get(ctx, tr.ID)
		return err == nil && slices.ContainsFunc(got.Steps, func(s orchestrator.Step) bool {
			return s.Name == orchestrator.StepReconcile && strings.HasSuffix(s.Detail, "resumed by y")
		})
	})
	n := prov.reads.Load()
	eventually(t, "a join sent, or twenty readings taken", func() bool {
		return slices.Contains(f.ActionsFor(tr.ID), complete) || prov.reads.Load() >= n+20
	})
	if acts := f.ActionsFor(tr.ID); slices.Contains(acts, complete) {
		t.Errorf("actions %q: the join was sent while the first process's hang-up could still land", acts)
	}
	f.ApplyDeferred(tr.ID) // the hang-up lands
	clock.Run()
	end := waitFor(t, second, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if end.State == orchestrator.StateCompleted {
		t.Errorf("%s %+v; the caller's call was ended by the first process's hang-up", end.State, end.Outcome)
	}
	if c, _ := f.State(tr.ID); c.Caller != orchestrator.CallerConnected {
		t.Errorf("the provider shows the caller %v; want connected, given back", c.Caller)
	}
}

// Found by the second review of the sixty-fourth pass's engine fixes: a
// join that did not show within the verification's patience fails the
// transfer, and the recovery hangs the consult up on a reading that
// shows the caller held; with the store refusing saves, both are the
// working record's only, and the hang-up goes out blind. The saved
// record still says completing, its join sent. The join landing late,
// the process that resumed the transfer read the caller with the target
// before that hang-up landed and reported the transfer completed,
// verified: the hang-up then ended the caller's call with the target.
// Recovering and the sweep took such a reading as final only once taken
// a visibility window after the adoption; completing now does too.
func TestACompletingTransferResumedWaitsForAHangupSentBlind(t *testing.T) {
	ctx := context.Background()
	st := &failingUpdates{Store: memory.New()}
	f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings).IgnoreComplete(true)
	prov := &accountView{Fake: f}

	// The replica that resumes the transfer (resumerAnHourAhead).
	own := request("fake", "2000")
	own.Completion = orchestrator.CompletionManual
	second, clock := resumerAnHourAhead(t, st, prov, own)

	f.Defer(orchestratortest.MethodHangupConsult, 1) // accepted, applied later
	first, hit := blindHangupReplica(t, orchestrator.Config{VerifyTimeout: 200 * time.Millisecond}, st, f,
		orchestrator.StepTransfer+":effect", func() {
			// The join is sent, its intent saved; the store refuses saves
			// from here.
			st.failing.Store(true)
		})
	tr := startCompleted(t, first, f)
	<-hit
	st.failing.Store(false)
	saved, err := st.Get(ctx, tr.ID)
	if err != nil || saved.State != orchestrator.StateCompleting || saved.Sent.Join.IsZero() {
		t.Fatalf("saved %+v (%v); want completing, the join sent", saved, err)
	}
	// The join lands, late: the caller is with the target.
	f.SetCaller(tr.ID, orchestrator.CallerTransferred)
	prov.extra.Store(saved)
	eventually(t, "the transfer resumed and looked at", func() bool {
		got, err := second.Get(ctx, tr.ID)
		return (err == nil && got.State.Terminal()) || (second.Drives(tr.ID) && prov.observed.Load() >= 20)
	})
	if got, err := second.Get(ctx, tr.ID); err == nil && got.State == orchestrator.StateCompleted {
		t.Errorf("reported %s %+v on a reading taken as it resumed the transfer, while the first process's hang-up could still land", got.State, got.Outcome)
	}
	f.ApplyDeferred(tr.ID) // the hang-up lands: the caller's call ends with the consult
	if c, _ := f.State(tr.ID); c.Caller != orchestrator.CallerGone {
		t.Fatalf("the provider shows the caller %v; want gone, with the consult hung up", c.Caller)
	}
	clock.Run()
	end := waitFor(t, second, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if end.State == orchestrator.StateCompleted {
		t.Errorf("%s %+v; the caller's call was ended by the first process's hang-up", end.State, end.Outcome)
	}
}

// straddlingStore refuses saves (Update) once refusing is set, as a store
// that refuses a table's writes does. The first dial's intent it refuses
// arms it: the next one takes as long as the replica's heartbeat has (it
// moves the engine's clock an hour on, as a store cut off answers at its
// i/o timeout), and saves and heartbeats fail from then on, until the
// test clears straddling.
type straddlingStore struct {
	*memory.Store
	clock      *manualClock
	refusing   atomic.Bool
	straddling atomic.Bool
	refused    atomic.Int32 // a dial's intents refused
	straddled  atomic.Int32
}

func (s *straddlingStore) Update(ctx context.Context, t *orchestrator.Transfer) error {
	dialIntent := len(t.Steps) > 0 && t.Steps[len(t.Steps)-1].Name == orchestrator.StepDial &&
		t.Steps[len(t.Steps)-1].Status == orchestrator.StepStarted
	switch {
	case s.straddling.Load() && s.straddled.Load() > 0:
		return errPartition
	case s.straddling.Load() && dialIntent:
		s.clock.Advance(time.Hour)
		s.straddled.Add(1)
		return errPartition
	case s.refusing.Load():
		if dialIntent {
			s.refused.Add(1)
			s.straddling.Store(true)
		}
		return errors.New("straddlingStore: permission denied for table transfers")
	}
	return s.Store.Update(ctx, t)
}

func (s *straddlingStore) Heartbeat(ctx context.Context, owner, token string, now time.Time, ttl time.Duration, take bool) (bool, error) {
	if s.straddling.Load() {
		return false, errPartition
	}
	return s.Store.Heartbeat(ctx, owner, token, now, ttl, take)
}

// Found by the second review of the sixty-fourth pass's engine fixes: a
// step whose intent the store refused past the step's patience is given
// up, and one held back by a lapsed lease is not (nothing could be sent,
// and the transfer goes on once the heartbeat is renewed). The lease was
// judged before the intent's save only: a save that ran until the
// heartbeat had ended (a store cut off, answering at its i/o timeout)
// was taken for the store refusing the intent with the lease held, and
// the dial was given up, the transfer failed (internal) in memory while
// another replica could own it, and failed once the store was back where
// it would have gone on. The lease is judged again after the failed save.
func TestAnIntentsSaveThatOutlivesTheLeaseIsNotGivenUp(t *testing.T) {
	ctx := context.Background()
	clock := newManualClock()
	st := &straddlingStore{Store: memory.New(), clock: clock}
	f := orchestratortest.NewFake("fake")
	clock.Run()
	e := replicaWith(t, orchestrator.Config{Owner: "a", LeaseTTL: 2 * time.Second, StepTimeout: time.Second,
		VerifyTimeout: time.Hour, Clock: clock.Now, CrashPoint: func(_ *orchestrator.Transfer, p string) {
			if p == orchestrator.StepHold+":effect" {
				st.refusing.Store(true)
			}
		}}, st, f)
	t.Cleanup(func() { st.straddling.Store(false) }) // before the Shutdown
	if err := e.Open(ctx); err != nil {
		t.Fatal(err)
	}
	tr, err := e.Start(ctx, request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The dial's intent refused once, within the step's patience; its
	// next save outlives the heartbeat.
	eventually(t, "a save that outlived the heartbeat", func() bool { return st.straddled.Load() >= 1 })
	if acts := f.ActionsFor(tr.ID); slices.Contains(acts, dial) {
		t.Fatalf("actions %q; the dial went out with its intent unsaved", acts)
	}
	// The store is back: the heartbeat is renewed, and the transfer goes
	// on from where it was.
	st.refusing.Store(false)
	st.straddling.Store(false)
	end := waitFor(t, e, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if end.State == orchestrator.StateFailed && end.Outcome != nil && end.Outcome.Reason == orchestrator.ReasonInternal {
		t.Errorf("%s %+v; a dial held back by a lapsed heartbeat was given up", end.State, end.Outcome)
	}
	if acts := f.ActionsFor(tr.ID); !slices.Contains(acts, dial) {
		t.Errorf("actions %q; want the dial sent once the heartbeat was renewed", acts)
	}
}
