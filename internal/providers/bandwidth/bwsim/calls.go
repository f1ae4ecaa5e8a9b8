package bwsim

import (
	"fmt"
	"strconv"
	"time"
)

// This file is the call state machine (notes §12.3). Every function ending in Locked runs
// under s.mu.

// newCallLocked creates a call leg in state "started".
func (s *Sim) newCallLocked(direction, from, to string) *call {
	now := s.now()
	c := &call{
		Call: Call{
			ID:                  newID("c-"),
			Direction:           direction,
			From:                from,
			To:                  to,
			State:               StateStarted,
			StartTime:           now,
			RecordingFileFormat: "wav",
		},
		seq: s.nextSeq(),
	}
	s.calls[c.ID] = c
	s.recordEventLocked(c, "create", "")
	return c
}

// dialLocked starts ringing an outbound leg: the dialled number's Behaviour decides what
// happens, and the leg times out after ring if nothing else happened first.
func (s *Sim) dialLocked(c *call, ring time.Duration) {
	id := c.ID
	c.timers = append(c.timers, s.afterLocked(ring, func() { s.timeoutLocked(s.calls[id]) }))
	b, ok := s.behaviours[c.To]
	if !ok {
		b = s.cfg.DefaultBehaviour
	}
	later := func(d time.Duration, fn func(c *call)) {
		c.timers = append(c.timers, s.afterLocked(d, func() {
			if c := s.calls[id]; c != nil && c.State == StateStarted {
				fn(c)
			}
		}))
	}
	if s.vanishes(b) {
		// Config.VanishFailedLegs: refused before any read could see it.
		c.vanished = true
		cause := CauseUserBusy
		if b.Mode == ModeReject {
			cause = CauseCallRejected
		}
		s.endLocked(c, StateCompleted, cause)
		return
	}
	switch b.Mode {
	case ModeNever, ModeManual:
	case ModeAfter:
		d := b.Delay
		if d == 0 {
			d = s.cfg.AnswerDelay
		}
		later(d, s.answerLocked)
	case ModeBusy:
		later(b.Delay, func(c *call) { s.endLocked(c, StateCompleted, CauseUserBusy) })
	case ModeReject:
		later(b.Delay, func(c *call) { s.endLocked(c, StateCompleted, CauseCallRejected) })
	default: // ModeAnswer and unknown modes
		later(b.Delay, s.answerLocked)
	}
}

func (s *Sim) stopCallTimersLocked(c *call) {
	for _, t := range c.timers {
		s.stopTimerLocked(t)
	}
	c.timers = nil
}

// answerLocked answers a started call: it becomes active, joins the bridge it was created
// into, and a transfer B-leg gets connected to its A-leg.
func (s *Sim) answerLocked(c *call) {
	if c == nil || c.State != StateStarted {
		return
	}
	s.stopCallTimersLocked(c)
	c.State = StateActive
	c.ActiveTime = s.now()
	s.emitLocked(c, "answer", "")
	if bid := c.PendingBridgeID; bid != "" {
		c.PendingBridgeID = ""
		// Join-on-answer is [INF]: the docs only say the call is placed in the bridge. A
		// bridge that filled up or completed meanwhile is not joined.
		if b := s.bridges[bid]; b != nil && b.State != BridgeCompleted && len(b.CallIDs) < 2 && c.BridgeID == "" {
			s.joinBridgeLocked(b, c)
		}
	}
	// A bridge holding this call (joined now, or bridged while it rang) may become active.
	if b := s.bridges[c.BridgeID]; b != nil {
		s.refreshBridgeLocked(b)
	}
	if a := s.calls[c.ParentCallID]; a != nil && a.State == StateTransferring && a.TransferCallID == c.ID {
		// "When the final destination answers the call and the whisper is finished, the two
		// will be bridged together" (howto/callScreen.md). The whisper takes no time here.
		if c.WhisperAudio != nil {
			c.WhisperPlayed = true
		}
		a.peer, c.peer = c.ID, a.ID
		a.State = s.cfg.TransferredALegState
		s.recordEventLocked(a, "transfer-connected", c.ID)
	}
}

