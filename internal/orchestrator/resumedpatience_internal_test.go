package orchestrator

import (
	"testing"
	"time"
)

// Found by the second review of the resumed join's patience (sixty-ninth
// pass): a join held back because this replica's heartbeat had run out
// (or lapsed) starts no patience in the process that holds it back: it
// waits for the heartbeat, however long, and is not given up for it (see
// step). The resumed process took such a failure for the first of its
// patience all the same, and gave up, after one try of its own, a join
// whose patience the process before had begun only at the reading that
// showed its later failure not taken, a step timeout after the hold-back.
// Driven through a lapse of the heartbeat, the record is the one a
// process leaves; built here, so that the clock and the lapse need no
// engine of their own.
func TestAResumedJoinsPatienceSkipsAJoinHeldBackByTheHeartbeat(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// A step's answer comes half a second after its start; a note's at once.
	step := func(name string, d time.Duration, status StepStatus, detail, kind string) Step {
		s := Step{Name: name, Status: status, StartedAt: at.Add(d), EndedAt: at.Add(d + time.Second/2), Detail: detail, ErrKind: kind}
		if name == StepReconcile {
			s.EndedAt = s.StartedAt
		}
		return s
	}
	for _, heldBack := range []string{leaseRanOut, leaseRanOutInSave, leaseLapsedRefused} {
		tr := &Transfer{State: StateCompleting, StateAt: at, Sent: Sent{Join: at.Add(40 * time.Second)}, Steps: []Step{
			step(StepTransfer, time.Second, StepFailed, notSentDetail+heldBack, ""),
			step(StepTransfer, 40*time.Second, StepFailed, "fake.Complete: HTTP 503", "provider_unavailable"),
			step(StepReconcile, 41*time.Second, StepSucceeded, notTakenResent, ""),
			step(StepTransfer, 41*time.Second, StepFailed, "fake.Complete: HTTP 503", "provider_unavailable"),
		}}
		en := &entry{t: tr, resumed: true}
		resumedJoinFirstTry(en)
		if want := at.Add(41 * time.Second); !en.firstTry.Equal(want) {
			t.Errorf("held back (%s): the patience begins %s after the state's start: want %s, at the reading that showed the join not taken",
				heldBack, en.firstTry.Sub(at), want.Sub(at))
		}
	}
	// A join whose intent the store refused does begin it, at its failure
	// (unsentTooLong asks the patience there), and so does one held back
	// by the adapter (ErrNotSent), sent again after a back-off with no
	// reading between.
	for _, first := range []Step{
		step(StepTransfer, time.Second, StepFailed, notSentDetail+"the store could not save its intent", ""),
		step(StepTransfer, time.Second, StepFailed, "fake.Complete: HTTP 503 on the read the join needs first", "provider_unavailable"),
	} {
		tr := &Transfer{State: StateCompleting, StateAt: at, Sent: Sent{Join: at.Add(40 * time.Second)}, Steps: []Step{
			first,
			step(StepTransfer, 40*time.Second, StepFailed, "fake.Complete: HTTP 503", "provider_unavailable"),
			step(StepReconcile, 41*time.Second, StepSucceeded, notTakenResent, ""),
			step(StepTransfer, 41*time.Second, StepFailed, "fake.Complete: HTTP 503", "provider_unavailable"),
		}}
		en := &entry{t: tr, resumed: true}
		resumedJoinFirstTry(en)
		if want := at.Add(time.Second + time.Second/2); !en.firstTry.Equal(want) {
			t.Errorf("%q: the patience begins %s after the state's start: want %s, at its failure",
				first.Detail, en.firstTry.Sub(at), want.Sub(at))
		}
	}
}

// A hold, or the agent's hang-up after the join, held back for the
// heartbeat began no patience in its process (afterStep and afterJoin
// back off from errUnsaved and ask no patience of it), and a resumed
// process took it for the first try all the same (resumedFirstTry),
// giving up, after one try of its own, a step the process before would
// have tried again: a hold, the caller given back; the hang-up, the
// transfer completed with the agent's call up.
func TestAResumedStepsPatienceSkipsAStepHeldBackByTheHeartbeat(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		step     string
		state    State
		heldBack []string
	}{
		{StepHangupAgent, StateCompleting, []string{leaseRanOut, leaseLapsed}},
		{StepHold, StateHolding, []string{leaseRanOut, leaseRanOutInSave, leaseLapsedRefused}},
	} {
		step := func(d time.Duration, detail, kind string) Step {
			return Step{Name: tc.step, Status: StepFailed, StartedAt: at.Add(d), EndedAt: at.Add(d + time.Second/2), Detail: detail, ErrKind: kind}
		}
		for _, heldBack := range tc.heldBack {
			tr := &Transfer{State: tc.state, StateAt: at, Steps: []Step{
				step(time.Second, notSentDetail+heldBack, ""),
				step(40*time.Second, "fake: HTTP 503", "provider_unavailable"),
			}}
			en := &entry{t: tr, resumed: true, entered: at.Add(50 * time.Second)}
			resumedFirstTry(en, tc.step)
			if want := at.Add(40*time.Second + time.Second/2); !en.firstTry.Equal(want) {
				t.Errorf("%s held back (%s): the patience begins %s after the state's start: want %s, at the first one sent",
					tc.step, heldBack, en.firstTry.Sub(at), want.Sub(at))
			}
		}
	}
}
