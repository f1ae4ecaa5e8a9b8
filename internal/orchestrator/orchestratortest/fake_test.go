package orchestratortest_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

func transfer(id string) *orchestrator.Transfer {
	return &orchestrator.Transfer{ID: id, Request: orchestrator.Request{
		Provider: "fake", Call: orchestrator.CallRef{Domain: "TEST", User: "1000"}, Target: "1010"}}
}

// drive plays the engine's attended steps up to the consult.
func drive(f *orchestratortest.Fake, tr *orchestrator.Transfer) error {
	ctx := context.Background()
	legs, err := f.Locate(ctx, tr)
	if err != nil {
		return err
	}
	tr.Legs = legs
	if err := f.Hold(ctx, tr); err != nil {
		return err
	}
	leg, err := f.Dial(ctx, tr)
	tr.Legs.Consult = leg
	return err
}

func mustDrive(t *testing.T, f *orchestratortest.Fake, tr *orchestrator.Transfer) {
	t.Helper()
	if err := drive(f, tr); err != nil {
		t.Fatal(err)
	}
}

// read reads tr's part of one shared reading, as the engine's watcher does.
func read(f *orchestratortest.Fake, tr *orchestrator.Transfer) (orchestrator.Observation, error) {
	v, err := f.Read(context.Background(), f.WatchKey(tr), []*orchestrator.Transfer{tr})
	if err != nil {
		return orchestrator.Observation{}, err
	}
	return v.Observe(tr)
}

func observe(t *testing.T, f *orchestratortest.Fake, tr *orchestrator.Transfer) orchestrator.Observation {
	t.Helper()
	obs, err := read(f, tr)
	if err != nil {
		t.Fatal(err)
	}
	return obs
}

func TestTargets(t *testing.T) {
	for _, tc := range []struct {
		target orchestratortest.Target
		want   orchestrator.Observation
	}{
		{orchestratortest.TargetAnswers, orchestrator.Observation{Caller: orchestrator.CallerHeld, Consult: orchestrator.ConsultAnswered, ConsultLegs: 1}},
		{orchestratortest.TargetRings, orchestrator.Observation{Caller: orchestrator.CallerHeld, Consult: orchestrator.ConsultRinging, ConsultLegs: 1}},
		{orchestratortest.TargetBusy, orchestrator.Observation{Caller: orchestrator.CallerHeld, Consult: orchestrator.ConsultEnded, EndReason: orchestrator.ReasonBusy}},
		{orchestratortest.TargetRejects, orchestrator.Observation{Caller: orchestrator.CallerHeld, Consult: orchestrator.ConsultEnded, EndReason: orchestrator.ReasonRejected}},
		{orchestratortest.TargetNoAnswer, orchestrator.Observation{Caller: orchestrator.CallerHeld, Consult: orchestrator.ConsultEnded, EndReason: orchestrator.ReasonNoAnswer}},
	} {
		f := orchestratortest.NewFake("fake").SetTarget(tc.target)
		tr := transfer("t1")
		mustDrive(t, f, tr)
		got := observe(t, f, tr)
		got.Detail = ""
		if got.ConsultLegs > 0 && got.ConsultLeg != tr.Legs.Consult {
			t.Errorf("target %d: a listed consult reveals %+v, want the dialled %+v", tc.target, got.ConsultLeg, tr.Legs.Consult)
		}
		got.ConsultLeg = orchestrator.LegRef{}
		if got != tc.want {
			t.Errorf("target %d: observed %+v, want %+v", tc.target, got, tc.want)
		}
	}
}

