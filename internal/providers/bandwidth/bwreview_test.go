package bandwidth_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// failReads answers 503 to the first n requests that match, each attempt
// of the adapter's retries included: a read replica in trouble for a
// moment while writes work.
func (h *harness) failReads(match func(method, path string) bool, n int32) *atomic.Int32 {
	var left atomic.Int32
	left.Store(n)
	var met atomic.Int32
	h.faultEach(func(method, path, _ string) bool {
		if !match(method, path) || left.Add(-1) < 0 {
			return false
		}
		met.Add(1)
		return true
	}, bwsim.Fault{Operation: bwsim.OpGetCall, Status: http.StatusServiceUnavailable, Count: 1})
	return &met
}

// An announced transfer to a busy target, polling (no callbacks): the
// platform ends the B-leg USER_BUSY and, as it does when a transfer fails
// (TransferFailure hangup, the default guess), the caller's call with it.
// The reading that first shows both ended reads the B-leg's event history
// for why it ended, and that read fails (503 on each attempt). endCause
// swallowed the failure and said "no cause", and the reading went on as
// if the provider had said nothing: the caller's call ended with a consult
// ended for no known reason is "the caller hung up during the consult".
// The transfer failed caller_hung_up, verified, blaming a caller whose
// call the platform ended because the target was busy. A cause that could
// not be read is unknown, not absent: the next reading, which can read
// it, says busy.
func TestAnEventHistoryReadThatFailsIsNotTakenForTheCallerHangingUp(t *testing.T) {
	h := setup(t, options{})
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeBusy})
	a := h.placeCall(t)
	met := h.failReads(func(method, path string) bool {
		return method == http.MethodGet && strings.HasSuffix(path, "/events")
	}, 3)
	req := announcedReq(a, target)
	req.ConsultTimeout = 30 * time.Second
	tr := h.end(t, h.start(t, req).ID)
	if met.Load() == 0 {
		t.Fatal("setup: no read of the B-leg's events failed")
	}
	if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonBusy {
		t.Fatalf("state %s outcome %+v: want failed, busy (the target was busy; the caller never hung up)", tr.State, tr.Outcome)
	}
}