// timeoutLocked ends an outbound leg nobody answered within its callTimeout. The timeout
// event is [DOC]; the hangup after it, and its cause, are Config.TimeoutHangupCause
// ([GUESS]). The call itself ends NO_ANSWER whatever its hangup event says.
func (s *Sim) timeoutLocked(c *call) {
	if c == nil || c.State != StateStarted {
		return
	}
	s.emitLocked(c, "timeout", "")
	switch cause := s.cfg.TimeoutHangupCause; cause {
	case TimeoutHangupNone:
		s.finishLocked(c, StateCompleted, CauseNoAnswer, "")
	default:
		s.finishLocked(c, StateCompleted, CauseNoAnswer, cause)
	}
}

// endLocked ends the call with the given final state and hangup cause, and everything that
// hangs on it: its bridge membership, a connected transfer peer, a ringing transfer B-leg,
// and, for a B-leg that failed before answering, its A-leg per Config.TransferFailure.
func (s *Sim) endLocked(c *call, state, cause string) {
	s.finishLocked(c, state, cause, cause)
}

// finishLocked is endLocked with the cause its hangup event reports, "" for no hangup
// event (a timeout under TimeoutHangupNone).
func (s *Sim) finishLocked(c *call, state, cause, eventCause string) {
	if c == nil || c.Ended() {
		return
	}
	wasStarted := c.State == StateStarted
	s.stopCallTimersLocked(c)
	c.State = state
	c.Cause = cause
	c.EndTime = s.now()
	c.Audio = nil
	c.PendingBridgeID = ""
	if b := s.bridges[c.BridgeID]; b != nil {
		s.leaveBridgeLocked(b, c)
		s.refreshBridgeLocked(b)
	}
	if eventCause != "" {
		s.emitLocked(c, "hangup", eventCause)
	}

	// A connected transfer ends as a whole: "The Call leg A is hungup after the transferee
	// hangs up" (v1 BXML <Transfer>); the REST transfer is assumed to match [GUESS].
	if p := s.calls[c.peer]; p != nil {
		c.peer, p.peer = "", ""
		s.endLocked(p, StateCompleted, CauseNormalClearing)
	}
	// The A-leg hung up while its B-leg was still ringing: cancel the B-leg.
	if b := s.calls[c.TransferCallID]; b != nil && b.State == StateStarted && b.ParentCallID == c.ID {
		s.endLocked(b, StateCompleted, CauseOriginatorCancel)
	}
	if wasStarted {
		s.transferLegFailedLocked(c)
	}
}

// transferLegFailedLocked applies Config.TransferFailure to the A-leg of a B-leg that ended
// without answering.
func (s *Sim) transferLegFailedLocked(b *call) {
	a := s.calls[b.ParentCallID]
	if a == nil || a.State != StateTransferring || a.TransferCallID != b.ID {
		return
	}
	switch s.cfg.TransferFailure {
	case TransferFailureRestore:
		a.State = StateActive
		s.recordEventLocked(a, "transfer-failed", b.Cause)
	default:
		s.endLocked(a, StateCompleted, CauseNormalClearing)
	}
}

// hangupByAppLocked is {"state":"completed"} from the application.
func (s *Sim) hangupByAppLocked(c *call) {
	switch {
	case c.live():
		s.endLocked(c, StateCompleted, CauseNormalClearing)
	case c.Direction == DirectionOut:
		// Cancelling an unanswered outbound call; the cause is a [GUESS].
		s.endLocked(c, StateCompleted, CauseOriginatorCancel)
	default:
		// Hanging up an unanswered inbound call refuses it [GUESS].
		s.endLocked(c, StateCompleted, CauseCallRejected)
	}
}

// recordEventLocked appends to the call's event history (GET calls/{id}/events).
func (s *Sim) recordEventLocked(c *call, name, data string) {
	c.events = append(c.events, callEvent{
		ID:   "ev-" + strconv.Itoa(len(c.events)+1),
		Time: formatTime(s.now()),
		Name: name,
		Data: data,
	})
}

