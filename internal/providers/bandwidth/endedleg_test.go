package bandwidth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// A consult leg to a busy target ends at once. On a platform that never
// indexes such a leg (bwsim VanishFailedLegs, a guess), no read ever shows
// it: only its hangup callback tells how it ended. The process stops once
// that end is saved, before the caller is verified back, and a new one,
// whose client has none of the first one's callbacks, resumes the
// transfer. The leg, shown ended once, reads "not found": it was taken for
// a call read before and not shown now, an unknown reading, at every
// reading from then on. The outcome was left unverified with its cleanup
// obligation open for good (a CI storm, seed 3, case 200: 23 restarted
// processes each resumed it and none could verify it). A leg shown ended
// stays ended: the outcome is verified, on both sides of the guess and
// whatever the platform does with the caller's call.
func TestAConsultShownEndedStaysEndedAfterARestart(t *testing.T) {
	for _, vanish := range []bool{true, false} {
		for _, failure := range []string{bwsim.TransferFailureRestore, bwsim.TransferFailureHangup} {
			name := failure + "/readable"
			if vanish {
				name = failure + "/vanished"
			}
			// A vanished leg is shown ended only by its callback. Where the
			// platform ends the caller's call with it, that end may come
			// first and end the transfer before the leg is looked at.
			mustSee := !vanish || failure == bwsim.TransferFailureRestore
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				endedLegAfterARestart(t, bwsim.Config{VanishFailedLegs: vanish, TransferFailure: failure}, mustSee)
			})
		}
	}
}

// The other side of TestAConsultShownEndedStaysEndedAfterARestart's race
// (hangup/vanished), which runs reached about once in a hundred: the
// consult's hangup callback is never acted on, so no reading of the first
// process shows the vanished leg ended before the platform hangs the
// caller up, and the restarted process cannot show it either. The leg is
// a consult that never appeared, and a tombstone watches for it; nothing
// is taken for busy on no evidence, nor for the caller hanging up (the
// platform ended the caller's call: the sixty-second pass), and the
// outcome is not left waiting for a leg no reading shows: it says it
// cannot be verified.
func TestAConsultNeverShownEndedAfterARestartLeavesItsTombstone(t *testing.T) {
	var aID atomic.Value // the caller's call id, once placed
	aID.Store("")
	o := options{callbacks: true, sim: bwsim.Config{VanishFailedLegs: true, TransferFailure: bwsim.TransferFailureHangup},
		dropCallback: func(body []byte) bool {
			var ev struct {
				CallID string `json:"callId"`
			}
			return json.Unmarshal(body, &ev) == nil && ev.CallID != "" && ev.CallID != aID.Load().(string)
		}}
	h, a, tr, saved := busyAnnouncedToRecovery(t, o, func(a bwsim.Call) { aID.Store(a.ID) })
	if saved.Seen.ConsultEnded {
		t.Fatalf("stopped with %+v: the consult's end was saved though no reading could show it", saved.Seen)
	}
	h.restart(t, bandwidth.Config{PublicURL: h.public})
	neverShownEnded(t, h, tr.ID, a.ID)
}

// neverShownEnded waits for the end of transfer id, resumed after a stop
// before its vanished consult was shown ended, and checks it against the
// caller's call callerID on the platform: ended, by the platform or the
// caller, which no reading tells apart while the leg cannot be read.
func neverShownEnded(t *testing.T, h *harness, id, callerID string) {
	t.Helper()
	// The tombstone runs for minutes: the wait stops at the outcome that
	// says it cannot be verified.
	end := h.waitSaved(t, id, func(x *orchestrator.Transfer) bool {
		return x.State.Terminal() && x.Outcome != nil && strings.Contains(x.Outcome.Detail, "cannot be verified")
	})
	if o := end.Outcome; end.State != orchestrator.StateFailed || o.Reason == orchestrator.ReasonCallerHungUp || o.Verified || o.CallerRestored {
		t.Fatalf("ended %s %+v; want failed, unverified, not restored, never caller_hung_up", end.State, o)
	}
	if end.Cleanup == nil || !strings.HasPrefix(end.Cleanup.Reason, "tombstone") {
		t.Errorf("cleanup %+v; want the tombstone of a consult that never appeared", end.Cleanup)
	}
	if caller := mustCall(t, h, callerID); !caller.Ended() {
		t.Errorf("the caller's call is %s", caller.State)
	}
}

