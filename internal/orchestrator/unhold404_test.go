package orchestrator_test

import (
	"context"
	"errors"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// Found by review: an unhold answered "not found" while the caller's call
// is up (NetSapiens' unhold addresses the agent's call-id: its 404 may be
// about the agent's leg). The join is accepted; before it applies, the
// target hangs up, so the join's effect stays unknown (the consult has
// ended). The recovery's unhold answers 404, and the recovery ended in the
// same pass, on the reading taken before the unhold: final, unverified,
// "the caller's call ended", with the caller still held and nothing left
// to unhold them. Now, where the join's effect is unknown, a reading taken
// after the unhold decides: it shows the caller held, the 404 is taken
// back, and the unhold is sent again.
func TestUnholdNotFoundWhileTheCallerShowsHeldAfterAnUnknownJoin(t *testing.T) {
	f := orchestratortest.NewFake("fake").Defer(orchestratortest.MethodComplete, 1)
	// The target hangs up; the accepted join, not applied yet, never is.
	// The agent hangs up too: the unhold, addressed to the agent's leg,
	// answers 404, once.
	afterJoinWindow(f, func(id string) {
		f.HangupTarget(id)
		f.FailOn(orchestratortest.MethodUnhold,
			orchestrator.E("fake.Unhold", orchestrator.KindCallNotFound, errors.New("HTTP 404")), 1)
	})
	e, st := unknowableEngine(t, f)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	end := st.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	if c, _ := f.State(tr.ID); c.Caller != orchestrator.CallerConnected {
		t.Errorf("the provider shows the caller %v, want connected (given back)", c.Caller)
	}
	if o := end.Outcome; end.State != orchestrator.StateFailed || !o.CallerRestored || !o.Verified {
		t.Errorf("%s %+v; want failed, the caller restored, verified", end.State, o)
	}
}
