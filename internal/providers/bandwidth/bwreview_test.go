package bandwidth_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// An announced transfer whose target never answers, with callbacks: the
// platform times the B-leg out and, on the other side of the guess of
// what follows a timeout (TimeoutHangupCause: a platform cancelling the
// leg it gave up on says ORIGINATOR_CANCEL), hangs it up with that cause,
// and ends the caller's call with it (TransferFailure hangup). The timeout
// callback is lost (callbacks may be missing, or come after the hangup's),
// the hangup's arrives. endCause took the callback's cause for the whole
// story and never read the event history, which holds the timeout: a
// plain end (a cancel) with the caller's call ended is the caller hanging
// up. The transfer failed caller_hung_up, verified, for a target who did
// not answer. A plain end a callback told does not hide a failure the
// history shows.
func TestAMissingTimeoutCallbackIsNotTakenForTheCallerHangingUp(t *testing.T) {
	hangup := make(chan struct{})
	var once sync.Once
	var timedOut atomic.Bool
	h := setup(t, options{callbacks: true,
		sim: bwsim.Config{TimeoutHangupCause: bwsim.CauseOriginatorCancel},
		dropCallback: func(body []byte) bool {
			return bytes.Contains(body, []byte(`"eventType":"timeout"`))
		},
		onCallback: func(ev string) {
			if ev == "hangup" {
				once.Do(func() { close(hangup) })
			}
		},
	})
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeNever})
	a := h.placeCall(t)
	// Once the leg timed out, reads wait for the hangup callback to be
	// handled: the reading that shows the leg ended comes after it.
	h.mu.Lock()
	h.hooks = append(h.hooks, &hook{every: true,
		match: func(method, _, _ string) bool { return timedOut.Load() && method == http.MethodGet },
		run: func() {
			select {
			case <-hangup:
			case <-time.After(10 * time.Second):
			}
		}})
	h.mu.Unlock()
	req := announcedReq(a, target)
	req.ConsultTimeout = time.Minute
	tr := h.start(t, req)
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Legs.Consult.CallID != "" })
	timedOut.Store(true)
	if err := h.sim.Timeout(tr.Legs.Consult.CallID); err != nil {
		t.Fatal(err)
	}
	tr = h.end(t, tr.ID)
	select {
	case <-hangup:
	default:
		t.Fatal("setup: the hangup callback never came")
	}
	if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonNoAnswer {
		t.Fatalf("state %s outcome %+v: want failed, no_answer (the target never answered; the caller never hung up)", tr.State, tr.Outcome)
	}
}

// An announced transfer, polling, whose B-leg fails before it is answered
// with a cause other than the four transferd names (the hangup causes
// include NORMAL_TEMPORARY_FAILURE, and "others = internal error"; a SIP
// INVITE that fails "generates an event indicating the call has hung
// up"): here the simulator's busy leg, its history reporting
// NORMAL_TEMPORARY_FAILURE. The platform ends the caller's call with the
// failed transfer (TransferFailure hangup). observeAnnounced took an ended
// caller's call next to a leg that failed for a reason it does not name
// for the caller hanging up: the transfer failed caller_hung_up, verified,
// although the caller never hung up and the target's leg failed. A leg
// that ended unanswered for a cause that is not a cancel failed.
func TestALegFailingForACauseNotNamedIsNotTheCallerHangingUp(t *testing.T) {
	wrap := func(_ *bwsim.Sim, api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/events") {
				api.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			api.ServeHTTP(rec, r)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			body := bytes.ReplaceAll(rec.Body.Bytes(), []byte(bwsim.CauseUserBusy), []byte("NORMAL_TEMPORARY_FAILURE"))
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
		})
	}
	h := setup(t, options{wrap: wrap})
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeBusy})
	a := h.placeCall(t)
	req := announcedReq(a, target)
	req.ConsultTimeout = 30 * time.Second
	tr := h.end(t, h.start(t, req).ID)
	h.idle(t)
	if c := mustCall(t, h, a.ID); c.State != bwsim.StateCompleted || c.Cause == bwsim.CauseOriginatorCancel {
		t.Fatalf("setup: the caller's call is %s (%s), want ended by the platform with the failed transfer", c.State, c.Cause)
	}
	if tr.State != orchestrator.StateFailed || tr.Outcome.Reason == orchestrator.ReasonCallerHungUp {
		t.Fatalf("state %s outcome %+v: the caller never hung up; the target's leg failed", tr.State, tr.Outcome)
	}
	if tr.Outcome.Reason != orchestrator.ReasonConsultFailed {
		t.Errorf("reason %s, want consult_failed (the leg failed for a cause transferd does not name)", tr.Outcome.Reason)
	}
}
