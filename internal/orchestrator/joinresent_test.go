package orchestrator_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// formPBX is a provider whose join has two forms (JoinRetrier), as
// NetSapiens' naming one call's core server or the other: the PBX takes
// one form (wantSecond) and ignores the other, accepted, as a NetSapiens
// PBX does a join that names the wrong core server; with ignoreAll it
// takes neither. refuseSecond, when set, is the answer to every second
// form. Once refusing is set, every join is refused before it is counted.
// The failNth'th join (from 1), and the failAgainNth'th, are answered 503
// without reaching the PBX, and the refuseNth'th is refused (counted, nothing joined). With oneForm, the provider has no second form (JoinAgain is false).
type formPBX struct {
	*orchestratortest.Fake
	oneForm      bool
	wantSecond   bool
	ignoreAll    bool
	refuseSecond error
	failNth      int
	failAgainNth int
	refuseNth    int

	mu       sync.Mutex
	refusing bool
	forms    []bool // each join counted: whether it was the second form
}

func (p *formPBX) JoinAgain(*orchestrator.Transfer) bool { return !p.oneForm }

func (p *formPBX) Complete(ctx context.Context, t *orchestrator.Transfer) error {
	second := !t.Sent.JoinFirst.IsZero()
	p.mu.Lock()
	if p.refusing {
		p.mu.Unlock()
		return orchestrator.E("fake.complete", orchestrator.KindProviderRejected, errors.New("refused"))
	}
	p.forms = append(p.forms, second)
	n := len(p.forms)
	failed, refused := n == p.failNth || n == p.failAgainNth, n == p.refuseNth
	p.mu.Unlock()
	if failed {
		return orchestrator.E("fake.complete", orchestrator.KindProviderUnavailable, errors.New("HTTP 503"))
	}
	if refused {
		return orchestrator.E("fake.complete", orchestrator.KindProviderRejected, errors.New("refused"))
	}
	if second && p.refuseSecond != nil {
		return p.refuseSecond
	}
	p.Fake.IgnoreComplete(p.ignoreAll || second != p.wantSecond)
	return p.Fake.Complete(ctx, t)
}

func (p *formPBX) sent() []bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.forms)
}

// assertJoinedAfter checks that the transfer ended completed, verified,
// with the PBX showing the caller with the target, after the joins forms
// (whether each was the second form) reached p.
func assertJoinedAfter(t *testing.T, p *formPBX, end *orchestrator.Transfer, forms []bool) {
	t.Helper()
	if end.State != orchestrator.StateCompleted || !end.Outcome.Verified || end.Outcome.Reason != orchestrator.ReasonTransferred {
		t.Errorf("%s %+v; want completed, transferred, verified", end.State, end.Outcome)
	}
	if got := p.sent(); !slices.Equal(got, forms) {
		t.Errorf("joins sent (second form?): %v; want %v", got, forms)
	}
	if c, _ := p.State(end.ID); c.Caller != orchestrator.CallerTransferred {
		t.Errorf("the provider shows the caller %v, want with the target", c.Caller)
	}
}