// PlaceCall simulates an inbound call to the account, answered (unless in.Unanswered). With
// in.Agent it also creates an answered outbound leg from in.To to the agent and a bridge with
// both, and the returned call carries that BridgeID; PlaceCallWithAgent returns all three.
func (s *Sim) PlaceCall(in InboundCall) (Call, error) {
	a, _, _, err := s.PlaceCallWithAgent(in)
	return a, err
}

// PlaceCallWithAgent is PlaceCall returning also the agent leg and the bridge (zero values
// without in.Agent).
func (s *Sim) PlaceCallWithAgent(in InboundCall) (Call, Call, Bridge, error) {
	if in.From == "" || in.To == "" {
		return Call{}, Call{}, Bridge{}, fmt.Errorf("bwsim: place call: from and to are required: %w", ErrInvalid)
	}
	if in.Agent != "" && in.Unanswered {
		return Call{}, Call{}, Bridge{}, fmt.Errorf("bwsim: place call: an unanswered call cannot be bridged to an agent: %w", ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.notifyLocked()
	a := s.newCallLocked(DirectionIn, in.From, in.To)
	a.CallbackURL = in.CallbackURL
	// The docs' incomingcall carries callState "active" (sic) even before the answer.
	s.emitLocked(a, "incomingcall", "")
	if in.Unanswered {
		return a.Call.clone(), Call{}, Bridge{}, nil
	}
	s.answerLocked(a)
	if in.Agent == "" {
		return a.Call.clone(), Call{}, Bridge{}, nil
	}
	g := s.newCallLocked(DirectionOut, in.To, in.Agent)
	g.CallbackURL = in.CallbackURL
	s.answerLocked(g)
	b := s.newBridgeLocked(true)
	s.joinBridgeLocked(b, a)
	s.joinBridgeLocked(b, g)
	s.refreshBridgeLocked(b)
	return a.Call.clone(), g.Call.clone(), b.Bridge.clone(), nil
}

// Answer answers, now, every ringing outbound leg to the number (for ModeManual, or to cut a
// delay short). It returns ErrNotRinging (an ErrInvalidState) when nothing rings there.
func (s *Sim) Answer(number string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.sortedCallsLocked() {
		if c.Direction == DirectionOut && c.State == StateStarted && c.To == number {
			s.answerLocked(c)
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("bwsim: answer %s: %w", number, ErrNotRinging)
	}
	s.notifyLocked()
	return nil
}

// Hangup makes the remote party of the call hang up: a connected call ends with
// NORMAL_CLEARING, a ringing outbound leg is declined (CALL_REJECTED) and an unanswered
// inbound call is abandoned by its caller (ORIGINATOR_CANCEL).
func (s *Sim) Hangup(callID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls[callID]
	switch {
	case c == nil:
		return fmt.Errorf("bwsim: hangup %s: %w", callID, ErrNotFound)
	case c.Ended():
		return fmt.Errorf("bwsim: hangup %s: call is %s: %w", callID, c.State, ErrInvalidState)
	case c.live():
		s.endLocked(c, StateCompleted, CauseNormalClearing)
	case c.Direction == DirectionOut:
		s.endLocked(c, StateCompleted, CauseCallRejected)
	default:
		s.endLocked(c, StateCompleted, CauseOriginatorCancel)
	}
	s.notifyLocked()
	return nil
}

// Timeout expires the ring timer of an unanswered outbound leg now: the deterministic way to
// simulate "no answer" without waiting for callTimeout.
func (s *Sim) Timeout(callID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls[callID]
	switch {
	case c == nil:
		return fmt.Errorf("bwsim: timeout %s: %w", callID, ErrNotFound)
	case c.State != StateStarted || c.Direction != DirectionOut:
		return fmt.Errorf("bwsim: timeout %s: not a ringing outbound leg (%s): %w", callID, c.State, ErrInvalidState)
	}
	s.timeoutLocked(c)
	s.notifyLocked()
	return nil
}

// formatTime renders API timestamps as the docs do: ISO 8601 UTC, whole seconds.
func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// formatEventTime renders callback timestamps as the docs do: ISO 8601 UTC with milliseconds.
func formatEventTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
