package bandwidth_test

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// Polling (no TRANSFERD_PUBLIC_URL), a transfer's answer is lost. Before transferd reads the caller's call, another
// application on the account transfers another caller to the same target
// (a queue's number): its B-leg is newer than ours. The caller's call
// shows our transfer (transferring, transferTo = target), and
// searchTransferLeg took "the newest outbound call to the target that
// started after A" - the other transfer's leg - for ours, reported its
// state, and when the consult timed out hung it up, while our own leg
// kept ringing (found by review). The leg must come from the number our
// transfer shows.
func TestAnnouncedPollingNeverTakesAnotherTransfersLeg(t *testing.T) {
	h := setup(t, options{engine: shortWindows})
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
	a := h.placeCall(t)
	other, err := h.sim.PlaceCall(bwsim.InboundCall{From: "+15555550199", To: owned})
	if err != nil {
		t.Fatal(err)
	}
	loseTransferAnswer(t, h, a, func() {
		// Someone else's transfer to the same number, after ours.
		h.api(t, http.MethodPost, "/calls/"+other.ID, `{"state":"transferring","transferTo":"`+target+`"}`)
	})
	req := announcedReq(a, target)
	req.ConsultTimeout = time.Second
	tr := h.end(t, h.start(t, req).ID)
	h.idle(t)
	ours, theirs := transferLeg(t, h, a), transferLeg(t, h, other)
	if tr.Legs.Consult.CallID == theirs.ID {
		t.Errorf("the transfer took the other transfer's leg %s for its own (ours is %s)", theirs.ID, ours.ID)
	}
	if c := mustCall(t, h, theirs.ID); c.State != bwsim.StateStarted {
		t.Errorf("the other transfer's leg %s is %s", theirs.ID, c.State)
	}
	for _, c := range h.commands(t) {
		if c.Path == "/calls/"+theirs.ID && c.Body["state"] == "completed" {
			t.Errorf("transferd hung up the other transfer's leg: %s", c)
		}
	}
	if c := mustCall(t, h, ours.ID); c.State == bwsim.StateStarted {
		t.Errorf("our own leg %s is left ringing after the transfer ended %s %+v", ours.ID, tr.State, tr.Outcome)
	}
}

// With callbacks, a transfer's answer is lost and the target is busy; its
// leg is never listed (VanishFailedLegs) or not yet (ListingDelay, with
// and without UnlistedNotFound). The hangup callback names the leg and
// says USER_BUSY, and the platform ends the caller's call with it. The
// leg's id was never learnt, so its cause was never looked up: the
// transfer reported caller_hung_up (found by review). A callback to the
// transfer's URL names its leg.
func TestAnnouncedCallbackNamesALegNeverListed(t *testing.T) {
	for name, cfg := range map[string]bwsim.Config{
		"vanished":        {VanishFailedLegs: true},
		"not listed yet":  {ListingDelay: time.Hour, UnlistedNotFound: true},
		"listed, no read": {ListingDelay: time.Hour},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h, hungUp := setupBusyWithCallbacks(t, cfg)
			a := h.placeCall(t)
			loseTransferAnswer(t, h, a, func() {
				hungUp()
			})
			req := announcedReq(a, target)
			req.ConsultTimeout = time.Second
			tr := h.end(t, h.start(t, req).ID)
			if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonBusy {
				t.Fatalf("the target was busy (its hangup callback said USER_BUSY); the transfer reports %s %s: %s",
					tr.State, tr.Outcome.Reason, tr.Outcome.Detail)
			}
		})
	}
}