// busyAnnouncedToRecovery starts an announced transfer of a caller to a
// busy target and stops the process as the transfer starts its recovery;
// placed, when set, sees the caller's call before the transfer starts. It
// returns the caller's call, the transfer, and the record the stopped
// process had saved.
func busyAnnouncedToRecovery(t *testing.T, o options, placed func(bwsim.Call)) (*harness, bwsim.Call, *orchestrator.Transfer, *orchestrator.Transfer) {
	t.Helper()
	h, hit := setupStoppingAt(t, o, "state:recovering")
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeBusy})
	a := h.placeCall(t)
	if placed != nil {
		placed(a)
	}
	req := announcedReq(a, target)
	req.ConsultTimeout = time.Minute
	tr := h.start(t, req)
	<-hit
	saved, err := h.store.Get(context.Background(), tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	return h, a, tr, saved
}

// endedLegAfterARestart stops the process as an announced transfer starts
// its recovery, checks that it saved the consult's end by then if mustSee,
// and resumes the transfer in another process.
func endedLegAfterARestart(t *testing.T, sim bwsim.Config, mustSee bool) {
	h, a, tr, saved := busyAnnouncedToRecovery(t, options{callbacks: true, sim: sim}, nil)
	if mustSee && !saved.Seen.ConsultEnded {
		t.Fatalf("stopped in %s with %+v: the consult's end should have been seen and saved", saved.State, saved.Seen)
	}

	h.restart(t, bandwidth.Config{PublicURL: h.public})
	if !saved.Seen.ConsultEnded {
		// The caller's end came first (only where mustSee is false), the
		// side TestAConsultNeverShownEndedAfterARestartLeavesItsTombstone
		// takes every time. A CI run at 40e1daf took it here and waited
		// for the tombstone to run out.
		neverShownEnded(t, h, tr.ID, a.ID)
		return
	}
	end := h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	if end.State != orchestrator.StateFailed || end.Outcome.Reason != orchestrator.ReasonBusy || !end.Outcome.Verified {
		t.Fatalf("ended %s %+v; want failed, busy, verified", end.State, end.Outcome)
	}
	// What the platform shows of the caller, not what transferd says.
	caller := mustCall(t, h, a.ID)
	if end.Outcome.CallerRestored != !caller.Ended() {
		t.Errorf("caller_restored %t while the caller's call is %s", end.Outcome.CallerRestored, caller.State)
	}
}

// An attended transfer's consult to a busy target that the platform never
// indexes (VanishFailedLegs) reads "not found" at every reading, and only
// its hangup callback tells how it ended. The attended side ignored the
// callback: the leg was judged by the visibility window as one that never
// appeared, the transfer reported consult_failed, and a tombstone watched
// for a leg already ended for two minutes. It now reports busy, verified,
// with nothing left to watch, as the announced side does.
func TestAttendedConsultNeverReadableEndsWithItsCallbacksCause(t *testing.T) {
	h, hungUp := setupBusyWithCallbacks(t, bwsim.Config{VanishFailedLegs: true})
	a, g, _ := h.placeBridged(t)
	// The consult is first read once its hangup callback was handled.
	callPath := "/users/" + userID + "/calls/"
	h.before(func(method, path, _ string) bool {
		return method == http.MethodGet && strings.HasPrefix(path, callPath) &&
			path != callPath+a.ID && path != callPath+g.ID && !strings.Contains(strings.TrimPrefix(path, callPath), "/")
	}, hungUp)
	req := attendedReq(a, g, orchestrator.CompletionAuto)
	req.ConsultTimeout = time.Minute
	tr := h.start(t, req)
	end := h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if end.State != orchestrator.StateFailed || end.Outcome.Reason != orchestrator.ReasonBusy || !end.Outcome.Verified ||
		!end.Outcome.CallerRestored || end.Cleanup != nil {
		t.Fatalf("ended %s %+v cleanup %+v; want failed, busy, the caller restored, verified, nothing left to watch",
			end.State, end.Outcome, end.Cleanup)
	}
	if c := mustCall(t, h, a.ID); c.Ended() {
		t.Errorf("the caller's call is %s", c.State)
	}
}
