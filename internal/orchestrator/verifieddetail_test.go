package orchestrator_test

import (
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// wantVerifiedDetailTrue fails when a verified outcome's detail still says
// what it said while unverified: the patience that ran out and an
// obligation open, which the verification discharged.
func wantVerifiedDetailTrue(t *testing.T, tr *orchestrator.Transfer) {
	t.Helper()
	o := tr.Outcome
	if !o.Verified || tr.Cleanup != nil {
		t.Fatalf("outcome %+v cleanup %+v, want verified, nothing owed", o, tr.Cleanup)
	}
	for _, stale := range []string{"cleanup obligation remains", "not verified within"} {
		if strings.Contains(o.Detail, stale) {
			t.Errorf("verified outcome's detail %q says %q", o.Detail, stale)
		}
	}
}

// A cancel whose unhold was sent while the provider could not be read
// ends unverified, "not verified within …: a cleanup obligation remains";
// the sweeper verifies it once a reading shows the caller back. The
// verified outcome kept that detail: a transfer reported verified, nothing
// owed, said an obligation remained and the provider could not be read.
func TestAVerifiedOutcomeSaysNoObligationRemains(t *testing.T) {
	h := newHarness(t, testConfig())
	id, tr := cancelledUnread(t, h)
	if tr.Outcome.Verified || tr.Cleanup == nil || !strings.Contains(tr.Outcome.Detail, "cleanup obligation remains") {
		t.Fatalf("outcome %+v cleanup %+v, want unverified, an obligation said open", tr.Outcome, tr.Cleanup)
	}
	h.f.ClearFaults()
	end := h.store.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.Cleanup == nil })
	wantOutcome(t, end, orchestrator.StateCancelled, orchestrator.ReasonCancelled, true)
	wantVerifiedDetailTrue(t, end)
	if !strings.Contains(end.Outcome.Detail, "the provider shows the caller connected") {
		t.Errorf("detail %q, want what the verifying reading showed", end.Outcome.Detail)
	}
	wantTruthful(t, h.f, end)
}

// The same on the way to completed: a join whose effect could not be read
// ended failed, unverified, and the sweeper corrected it to completed once
// the caller showed with the target; the completed outcome quoted the
// failure's detail whole, "a cleanup obligation remains" included.
func TestAnOutcomeCorrectedToCompletedSaysNoObligationRemains(t *testing.T) {
	cfg := testConfig()
	h := newHarness(t, cfg)
	h.f.Defer(complete, 1).Before(complete, func(orchestratortest.Record) {
		h.f.FailOn(observe, fakeErr(observe, orchestrator.KindProviderUnavailable), -1)
	})
	id := h.start(t, request("fake", "1000"))
	tr := h.done(t, id)
	if tr.Outcome.Verified || tr.Cleanup == nil || !strings.Contains(tr.Outcome.Detail, "cleanup obligation remains") {
		t.Fatalf("outcome %+v cleanup %+v, want unverified, an obligation said open", tr.Outcome, tr.Cleanup)
	}
	h.f.ApplyDeferred(id)
	h.f.ClearFaults()
	end := h.store.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.Cleanup == nil })
	wantOutcome(t, end, orchestrator.StateCompleted, orchestrator.ReasonTransferred, false)
	wantVerifiedDetailTrue(t, end)
	wantTruthful(t, h.f, end)
}