// Polling, a first transfer of the caller to the target fails (busy);
// the platform gives the caller back (TransferFailure restore) and keeps
// showing transferTo. A second transfer to the same target is applied,
// its answer lost, and its leg is not listed yet (ListingDelay). The
// newest listed leg to the target, the first attempt's, ended busy, was
// taken for the second transfer's, which reported busy (found by review).
// An ended leg is never taken for a lost answer's.
func TestAnnouncedPollingNeverTakesAnEarlierAttemptsLeg(t *testing.T) {
	h := setup(t, options{engine: shortWindows, sim: bwsim.Config{TransferFailure: bwsim.TransferFailureRestore}})
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeBusy})
	a := h.placeCall(t)
	first := h.end(t, h.start(t, announcedReq(a, target)).ID)
	if first.State != orchestrator.StateFailed || first.Outcome.Reason != orchestrator.ReasonBusy {
		t.Fatalf("setup: first transfer %s %+v", first.State, first.Outcome)
	}
	h.idle(t)
	old := transferLeg(t, h, a)
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
	if err := h.sim.SetAdversity(bwsim.Config{ListingDelay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	loseTransferAnswer(t, h, a, nil)
	req := announcedReq(a, target)
	req.ConsultTimeout = time.Second
	tr := h.end(t, h.start(t, req).ID)
	h.idle(t)
	var ours bwsim.Call
	for _, c := range h.sim.Calls() {
		if c.ParentCallID == a.ID && c.ID != old.ID {
			ours = c
		}
	}
	if ours.ID == "" {
		t.Fatalf("setup: the second transfer created no leg: %+v", h.sim.Calls())
	}
	if tr.Legs.Consult.CallID == old.ID {
		t.Errorf("the second transfer took the first attempt's leg %s for its own (ours is %s, %s); it reports %s %s",
			old.ID, ours.ID, mustCall(t, h, ours.ID).State, tr.State, tr.Outcome.Reason)
	}
}

// setupBusyWithCallbacks is setup with callbacks on, short windows and a
// busy target; hungUp waits, once the simulator is idle, until a hangup
// callback was handled (at most 10 s).
func setupBusyWithCallbacks(t *testing.T, cfg bwsim.Config) (h *harness, hungUp func()) {
	t.Helper()
	seen := make(chan struct{})
	var once sync.Once
	h = setup(t, options{callbacks: true, sim: cfg, engine: shortWindows,
		onCallback: func(eventType string) {
			if eventType == "hangup" {
				once.Do(func() { close(seen) })
			}
		}})
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeBusy})
	return h, func() {
		h.idle(t)
		select {
		case <-seen:
		case <-time.After(10 * time.Second):
			t.Error("no hangup callback")
		}
	}
}

// Polling, a transfer's answer is lost. On a platform that reads a
// connected caller's call "active" and shows transferTo only while
// transferring, or never (both guesses, bwsim TransferredALegState and
// ALegTransferFields), the caller's call then looks the same connected to
// the target as given back: A names no leg, and a live leg to the target
// from the caller's number may be another transfer's
// (TestAnnouncedPollingNeverTakesAnotherTransfersLeg). transferd reported
// the caller restored, verified, while the caller talked to the target
// (storm seed 3222014247840189, the first seed run on those sides). The
// outcome now says it cannot be known: unverified, final, caller_restored
// false. Where the target was busy no leg is left live, and the listing
// shows the caller given back: restored, verified, as before.
func TestAnnouncedLostAnswerPollingSaysWhatItCannotKnow(t *testing.T) {
	for _, fields := range []string{bwsim.ALegTransferFieldsWhileTransferring, bwsim.ALegTransferFieldsNever} {
		for _, answers := range []bool{true, false} {
			name := fields + "/target answers"
			if !answers {
				name = fields + "/target busy"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				h, a, tr := lostAnswerTransfer(t, bwsim.Config{ALegTransferFields: fields,
					TransferredALegState: bwsim.StateActive, TransferFailure: bwsim.TransferFailureRestore}, "", answers)
				o := tr.Outcome
				if answers {
					if !h.sim.Connected(a.ID, transferLeg(t, h, a).ID) {
						t.Fatalf("setup: the caller is not with the target")
					}
					if tr.State == orchestrator.StateCompleted || o.Verified || o.CallerRestored ||
						!strings.Contains(o.Detail, "cannot be verified") || !strings.Contains(o.Detail, "TRANSFERD_PUBLIC_URL") {
						t.Fatalf("the caller is with the target, and polling cannot show it: state %s outcome %+v steps %+v, want an outcome that says it cannot be known", tr.State, o, tr.Steps)
					}
				} else if tr.State != orchestrator.StateFailed || !o.Verified || !o.CallerRestored {
					t.Fatalf("the target was busy and the caller is back: state %s outcome %+v, want failed, restored, verified", tr.State, o)
				}
				if got := mustCall(t, h, a.ID).State; got != bwsim.StateActive {
					t.Errorf("caller's call is %s", got)
				}
				if n := len(h.requestsOf(bwsim.OpTransfer)); n != 1 {
					t.Errorf("transfers sent = %d, want 1", n)
				}
				for _, c := range h.commands(t) {
					if c.Body["state"] == "completed" {
						t.Errorf("transferd hung up a call it cannot tell is its own: %s", c)
					}
				}
			})
		}
	}
}

