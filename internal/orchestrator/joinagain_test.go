package orchestrator_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

func joinAgainEngine(t *testing.T, p orchestrator.Provider) *orchestrator.Engine {
	t.Helper()
	e := testEngine(t, orchestrator.Config{
		PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond,
		VerifyTimeout: 2 * time.Second, VisibilityWindow: 50 * time.Millisecond, TombstoneTTL: 50 * time.Millisecond,
	}, memory.New(), p, nil)
	if err := e.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

// A join accepted that a reading a visibility window later shows did not
// take is sent once more in the provider's second form, which joins: the
// transfer completes, verified, well before VerifyTimeout, and the record
// keeps when the first form went out.
func TestJoinAgainInItsSecondFormOnceTheFirstDidNotTake(t *testing.T) {
	p := &formPBX{Fake: orchestratortest.NewFake("fake"), wantSecond: true}
	e := joinAgainEngine(t, p)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := waitFor(t, e, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if end.State != orchestrator.StateCompleted || !end.Outcome.Verified || end.Outcome.Reason != orchestrator.ReasonTransferred {
		t.Fatalf("%s %+v; want completed, transferred, verified", end.State, end.Outcome)
	}
	if got := p.sent(); !slices.Equal(got, []bool{false, true}) {
		t.Errorf("joins sent (second form?): %v; want the first, then the second", got)
	}
	if end.Sent.JoinFirst.IsZero() || !end.Sent.Join.After(end.Sent.JoinFirst) {
		t.Errorf("sent: first join %v, join %v; want the second after the first", end.Sent.JoinFirst, end.Sent.Join)
	}
	if c, _ := p.State(tr.ID); c.Caller != orchestrator.CallerTransferred {
		t.Errorf("the provider shows the caller %v, want with the target", c.Caller)
	}
}

// The second form is sent at most once: ignored too, the transfer fails
// at VerifyTimeout with the caller given back, as a join that never takes
// did before.
func TestJoinAgainOnlyOnce(t *testing.T) {
	p := &formPBX{Fake: orchestratortest.NewFake("fake"), ignoreAll: true}
	e := joinAgainEngine(t, p)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := waitFor(t, e, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	if end.State != orchestrator.StateFailed || end.Outcome.Reason != orchestrator.ReasonProviderError || !end.Outcome.CallerRestored {
		t.Fatalf("%s %+v; want failed, provider_error, caller restored", end.State, end.Outcome)
	}
	if got := p.sent(); !slices.Equal(got, []bool{false, true}) {
		t.Errorf("joins sent (second form?): %v; want the first, then the second, and no more", got)
	}
	if c, _ := p.State(tr.ID); c.Caller != orchestrator.CallerConnected {
		t.Errorf("the provider shows the caller %v, want back with the agent", c.Caller)
	}
}

// A second form refused: nothing joined by it, and the first, which went
// out, stays on record as sent and seen not to take, so that the recovery
// knows a join was sent (a NetSapiens hang-up of the consult then looks
// first for a call carrying the caller). The caller is given back.
func TestJoinAgainRefusedKeepsTheFirstOnRecord(t *testing.T) {
	p := &formPBX{Fake: orchestratortest.NewFake("fake"), wantSecond: true,
		refuseSecond: orchestrator.E("fake.complete", orchestrator.KindProviderRejected, errors.New("refused"))}
	e := joinAgainEngine(t, p)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := waitFor(t, e, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	if end.State != orchestrator.StateFailed || !end.Outcome.CallerRestored || !end.Outcome.Verified {
		t.Fatalf("%s %+v; want failed, caller restored, verified", end.State, end.Outcome)
	}
	if end.Sent.Join.IsZero() || !end.Sent.Join.Equal(end.Sent.JoinFirst) || !end.Seen.NotJoined {
		t.Errorf("sent: join %v, first join %v, seen not joined %v; want the first join on record, seen not to take",
			end.Sent.Join, end.Sent.JoinFirst, end.Seen.NotJoined)
	}
	if got := p.sent(); !slices.Equal(got, []bool{false, true}) {
		t.Errorf("joins sent (second form?): %v", got)
	}
	if c, _ := p.State(tr.ID); c.Caller != orchestrator.CallerConnected {
		t.Errorf("the provider shows the caller %v, want back with the agent", c.Caller)
	}
}