// stopAndResume runs a transfer on an engine (cfg, owner "x") whose
// process stops at the first crash point stop accepts (its worker blocks
// there for good, as if killed; atStop runs first), then opens a second
// engine (the restarted process, the same owner) on the same store. It
// returns the transfer once it is terminal with no cleanup owed, and its
// record as the stopped process left it.
func stopAndResume(t *testing.T, p orchestrator.Provider, cfg orchestrator.Config,
	stop func(tr *orchestrator.Transfer, point string) bool, atStop func(tr *orchestrator.Transfer)) (end, left *orchestrator.Transfer) {
	t.Helper()
	st := &recStore{Store: memory.New(), saved: make(chan struct{})}
	release, hit := make(chan struct{}), make(chan struct{})
	var once sync.Once
	crash := func(tr *orchestrator.Transfer, point string) {
		if !stop(tr, point) {
			return
		}
		once.Do(func() {
			if atStop != nil {
				atStop(tr)
			}
			close(hit)
		})
		<-release // stopped from here on
	}
	engine := func(crash func(*orchestrator.Transfer, string)) *orchestrator.Engine {
		cfg.Owner, cfg.CrashPoint = "x", crash
		return testEngine(t, cfg, st, p, nil)
	}
	first := engine(crash)
	// After the engine's own cleanup is registered, so run before it: its
	// Close waits for the blocked worker.
	t.Cleanup(func() { close(release) })
	tr, err := first.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-hit
	left, err = st.Get(context.Background(), tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	second := engine(nil)
	if err := second.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	end = st.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	return end, left
}

// stopAt is stopAndResume stopping at the nth time the transfer reaches
// point, with a step timeout of 1s and joins verified for verify.
func stopAt(t *testing.T, p *formPBX, point string, nth int, verify time.Duration, atStop func()) (end, left *orchestrator.Transfer) {
	t.Helper()
	reached := 0 // the first engine's worker alone reaches crash points
	stop := func(_ *orchestrator.Transfer, pt string) bool {
		if pt == point {
			reached++
		}
		return pt == point && reached == nth
	}
	var run func(*orchestrator.Transfer)
	if atStop != nil {
		run = func(*orchestrator.Transfer) { atStop() }
	}
	return stopAndResume(t, p, fastConfig(verify, stormWindowShort), stop, run)
}

// A join whose process stopped after saving its intent and before saving
// its answer may or may not have gone out. Once a reading shows it did
// not take, the other form is sent where the provider has one: the first
// may have gone out and been ignored. Should the other be seen not to
// take too, the first is sent once more, since it may never have gone
// out (Sent.JoinFirstMaybeUnsent). Where the provider has no other form,
// the join is sent again in its one form. Before, a stopped process's
// join was always sent again in the same form: the first case cost a
// window less, and the third one more, and a process stopped after each
// join never got past the first form
// (TestJoinStoppedAfterEachSendGetsPastAFormThePBXIgnores).
func TestJoinInterruptedIsFollowedByItsOtherForm(t *testing.T) {
	for _, tc := range []struct {
		name       string
		oneForm    bool
		point      string
		nth        int
		wantSecond bool
		forms      []bool // the joins that reached the provider
	}{
		{"stopped before sending the first form, which the PBX takes", false, "transfer:intent", 1, false, []bool{true, false}},
		{"stopped before sending the first form, which the PBX ignores", false, "transfer:intent", 1, true, []bool{true}},
		{"stopped before sending the second form, which the PBX takes", false, "transfer:intent", 2, true, []bool{false, true}},
		{"stopped after sending the first form, which the PBX ignores", false, "transfer:effect", 1, true, []bool{false, true}},
		{"stopped after sending the first form, which the PBX takes", false, "transfer:effect", 1, false, []bool{false}},
		{"stopped after sending the second form, which the PBX takes", false, "transfer:effect", 2, true, []bool{false, true}},
		{"stopped before sending the one form there is", true, "transfer:intent", 1, false, []bool{false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &formPBX{Fake: orchestratortest.NewFake("fake"), oneForm: tc.oneForm, wantSecond: tc.wantSecond}
			end, _ := stopAt(t, p, tc.point, tc.nth, 2*time.Second, nil)
			assertJoinedAfter(t, p, end, tc.forms)
		})
	}
}

// A join sent again after a stopped process's and refused joined nothing,
// but the stopped process's may have gone out: the record keeps it, sent
// and seen not to take, so that the recovery knows a join was sent (it
// fails if the resend's refusal forgets it). The caller is given back.
func TestJoinInterruptedResentRefusedKeepsItOnRecord(t *testing.T) {
	p := &formPBX{Fake: orchestratortest.NewFake("fake")}
	end, left := stopAt(t, p, "transfer:intent", 1, 2*time.Second, func() {
		p.mu.Lock()
		p.refusing = true
		p.mu.Unlock()
	})
	if left.Sent.Join.IsZero() {
		t.Fatal("setup: the stopped process's record shows no join intent")
	}
	if end.State != orchestrator.StateFailed || !end.Outcome.CallerRestored || !end.Outcome.Verified {
		t.Fatalf("%s %+v; want failed, caller restored, verified", end.State, end.Outcome)
	}
	if !end.Sent.Join.Equal(left.Sent.Join) || !end.Seen.NotJoined {
		t.Errorf("sent: join %v, seen not joined %v; want the stopped process's join (%v) on record, seen not to take",
			end.Sent.Join, end.Seen.NotJoined, left.Sent.Join)
	}
	if got := p.sent(); len(got) != 0 {
		t.Errorf("joins that reached the provider: %v, want none", got)
	}
	if c, _ := p.State(end.ID); c.Caller != orchestrator.CallerConnected {
		t.Errorf("the provider shows the caller %v, want back with the agent", c.Caller)
	}
}

// A stopped process may have sent its join as late as its step's timeout
// after the intent, so a reading shows whether it took only a visibility
// window after that: with the shipped settings (a 15 s step timeout, a 5 s
// window) 20 s after the intent, past the 15 s the join is verified for.
// The resumed join is waited for until it can be judged, and followed by
// its other form, then by the first once more; it failed at the
// verification timeout before, never sent again (nor in its second form).
func TestJoinInterruptedIsJudgedPastAShorterVerifyTimeout(t *testing.T) {
	p := &formPBX{Fake: orchestratortest.NewFake("fake")}
	// A step timeout of 1s: the join is judged 1.05s after its intent.
	end, _ := stopAt(t, p, "transfer:intent", 1, 500*time.Millisecond, nil)
	if end.State != orchestrator.StateCompleted || !end.Outcome.Verified {
		t.Errorf("%s %+v; want completed, verified", end.State, end.Outcome)
	}
	if got := p.sent(); !slices.Equal(got, []bool{true, false}) {
		t.Errorf("joins sent (second form?): %v; want the second form, then the first", got)
	}
}

// A join that failed on the way (a 5xx, a 429, no answer) may or may not
// have reached the PBX. Once a reading shows it did not take, it is sent
// again in the same form, as a stopped process's is. Found by the storm on
// replicas (seed 2822048787127622, a PBX that wants the consult's core and
// ignores the caller's): a first form that never reached the PBX was taken
// for ignored, and the other form, which that PBX ignores, was sent in its
// place; the transfer failed provider_error, "neither took". Without the
// resend the first case sends the other form and fails, and the third
// (the second form failed on the way) fails provider_unavailable at the
// verification timeout. The second case costs one more window: the first
// form went out, was ignored, and is sent again before the other.
func TestJoinFailedOnTheWayIsSentAgainInTheSameForm(t *testing.T) {
	for _, tc := range []struct {
		name       string
		failNth    int
		wantSecond bool
		forms      []bool // the joins sent, the failed one included
	}{
		{"the first form, which the PBX takes, failed on the way", 1, false, []bool{false, false}},
		{"the first form, which the PBX ignores, failed on the way", 1, true, []bool{false, false, true}},
		{"the second form, which the PBX takes, failed on the way", 2, true, []bool{false, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &formPBX{Fake: orchestratortest.NewFake("fake"), wantSecond: tc.wantSecond, failNth: tc.failNth}
			e := joinAgainEngine(t, p)
			tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			end := waitFor(t, e, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
			assertJoinedAfter(t, p, end, tc.forms)
		})
	}
}

// Found by the storm (seed 723238167575024: SQLite, a kill every 3 to
// 12 s, a disk refusing writes for long spans, a PBX that ignores a join
// naming the consult's core server): a join's answer is saved late
// (saveLater), so a process stopped a moment after each join it sent
// left every one interrupted, and each process after it sent the first
// form again, the one the PBX ignores. The second form went out only once
// some process lived a visibility window past its join; four callers
// stayed held beside their consult calls past the storm's liveness
// bound. Now the process after a stopped one sends the other form: here
// two processes each stop right after their join went out, and the third
// finds the caller with the target. Before, the joins were the first
// form three times, then the second.
func TestJoinStoppedAfterEachSendGetsPastAFormThePBXIgnores(t *testing.T) {
	p := &formPBX{Fake: orchestratortest.NewFake("fake"), wantSecond: true}
	st := &recStore{Store: memory.New(), saved: make(chan struct{})}
	// process returns an engine (the same owner each time, as a process
	// restarted in its place) whose worker stops for good the first time
	// it has sent a join, and a channel closed then.
	process := func(stops bool) (*orchestrator.Engine, chan struct{}) {
		hit, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		cfg := fastConfig(2*time.Second, stormWindowShort)
		cfg.Owner = "x"
		if stops {
			cfg.CrashPoint = func(_ *orchestrator.Transfer, point string) {
				if point != "transfer:effect" {
					return
				}
				once.Do(func() { close(hit) })
				<-release
			}
		}
		e := testEngine(t, cfg, st, p, nil)
		// After the engine's own clean-up is registered, so run before
		// it: its Shutdown waits for the blocked worker.
		t.Cleanup(func() { close(release) })
		return e, hit
	}
	first, hit := process(true)
	tr, err := first.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-hit
	second, hit := process(true)
	if err := second.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-hit
	if got := p.sent(); !slices.Equal(got, []bool{false, true}) {
		t.Fatalf("joins sent by the two stopped processes (second form?): %v; want the first form, then the second", got)
	}
	third, _ := process(false)
	if err := third.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	end := st.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	assertJoinedAfter(t, p, end, []bool{false, true})
}

// The alternation a stopped process starts ends without stops: a join
// stopped at either point, on a PBX that takes neither form, goes out at
// most four times in all (the stopped one, its other form, the first once
// more, the second once more) and is then given up, the caller given
// back, the last join on record as sent and seen not to take. Sending the
// first again from any second form, or marking any second form as
// following a first that may be unsent, sent joins until the test timed
// out.
func TestJoinInterruptedAlternationEnds(t *testing.T) {
	for _, tc := range []struct {
		name  string
		point string
		forms []bool // the joins that reached the provider
	}{
		{"stopped before sending the first form", "transfer:intent", []bool{true, false, true}},
		{"stopped after sending the first form", "transfer:effect", []bool{false, true, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &formPBX{Fake: orchestratortest.NewFake("fake"), ignoreAll: true}
			end, _ := stopAt(t, p, tc.point, 1, 2*time.Second, nil)
			if end.State != orchestrator.StateFailed || end.Outcome.Reason != orchestrator.ReasonProviderError ||
				!end.Outcome.CallerRestored || !end.Outcome.Verified {
				t.Errorf("%s %+v; want failed, provider_error, caller restored, verified", end.State, end.Outcome)
			}
			if got := p.sent(); !slices.Equal(got, tc.forms) {
				t.Errorf("joins sent (second form?): %v; want %v", got, tc.forms)
			}
			if end.Sent.Join.IsZero() || end.Sent.JoinFirst.IsZero() || end.Sent.JoinFirstMaybeUnsent || !end.Seen.NotJoined {
				t.Errorf("sent: join %v, first %v, first maybe unsent %v, seen not joined %v; want the second form on record after a first sent, seen not to take",
					end.Sent.Join, end.Sent.JoinFirst, end.Sent.JoinFirstMaybeUnsent, end.Seen.NotJoined)
			}
			if c, _ := p.State(end.ID); c.Caller != orchestrator.CallerConnected {
				t.Errorf("the provider shows the caller %v, want back with the agent", c.Caller)
			}
		})
	}
}

// The first form sent once more after a stopped process's (the second
// form went out in between, accepted, and did not take) and refused
// joined nothing, but the second form went out: the record keeps it,
// sent and seen not to take, so that the recovery knows a join was sent
// (a NetSapiens hang-up of the consult then looks first for a call
// carrying the caller), and nothing says the first may be unsent. It
// failed when the move back to the first form forgot the second's send
// (joinBefore), or kept JoinFirstMaybeUnsent. The caller is given back.
func TestJoinFirstSentAgainRefusedKeepsTheSecondOnRecord(t *testing.T) {
	p := &formPBX{Fake: orchestratortest.NewFake("fake"), refuseNth: 2}
	end, left := stopAt(t, p, "transfer:intent", 1, 2*time.Second, nil)
	if left.Sent.Join.IsZero() {
		t.Fatal("setup: the stopped process's record shows no join intent")
	}
	if end.State != orchestrator.StateFailed || !end.Outcome.CallerRestored || !end.Outcome.Verified {
		t.Fatalf("%s %+v; want failed, caller restored, verified", end.State, end.Outcome)
	}
	if got := p.sent(); !slices.Equal(got, []bool{true, false}) {
		t.Errorf("joins that reached the provider (second form?): %v; want the second form, then the first", got)
	}
	if end.Sent.Join.IsZero() || end.Sent.Join.Equal(left.Sent.Join) || !end.Seen.NotJoined {
		t.Errorf("sent: join %v, seen not joined %v; want the second form's (after the stopped process's %v) on record, seen not to take",
			end.Sent.Join, end.Seen.NotJoined, left.Sent.Join)
	}
	// The first form was sent once more: nothing on record says it may be
	// unsent.
	if !end.Sent.JoinFirst.IsZero() || end.Sent.JoinFirstMaybeUnsent {
		t.Errorf("sent: first %v, first maybe unsent %v; want neither once the first was sent again", end.Sent.JoinFirst, end.Sent.JoinFirstMaybeUnsent)
	}
	if c, _ := p.State(end.ID); c.Caller != orchestrator.CallerConnected {
		t.Errorf("the provider shows the caller %v, want back with the agent", c.Caller)
	}
}