func TestScriptedParties(t *testing.T) {
	ctx := context.Background()
	f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings)
	a, b := transfer("a"), transfer("b")
	mustDrive(t, f, a)
	mustDrive(t, f, b)

	if n := f.Answer("a"); n != 1 {
		t.Fatalf("Answer(a) = %d", n)
	}
	if obs := observe(t, f, b); obs.Consult != orchestrator.ConsultRinging {
		t.Fatalf("b is %+v; Answer(a) must not answer b", obs)
	}
	if err := f.Complete(ctx, b); orchestrator.KindOf(err) != orchestrator.KindCallNotActive {
		t.Fatalf("Complete of an unanswered consult: %v", err)
	}
	if err := f.Complete(ctx, a); err != nil {
		t.Fatal(err)
	}
	if obs := observe(t, f, a); obs.Caller != orchestrator.CallerTransferred {
		t.Fatalf("after Complete: %+v", obs)
	}

	f.HangupTarget("b")
	if obs := observe(t, f, b); obs.Consult != orchestrator.ConsultEnded || obs.EndReason != orchestrator.ReasonRejected {
		t.Fatalf("after HangupTarget while ringing: %+v", obs)
	}
	f.HangupCaller("b")
	if err := f.Unhold(ctx, b); orchestrator.KindOf(err) != orchestrator.KindCallNotFound {
		t.Fatalf("Unhold of a caller who hung up: %v", err)
	}
	if err := f.HangupConsult(ctx, b); err != nil {
		t.Fatalf("HangupConsult of an ended leg: %v", err)
	}
	// Hanging up the leg that carries a transferred caller drops the caller.
	if err := f.HangupConsult(ctx, a); err != nil {
		t.Fatal(err)
	}
	if c, _ := f.State("a"); c.Caller != orchestrator.CallerGone {
		t.Fatalf("caller %d after its leg was hung up", c.Caller)
	}
}

func TestFaults(t *testing.T) {
	ctx := context.Background()
	boom := orchestrator.E("fake.Hold", orchestrator.KindProviderUnavailable, errors.New("503"))
	f := orchestratortest.NewFake("fake").FailOn(orchestratortest.MethodHold, boom, 2)
	tr := transfer("t")
	legs, _ := f.Locate(ctx, tr)
	tr.Legs = legs
	for i := range 2 {
		if err := f.Hold(ctx, tr); !errors.Is(err, boom) {
			t.Fatalf("Hold %d: %v, want the injected error", i, err)
		}
	}
	if c, _ := f.State("t"); c.Caller != orchestrator.CallerConnected {
		t.Fatal("a failed Hold took effect")
	}
	if err := f.Hold(ctx, tr); err != nil {
		t.Fatalf("third Hold: %v", err)
	}

	lost := orchestrator.E("fake.Unhold", orchestrator.KindTimeout, errors.New("lost"))
	f.LoseResponse(orchestratortest.MethodUnhold, lost, 1)
	if err := f.Unhold(ctx, tr); !errors.Is(err, lost) {
		t.Fatalf("Unhold: %v", err)
	}
	if c, _ := f.State("t"); c.Caller != orchestrator.CallerConnected {
		t.Fatal("a lost Unhold did not take effect")
	}

	f.FailOn(orchestratortest.MethodObserve, boom, -1)
	for range 3 {
		if _, err := read(f, tr); !errors.Is(err, boom) {
			t.Fatalf("Observe: %v", err)
		}
	}
	f.ClearFaults()
	if _, err := read(f, tr); err != nil {
		t.Fatal(err)
	}

	want := []string{"Locate", "Hold", "Hold", "Hold", "Unhold", "Observe", "Observe", "Observe", "Observe"}
	if got := f.Calls(); !slices.Equal(got, want) {
		t.Fatalf("Calls = %q, want %q", got, want)
	}
	if got := f.Actions(); !slices.Equal(got, want[:5]) {
		t.Fatalf("Actions = %q", got)
	}
	if got := f.ActionsFor("other"); len(got) != 0 {
		t.Fatalf("ActionsFor(other) = %q", got)
	}
}

func TestBlock(t *testing.T) {
	f := orchestratortest.NewFake("fake")
	g := f.Block(orchestratortest.MethodLocate)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := f.Locate(ctx, transfer("t")); errc <- err }()
	<-g.Entered()
	cancel()
	if err := <-errc; orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
		t.Fatalf("Locate ended by its context: %v", err)
	}
	g.Release()
	if _, err := f.Locate(context.Background(), transfer("t")); err != nil {
		t.Fatal(err)
	}
}

