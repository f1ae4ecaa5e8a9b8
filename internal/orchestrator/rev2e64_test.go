package orchestrator_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

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

	// The replica that resumes the transfer; its clock stands still, an
	// hour ahead: the other replica's heartbeat has run out on it.
	clock := newManualClock()
	clock.Advance(time.Hour)
	second, err := orchestrator.New(orchestrator.Config{Owner: "y", LeaseTTL: 2 * time.Second, Clock: clock.Now,
		PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond, VerifyTimeout: time.Hour,
		VisibilityWindow: 50 * time.Millisecond, StepTimeout: time.Second},
		st, []orchestrator.Provider{prov}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		clock.Run()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = second.Shutdown(ctx)
	})
	if err := second.Open(ctx); err != nil {
		t.Fatal(err)
	}
	// A consult of its own, so that its watcher reads the account all
	// along.
	own := request("fake", "2000")
	own.Completion = orchestrator.CompletionManual
	if _, err := second.Start(ctx, own, orchestrator.StartOptions{}); err != nil {
		t.Fatal(err)
	}

	hit, release := make(chan struct{}), make(chan struct{})
	f.Defer(orchestratortest.MethodHangupConsult, 1) // accepted, applied later
	first := replicaWith(t, orchestrator.Config{Owner: "x", LeaseTTL: 2 * time.Second, StepTimeout: 100 * time.Millisecond,
		VerifyTimeout: time.Hour, CrashPoint: func(_ *orchestrator.Transfer, p string) {
			switch p {
			case "state:completing":
				// The store refuses saves from here: the join's intent
				// cannot be saved, and past its patience it is given up.
				st.failing.Store(true)
			case orchestrator.StepHangup + ":effect":
				close(hit)
				<-release // the process is dead from here on
			}
		}}, st, f)
	t.Cleanup(func() { close(release) }) // before first shuts down
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	tr, err := first.Start(ctx, r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, first, tr.ID, inState(orchestrator.StateConsulting))
	f.Answer(tr.ID)
	waitFor(t, first, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	if _, err := first.Complete(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
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

	clock := newManualClock()
	clock.Advance(time.Hour)
	second, err := orchestrator.New(orchestrator.Config{Owner: "y", LeaseTTL: 2 * time.Second, Clock: clock.Now,
		PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond, VerifyTimeout: time.Hour,
		VisibilityWindow: 50 * time.Millisecond, StepTimeout: time.Second},
		st, []orchestrator.Provider{prov}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		clock.Run()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = second.Shutdown(ctx)
	})
	if err := second.Open(ctx); err != nil {
		t.Fatal(err)
	}
	own := request("fake", "2000")
	own.Completion = orchestrator.CompletionManual
	if _, err := second.Start(ctx, own, orchestrator.StartOptions{}); err != nil {
		t.Fatal(err)
	}

	hit, release := make(chan struct{}), make(chan struct{})
	f.Defer(orchestratortest.MethodHangupConsult, 1) // accepted, applied later
	first := replicaWith(t, orchestrator.Config{Owner: "x", LeaseTTL: 2 * time.Second, VerifyTimeout: 200 * time.Millisecond,
		CrashPoint: func(_ *orchestrator.Transfer, p string) {
			switch p {
			case orchestrator.StepTransfer + ":effect":
				// The join is sent, its intent saved; the store refuses
				// saves from here.
				st.failing.Store(true)
			case orchestrator.StepHangup + ":effect":
				close(hit)
				<-release // the process is dead from here on
			}
		}}, st, f)
	t.Cleanup(func() { close(release) }) // before first shuts down
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	tr, err := first.Start(ctx, r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, first, tr.ID, inState(orchestrator.StateConsulting))
	f.Answer(tr.ID)
	waitFor(t, first, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	if _, err := first.Complete(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
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
