package orchestrator_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// refusedUnread runs a transfer whose join the provider refuses as "not
// active" (its target hung up as the join went out) and which no reading
// can see from the refusal until the recovery has given the caller back
// blind (the consult hung up, the caller unheld, both on readings that
// failed); then, once the provider shows the unhold applied, afterUnhold
// runs and the provider can be read again. It returns the transfer's end.
// The verification patience is an hour: only a reading ends the recovery.
func refusedUnread(t *testing.T, afterUnhold func(h *harness, id string)) *orchestrator.Transfer {
	t.Helper()
	cfg := testConfig()
	cfg.VerifyTimeout = time.Hour
	h := newHarness(t, cfg)
	h.f.SetTarget(orchestratortest.TargetRings)
	h.f.FailOn(complete, fakeErr(complete, orchestrator.KindCallNotActive), 1)
	unreadable := orchestrator.E("fake.Observe", orchestrator.KindProviderUnavailable, errors.New("the provider's API is down"))
	h.f.Before(complete, func(r orchestratortest.Record) {
		h.f.HangupTarget(r.TransferID)
		h.f.FailOn(observe, unreadable, -1)
	})
	var once sync.Once
	h.f.Before(observe, func(r orchestratortest.Record) {
		if c, _ := h.f.State(r.TransferID); c.Caller != orchestrator.CallerConnected {
			return
		}
		once.Do(func() {
			afterUnhold(h, r.TransferID)
			h.f.ClearFaults()
		})
	})
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	id := h.start(t, r)
	h.waitFor(t, id, inState(orchestrator.StateConsulting))
	h.f.Answer(id)
	h.waitFor(t, id, answered)
	if _, err := h.e.Complete(context.Background(), id); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	return h.store.waitSaved(t, id, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
}

// Checked by the sixty-sixth pass's engine review: a join refused while
// the provider cannot be read is reported as the provider refused it. The
// refusal is the provider's own answer (a 4xx: the join was not made),
// not a guess; which call it did not find is unknown, and the recovery
// does not wait for a reading to say so before it gives the caller back:
// a provider that cannot be read would keep the caller held for as long.
// No reading after the recovery's hang-up blames the target for it.
func TestARefusedJoinNoReadingCouldJudgeKeepsTheProvidersRefusal(t *testing.T) {
	end := refusedUnread(t, func(*harness, string) {})
	if end.State != orchestrator.StateFailed || end.Outcome == nil || end.Outcome.Reason != orchestrator.ReasonCallNotActive ||
		!end.Outcome.CallerRestored || !end.Outcome.Verified {
		t.Fatalf("%s %+v; want failed, call_not_active, the caller restored, verified", end.State, end.Outcome)
	}
}

// Found by the sixty-sixth pass's engine review: a join refused while the
// provider could not be read, whose first reading came after the
// recovery had given the caller back, was blamed on the caller
// (caller_hung_up, "the caller's call has ended") when that reading
// showed the caller's call ended: the caller may have hung up once given
// back, as here, which says nothing of why the join was refused. A
// caller's call shown ended counts for the refusal only on a reading
// begun before the recovery's unhold, as a consult shown ended does only
// before its hang-up.
func TestACallerGoneOnlyAfterBeingGivenBackIsNotBlamedForARefusedJoin(t *testing.T) {
	end := refusedUnread(t, func(h *harness, id string) { h.f.HangupCaller(id) })
	if end.Outcome == nil || end.Outcome.Reason != orchestrator.ReasonCallNotActive {
		t.Fatalf("%s %+v; want call_not_active: the caller hung up only after the recovery gave them back", end.State, end.Outcome)
	}
}