func TestValidateAndFlow(t *testing.T) {
	f := orchestratortest.NewFake("fake").Require("call.user", "call.call_id")
	r := transfer("t").Request
	if bad := f.Validate(&r); len(bad) != 1 || bad["call.call_id"] == "" {
		t.Fatalf("Validate = %v", bad)
	}
	if fl := f.Flow(&r); !fl.Hold || !fl.Join {
		t.Fatalf("attended flow %+v", fl)
	}
	r.Mode = orchestrator.ModeAnnounced
	if fl := f.Flow(&r); fl.Hold || fl.Join {
		t.Fatalf("announced flow %+v", fl)
	}
	f.AnnouncedOnly()
	if c := f.Capabilities(); c.Attended || !c.Announced {
		t.Fatalf("announced-only capabilities %+v", c)
	}
}

// The Fake serves many transfers at once.
func TestConcurrent(t *testing.T) {
	f := orchestratortest.NewFake("fake")
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			tr := transfer(string(rune('A' + i)))
			err := drive(f, tr)
			if err == nil {
				_, err = read(f, tr)
			}
			if err == nil {
				err = f.Complete(context.Background(), tr)
			}
			if err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() { f.HangupTarget("nobody"); _ = f.Calls() })
	}
	wg.Wait()
	if n := len(f.Actions()); n != 50*4 {
		t.Fatalf("%d actions, want %d", n, 50*4)
	}
}

// A deferred action answers at once and takes effect only when applied; a
// deferred Dial's leg is neither listed nor hung up before that.
func TestDefer(t *testing.T) {
	ctx := context.Background()
	f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings).
		Defer(orchestratortest.MethodHold, 1).Defer(orchestratortest.MethodDial, 1)
	tr := transfer("t")
	mustDrive(t, f, tr)
	if tr.Legs.Consult.IsZero() {
		t.Fatal("a deferred Dial returned no ids")
	}
	if obs := observe(t, f, tr); obs.Caller != orchestrator.CallerConnected || obs.Consult != orchestrator.ConsultAbsent {
		t.Fatalf("before ApplyDeferred: %+v, want the caller connected and no consult", obs)
	}
	if err := f.HangupConsult(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if n := f.Deferred("t"); n != 2 {
		t.Fatalf("Deferred = %d, want 2", n)
	}
	if n := f.ApplyDeferred("t"); n != 2 {
		t.Fatalf("ApplyDeferred = %d, want 2", n)
	}
	obs := observe(t, f, tr)
	if obs.Caller != orchestrator.CallerHeld || obs.Consult != orchestrator.ConsultRinging || obs.ConsultLeg != tr.Legs.Consult {
		t.Fatalf("after ApplyDeferred: %+v, want the caller held and the consult %+v ringing (the hang-up came too early)", obs, tr.Legs.Consult)
	}
	// Only the given number of calls is deferred.
	if err := f.Unhold(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if c, _ := f.State("t"); c.Caller != orchestrator.CallerConnected || f.Deferred("t") != 0 {
		t.Fatalf("an undeferred Unhold left %+v, %d deferred", c, f.Deferred("t"))
	}
}

func TestDuplicateDialsAndVanishingTargets(t *testing.T) {
	ctx := context.Background()
	f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings)
	tr := transfer("t")
	mustDrive(t, f, tr)
	if _, err := f.Dial(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if c, _ := f.State("t"); c.Dials != 1 {
		t.Fatalf("Dials = %d after a repeated Dial, want 1 (the leg already dialled)", c.Dials)
	}
	f.DuplicateDials(true)
	if _, err := f.Dial(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if c, _ := f.State("t"); c.Dials != 2 {
		t.Fatalf("Dials = %d with DuplicateDials, want 2", c.Dials)
	}

	f = orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetVanishes)
	tr = transfer("v")
	mustDrive(t, f, tr)
	if obs := observe(t, f, tr); obs.Consult != orchestrator.ConsultAbsent || obs.EndReason != "" {
		t.Fatalf("a vanished consult reads %+v, want absent with no reason", obs)
	}
	if !f.SetCaller("v", orchestrator.CallerConnected) || f.SetCaller("nobody", orchestrator.CallerGone) {
		t.Fatal("SetCaller reports the wrong transfers")
	}
	if obs := observe(t, f, tr); obs.Caller != orchestrator.CallerConnected {
		t.Fatalf("after SetCaller: %+v", obs)
	}
}