// A reading of an announced transfer reads A, then B. On a platform that
// reads a connected caller's call "active" (bwsim TransferredALegState),
// the target answered and hung up between the two: A read active (with
// the target), B read ended after its answer, which ended A too. The
// reading took A for the caller given back, and the transfer reported the
// caller restored, verified, while the caller's call had ended (storm seed
// 275205463926620, a cancel whose hang-up lost to the answer). A is now
// read again after such a B.
func TestAnnouncedTargetGoneBetweenTheReadsOfACallerReadActive(t *testing.T) {
	for _, public := range []bool{false, true} {
		name := "polling"
		if public {
			name = "callbackUrl"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := setup(t, options{callbacks: public, engine: func(c *orchestrator.Config) { shortWindows(c); c.TombstoneTTL = time.Second },
				sim: bwsim.Config{TransferredALegState: bwsim.StateActive}})
			h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
			a := h.placeCall(t)
			req := announcedReq(a, target)
			req.ConsultTimeout = time.Minute
			tr := h.start(t, req)
			tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Legs.Consult.CallID != "" })
			b := tr.Legs.Consult.CallID
			var answered, hungUp atomic.Bool
			h.before(func(method, path, _ string) bool {
				return method == http.MethodGet && path == "/users/"+userID+"/calls/"+a.ID
			}, func() {
				if err := h.sim.Answer(target); err != nil {
					t.Error(err)
				}
				answered.Store(true)
			})
			h.before(func(method, path, _ string) bool {
				return answered.Load() && method == http.MethodGet && path == "/users/"+userID+"/calls/"+b
			}, func() {
				if err := h.sim.Hangup(b); err != nil {
					t.Error(err)
				}
				hungUp.Store(true)
			})
			tr = h.end(t, tr.ID)
			tr = h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Cleanup == nil })
			if !hungUp.Load() {
				t.Fatal("setup: the target never hung up between the reads")
			}
			if got := mustCall(t, h, a.ID).State; got != bwsim.StateCompleted {
				t.Fatalf("setup: the caller's call is %s, want completed with the target's", got)
			}
			if tr.Outcome.CallerRestored {
				t.Errorf("the caller's call ended with the target's, yet: state %s outcome %+v", tr.State, tr.Outcome)
			}
		})
	}
}

// lostAnswerTransfer runs, polling, an announced transfer of a new call
// (with callerID) to the target whose answer the platform loses, the
// target answering before anything reads the caller's call, or busy. It
// returns the transfer once it ended and its cleanup is done.
func lostAnswerTransfer(t *testing.T, sim bwsim.Config, callerID string, answers bool) (*harness, bwsim.Call, *orchestrator.Transfer) {
	t.Helper()
	h := setup(t, options{engine: func(c *orchestrator.Config) { shortWindows(c); c.TombstoneTTL = time.Second }, sim: sim})
	mode := bwsim.ModeManual
	if !answers {
		mode = bwsim.ModeBusy
	}
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: mode})
	a := h.placeCall(t)
	loseTransferAnswer(t, h, a, func() {
		if answers {
			if err := h.sim.Answer(target); err != nil {
				t.Error(err)
			}
		}
	})
	req := announcedReq(a, target)
	req.CallerID = callerID
	req.ConsultTimeout = time.Minute
	tr := h.end(t, h.start(t, req).ID)
	tr = h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	h.idle(t)
	return h, a, tr
}
