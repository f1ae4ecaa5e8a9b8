package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// run drives one transfer. Only its goroutine touches t; everyone else
// reads saved copies (the store's, or latest).
type run struct {
	e       *Engine
	t       *Transfer
	p       Provider
	flow    Flow
	log     zerolog.Logger
	wake    chan struct{}
	entered time.Time // when t entered its current state
	held    bool      // counted in the on-hold gauge
	// joined: the provider already shows caller and target together (found
	// when resuming), so the join must not be sent again.
	joined bool
	cancel context.CancelFunc // stops driving without compensating (lease lost)
	// latest is a copy of the record as last saved, for Engine.Wait.
	latest atomic.Pointer[Transfer]
	// persistErr is set when a save failed: the run stops driving, because
	// a side effect whose intent is not saved must never be made.
	persistErr error
}

// drive runs the machine until the transfer is terminal or cannot be
// persisted any more.
func (r *run) drive(ctx context.Context) {
	ctx = r.log.WithContext(ctx)
	if r.t.State != StatePending {
		r.reconcile(ctx)
	}
	for !r.t.State.Terminal() && r.persistErr == nil && ctx.Err() == nil {
		switch r.t.State {
		case StatePending:
			r.locate(ctx)
		case StateHolding:
			r.hold(ctx)
		case StateDialing:
			r.dial(ctx)
		case StateConsulting:
			r.consult(ctx)
		case StateCompleting:
			r.complete(ctx)
		case StateRecovering:
			r.recover(ctx)
		default:
			r.fail(ctx, ReasonInternal, fmt.Sprintf("unknown state %q", r.t.State), nil)
		}
	}
	switch {
	case errors.Is(r.persistErr, ErrVersionConflict):
		r.log.Warn().Str("state", string(r.t.State)).
			Msg("another replica took the transfer over; stopped driving it")
	case r.persistErr != nil:
		r.log.Error().Err(r.persistErr).Str("state", string(r.t.State)).
			Msg("cannot save the transfer; stopped driving it so that no unrecorded side effect is made")
	}
	if r.held {
		r.e.m.onHold.WithLabelValues(r.p.Name()).Dec()
	}
}

// save persists t and tells waiters.
func (r *run) save(ctx context.Context) bool {
	if r.persistErr != nil {
		return false
	}
	r.t.UpdatedAt = r.e.now()
	// A save proves the owner alive, and must not write back a lease
	// older than the one the maintenance loop renewed in the store.
	r.t.LeaseExpires = r.t.UpdatedAt.Add(r.e.lease())
	if err := r.e.store.Update(context.WithoutCancel(ctx), r.t); err != nil {
		r.persistErr = err
		return false
	}
	r.latest.Store(r.t.Clone())
	r.e.publish(r.t.ID)
	return true
}

// transition moves t to state `to`, saves it and logs one line.
func (r *run) transition(ctx context.Context, to State) {
	from := r.enter(to)
	if !r.save(ctx) {
		return
	}
	r.announce(from, to)
}

// enter moves t to state `to` in memory, settling the metrics; the caller
// saves it and then announces it.
func (r *run) enter(to State) (from State) {
	from = r.t.State
	now := r.e.now()
	r.e.m.stateSeconds.WithLabelValues(r.p.Name(), string(from)).Observe(now.Sub(r.entered).Seconds())
	r.entered = now
	r.t.State = to
	if to.Terminal() && r.persistErr == nil {
		// Settle the metrics before the terminal state can be read, so that
		// whoever saw it also sees it counted. The outcome has happened at
		// the provider even if saving it fails below.
		r.markHeld(false)
		if o := r.t.Outcome; o != nil {
			r.e.m.finished.WithLabelValues(r.p.Name(), string(to), string(o.Reason)).Inc()
		}
	}
	return from
}

// announce logs one line for a saved transition.
func (r *run) announce(from, to State) {
	ev := r.log.Info().Str("from", string(from)).Str("to", string(to))
	if l := r.t.Legs; !l.Caller.IsZero() {
		ev = ev.Str("caller_call_id", l.Caller.CallID).Str("caller_session_id", l.Caller.SessionID).
			Str("agent_call_id", l.Agent.CallID).Str("consult_call_id", l.Consult.CallID)
	}
	if o := r.t.Outcome; o != nil {
		ev = ev.Str("reason", string(o.Reason)).Bool("caller_restored", o.CallerRestored)
	} else if f := r.t.Failure; f != nil && to == StateRecovering {
		ev = ev.Str("reason", string(f.Reason))
	}
	ev.Msg("transfer " + string(to))
	r.e.crash(r.t, "state:"+string(to))
}

// step saves the intent of a provider side effect, makes it, and saves
// its result. It returns the side effect's error. When the side effect
// succeeds and next is set, the move to state next is saved with the
// result: one durable write instead of two.
func (r *run) step(ctx context.Context, name string, f func(context.Context) error, next State) error {
	r.t.Steps = append(r.t.Steps, Step{Name: name, Status: StepStarted, StartedAt: r.e.now()})
	// Only a step that changes a call needs its intent saved first;
	// reading the provider (locate, verify) can simply be repeated.
	if readOnly := name == StepLocate || name == StepVerify; !readOnly && !r.save(ctx) {
		return r.persistErr
	}
	r.e.crash(r.t, name+":intent")
	sctx, cancel := context.WithTimeout(ctx, r.e.cfg.StepTimeout)
	err := f(sctx)
	cancel()
	r.e.crash(r.t, name+":effect")
	s := &r.t.Steps[len(r.t.Steps)-1]
	s.EndedAt = r.e.now()
	result := "ok"
	if err != nil {
		s.Status, s.Detail, s.Evidence = StepFailed, err.Error(), EvidenceOf(err)
		result = KindOf(err).String()
		r.log.Warn().Err(err).Str("step", name).Msg("transfer step failed")
	} else {
		s.Status = StepSucceeded
	}
	r.e.m.stepSeconds.WithLabelValues(r.p.Name(), name, result).Observe(s.EndedAt.Sub(s.StartedAt).Seconds())
	var from State
	advance := err == nil && next != ""
	if advance {
		from = r.enter(next)
	}
	if !r.save(ctx) {
		return r.persistErr
	}
	r.e.crash(r.t, name+":result")
	if advance {
		r.announce(from, r.t.State)
	}
	return err
}

// register adds an undo unless one for the same action is pending, so a
// step repeated after a restart does not undo twice.
func (r *run) register(action string) {
	if !r.t.pendingUndo(action) {
		r.t.Undo = append(r.t.Undo, Undo{Action: action})
	}
}

// takeSignal reads a client's signal from the store, where any replica
// may have put it.
func (r *run) takeSignal(ctx context.Context) Signal {
	s, err := r.e.store.TakeSignal(context.WithoutCancel(ctx), r.t.ID)
	if err != nil {
		r.log.Warn().Err(err).Msg("reading client signals failed")
		return SignalNone
	}
	return s
}

// note records an observed event (no side effect) as a finished step.
func (r *run) note(name, detail string) {
	now := r.e.now()
	r.t.Steps = append(r.t.Steps, Step{Name: name, Status: StepSucceeded, StartedAt: now, EndedAt: now, Detail: detail})
}

// stopping reports whether shutdown has begun.
func (r *run) stopping() bool {
	select {
	case <-r.e.stop:
		return true
	default:
		return false
	}
}

// interrupted checks for a cancel signal or shutdown between steps and
// starts recovery if there is one.
func (r *run) interrupted(ctx context.Context) bool {
	if s := r.takeSignal(ctx); s == SignalCancel {
		r.fail(ctx, ReasonCancelled, "cancelled by the client", nil)
		r.returnSignal(ctx, s)
		return true
	}
	if r.stopping() {
		r.fail(ctx, ReasonShutdown, "transferd shut down before the transfer finished", nil)
		return true
	}
	return false
}

// fail enters recovering with the given reason.
func (r *run) fail(ctx context.Context, reason Reason, detail string, ev *Evidence) {
	r.t.Failure = &Outcome{Reason: reason, Detail: detail, Evidence: ev}
	r.transition(ctx, StateRecovering)
}

// failErr enters recovering for a step error.
func (r *run) failErr(ctx context.Context, step string, err error) {
	if errors.Is(err, r.persistErr) && r.persistErr != nil {
		return
	}
	r.fail(ctx, reasonFor(KindOf(err)), fmt.Sprintf("%s: %v", step, err), EvidenceOf(err))
}

func (r *run) locate(ctx context.Context) {
	if r.interrupted(ctx) {
		return
	}
	next := StateDialing
	if r.flow.Hold {
		next = StateHolding
	}
	err := r.step(ctx, StepLocate, func(ctx context.Context) error {
		legs, err := r.p.Locate(ctx, r.t)
		if err == nil {
			r.t.Legs = legs
		}
		return err
	}, next)
	if err != nil {
		r.failErr(ctx, StepLocate, err)
	}
}

func (r *run) hold(ctx context.Context) {
	if r.interrupted(ctx) {
		return
	}
	// The undo is registered with the intent: if the hold's response is
	// lost, or the process dies mid-step, the caller is still unheld.
	r.register(StepUnhold)
	if err := r.step(ctx, StepHold, func(ctx context.Context) error { return r.p.Hold(ctx, r.t) }, StateDialing); err != nil {
		r.failErr(ctx, StepHold, err)
		return
	}
	r.markHeld(true)
}

func (r *run) markHeld(held bool) {
	if held != r.held {
		r.held = held
		g := r.e.m.onHold.WithLabelValues(r.p.Name())
		if held {
			g.Inc()
		} else {
			g.Dec()
		}
	}
}

func (r *run) dial(ctx context.Context) {
	if r.interrupted(ctx) {
		return
	}
	r.register(StepHangup)
	err := r.step(ctx, StepDial, func(ctx context.Context) error {
		leg, err := r.p.Dial(ctx, r.t)
		if !leg.IsZero() {
			r.t.Legs.Consult = leg
		}
		if err == nil {
			r.t.ConsultDeadline = r.e.now().Add(r.t.Request.ConsultTimeout)
		}
		return err
	}, StateConsulting)
	if err != nil {
		r.failErr(ctx, StepDial, err)
	}
}

// poller paces observations: immediately, then doubling up to the maximum.
type poller struct {
	timer      *time.Timer
	next, max  time.Duration
	resetFirst time.Duration
}

func newPoller(first, max time.Duration) *poller {
	return &poller{timer: time.NewTimer(0), next: first, max: max, resetFirst: first}
}

func (p *poller) again() {
	p.timer.Reset(p.next)
	p.next = min(p.next*2, p.max)
}

func (p *poller) now() {
	p.timer.Reset(0)
	p.next = p.resetFirst
}

func (r *run) consult(ctx context.Context) {
	deadline := time.NewTimer(time.Until(r.t.ConsultDeadline))
	defer deadline.Stop()
	poll := newPoller(r.e.cfg.PollInterval, r.e.cfg.PollMaxInterval)
	defer poll.timer.Stop()
	var lastErr error // the latest observation failed with it
	for {
		select {
		case <-poll.timer.C:
			// Signals put by another replica arrive here.
			if r.signalled(ctx) {
				return
			}
			obs, err := r.observe(ctx)
			if err != nil {
				if k := KindOf(err); k == KindProviderAuth || k == KindInternal {
					r.failErr(ctx, "observe", err)
					return
				}
				// Transient: the provider is unreachable or throttling.
				// Keep trying until the consult deadline.
				lastErr = err
				r.log.Warn().Err(err).Msg("observing the consult failed; will retry")
				poll.again()
				continue
			}
			lastErr = nil
			if r.consulted(ctx, obs) {
				return
			}
			poll.again()
		case <-r.wake:
			// A local client signal or a provider event.
			if r.signalled(ctx) {
				return
			}
			poll.now()
		case <-deadline.C:
			if lastErr != nil {
				// The deadline passed while the provider could not be
				// read: what the target did is unknown.
				r.failErr(ctx, "observe", lastErr)
				return
			}
			if r.t.Answered {
				r.fail(ctx, ReasonTimeout, fmt.Sprintf("not completed within consult_timeout %s", r.t.Request.ConsultTimeout), nil)
			} else {
				r.fail(ctx, ReasonNoAnswer, fmt.Sprintf("the target did not answer within consult_timeout %s", r.t.Request.ConsultTimeout), nil)
			}
			return
		case <-r.e.stop:
			r.fail(ctx, ReasonShutdown, "transferd shut down while the transfer was consulting", nil)
			return
		case <-ctx.Done():
			return
		}
	}
}

// signalled applies a pending client signal while consulting and reports
// whether it ended the consult. The engine accepted it only when valid,
// but the state may have moved since: a complete is applied only once the
// target answered.
func (r *run) signalled(ctx context.Context) bool {
	switch s := r.takeSignal(ctx); s {
	case SignalCancel:
		r.fail(ctx, ReasonCancelled, "cancelled by the client", nil)
		r.returnSignal(ctx, s)
		return true
	case SignalComplete:
		if r.t.Answered {
			r.transition(ctx, StateCompleting)
			r.returnSignal(ctx, s)
			return true
		}
		r.log.Warn().Msg("ignored a complete signal: the target has not answered")
	}
	return false
}

// returnSignal puts a taken signal back when acting on it could not be
// saved because another replica owns the transfer now: it is theirs to
// act on.
func (r *run) returnSignal(ctx context.Context, s Signal) {
	if errors.Is(r.persistErr, ErrVersionConflict) {
		if err := r.e.store.PutSignal(context.WithoutCancel(ctx), r.t.ID, s); err != nil {
			r.log.Warn().Err(err).Msg("could not hand a client signal to the transfer's new owner")
		}
	}
}

func (r *run) observe(ctx context.Context) (Observation, error) {
	octx, cancel := context.WithTimeout(ctx, r.e.cfg.StepTimeout)
	defer cancel()
	obs, err := r.p.Observe(octx, r.t)
	if err == nil {
		r.learn(ctx, obs.ConsultLeg)
	}
	return obs, err
}

// learn saves consult ids the provider revealed.
func (r *run) learn(ctx context.Context, l LegRef) {
	c := &r.t.Legs.Consult
	changed := false
	set := func(dst *string, v string) {
		if v != "" && *dst != v {
			*dst, changed = v, true
		}
	}
	set(&c.CallID, l.CallID)
	set(&c.SessionID, l.SessionID)
	set(&c.Server, l.Server)
	set(&c.BridgeID, l.BridgeID)
	if changed {
		r.save(ctx)
	}
}

// consulted applies one observation made while consulting and reports
// whether the state changed.
func (r *run) consulted(ctx context.Context, obs Observation) bool {
	switch {
	case obs.Caller == CallerGone && (obs.Consult != ConsultEnded || obs.EndReason == ""):
		r.fail(ctx, ReasonCallerHungUp, "the caller hung up during the consult", nil)
		return true
	case obs.Consult == ConsultEnded && obs.Caller != CallerTransferred:
		// Also when the caller's call ended with it: a provider that ends
		// the caller's call when its own transfer fails (Bandwidth) reports
		// the consult's reason, not a hang-up by the caller.
		reason := obs.EndReason
		if reason == "" {
			reason = ReasonRejected
			if r.t.Answered {
				reason = ReasonTargetHungUp
			}
		}
		detail := obs.Detail
		if detail == "" {
			detail = "the consult call ended before the transfer completed"
		}
		r.fail(ctx, reason, detail, nil)
		return true
	case obs.Consult == ConsultAnswered || obs.Caller == CallerTransferred:
		first := !r.t.Answered
		if first {
			r.t.Answered = true
			r.note(StepAnswered, "the target answered")
		}
		// Also when the answer was recorded before a restart.
		if r.t.Request.Completion == CompletionAuto {
			r.transition(ctx, StateCompleting)
			return true
		}
		if first {
			r.save(ctx)
			r.log.Info().Msg("target answered; waiting for the client to complete or cancel")
		}
	}
	return false
}

func (r *run) complete(ctx context.Context) {
	// joinErr is a join whose result is unknown (the provider timed out or
	// its response was lost): the join may have happened, and undoing it
	// would hang up the leg that now carries the caller. The provider's
	// state decides, as for a join that succeeded.
	var joinErr error
	if s := r.t.lastStep(StepTransfer); s != nil && s.Status == StepSucceeded {
		r.joined = true // a previous process sent it
	}
	if r.flow.Join && !r.joined {
		if err := r.step(ctx, StepTransfer, func(ctx context.Context) error { return r.p.Complete(ctx, r.t) }, ""); err != nil {
			if k := KindOf(err); r.persistErr != nil || (k != KindProviderUnavailable && k != KindTimeout) {
				r.failErr(ctx, StepTransfer, err)
				return
			}
			joinErr = err
		}
	}
	// The provider accepts a join asynchronously (NetSapiens answers 202):
	// only its state says whether caller and target are connected.
	var end *Outcome
	err := r.step(ctx, StepVerify, func(context.Context) error {
		vctx, cancel := context.WithTimeout(ctx, r.e.cfg.VerifyTimeout)
		defer cancel()
		poll := newPoller(r.e.cfg.PollInterval, r.e.cfg.PollMaxInterval)
		defer poll.timer.Stop()
		var lastErr error
		for {
			select {
			case <-poll.timer.C:
			case <-r.wake:
			case <-vctx.Done():
				if lastErr != nil {
					return fmt.Errorf("caller not seen connected to the target within %s: %w", r.e.cfg.VerifyTimeout, lastErr)
				}
				return E("verify", KindProviderRejected, fmt.Errorf(
					"the provider accepted the transfer but the caller was not connected to the target within %s", r.e.cfg.VerifyTimeout))
			}
			obs, err := r.observe(vctx)
			switch {
			case err != nil && vctx.Err() != nil:
				// Cut off by our own deadline: not the provider's answer.
			case err != nil:
				lastErr = err
			case obs.Caller == CallerTransferred:
				return nil
			case obs.Caller == CallerGone:
				end = &Outcome{Reason: ReasonCallerHungUp, Detail: "the caller hung up while the transfer was completing"}
				return errors.New(end.Detail)
			case obs.Consult == ConsultEnded:
				end = &Outcome{Reason: ReasonTargetHungUp, Detail: "the target hung up while the transfer was completing"}
				return errors.New(end.Detail)
			}
			poll.again()
		}
	}, "")
	if err != nil {
		switch {
		case end != nil:
			r.fail(ctx, end.Reason, end.Detail, nil)
		case joinErr != nil && r.persistErr == nil:
			r.failErr(ctx, StepTransfer, joinErr)
		default:
			r.failErr(ctx, StepVerify, err)
		}
		return
	}
	// The consult leg now carries the caller: it must never be undone.
	for i := range r.t.Undo {
		r.t.Undo[i].Done = true
	}
	r.markHeld(false)
	r.finish(ctx, StateCompleted, Outcome{Reason: ReasonTransferred, Detail: "the caller is connected to the target"})
}

// recover runs the registered undos newest first on a context detached
// from shutdown, then ends the transfer.
func (r *run) recover(ctx context.Context) {
	failure := r.t.Failure
	if failure == nil {
		failure = &Outcome{Reason: ReasonInternal, Detail: "recovering without a recorded failure"}
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.e.cfg.CompensationTimeout)
	defer cancel()
	restored := failure.Reason != ReasonCallerHungUp
	var notes []string
	for i := len(r.t.Undo) - 1; i >= 0; i-- {
		u := &r.t.Undo[i]
		if u.Done {
			continue
		}
		if u.Action == StepUnhold && failure.Reason == ReasonCallerHungUp {
			u.Done = true // nobody to take off hold
			continue
		}
		err := r.undo(cctx, u.Action)
		switch {
		case err == nil:
			u.Done = true
			if u.Action == StepUnhold {
				r.markHeld(false)
			}
		case u.Action == StepUnhold && KindOf(err) == KindCallNotFound:
			// The caller's call is gone: hung up while held.
			u.Done = true
			r.markHeld(false)
			restored = false
			notes = append(notes, "the caller hung up before being taken off hold")
		default:
			if u.Action == StepUnhold {
				restored = false
			}
			notes = append(notes, fmt.Sprintf("%s failed: %v", u.Action, err))
		}
		if r.persistErr != nil {
			return
		}
	}
	if restored && (r.t.lastStep(StepHold) != nil || r.t.lastStep(StepDial) != nil) {
		// Providers accept an unhold (and end a failed transfer of their
		// own) asynchronously: only their state says the caller is back.
		ok, why := r.confirmRestored(cctx)
		restored = ok
		if why != "" {
			notes = append(notes, why)
		}
	}
	out := *failure
	out.CallerRestored = restored
	for _, n := range notes {
		out.Detail += "; " + n
	}
	final := StateFailed
	if failure.Reason == ReasonCancelled {
		final = StateCancelled
	}
	r.finish(ctx, final, out)
}

// confirmRestored reads the provider until it shows the caller connected
// as before (not held), the caller gone, or VerifyTimeout passes.
func (r *run) confirmRestored(ctx context.Context) (bool, string) {
	vctx, cancel := context.WithTimeout(ctx, r.e.cfg.VerifyTimeout)
	defer cancel()
	poll := newPoller(r.e.cfg.PollInterval, r.e.cfg.PollMaxInterval)
	defer poll.timer.Stop()
	var seen *Observation // the last successful reading
	var lastErr error
	for {
		select {
		case <-poll.timer.C:
		case <-vctx.Done():
			if seen == nil {
				// The provider could not be read at all: the undos it
				// accepted stand, but nobody saw their effect.
				return true, fmt.Sprintf("the caller's return was not confirmed: %v", lastErr)
			}
			return false, fmt.Sprintf("the provider did not show the caller back on the call within %s (caller %s)",
				r.e.cfg.VerifyTimeout, seen.Caller)
		}
		obs, err := r.observe(vctx)
		switch {
		case err != nil:
			lastErr = err
		case obs.Caller == CallerConnected:
			return true, ""
		case obs.Caller == CallerGone:
			why := "the provider did not return the caller to the original call: the caller's call has ended"
			if obs.Detail != "" {
				why += " (" + strings.TrimPrefix(obs.Detail, "; ") + ")"
			}
			return false, why
		default:
			seen = &obs
		}
		poll.again()
	}
}

// undo runs one compensation until it succeeds, the call is gone, or the
// compensation deadline passes. Adapters already retry transient errors;
// this loop adds patience across a longer provider outage, because a
// caller left on hold is the failure transferd exists to prevent.
func (r *run) undo(ctx context.Context, action string) error {
	f := r.p.Unhold
	if action == StepHangup {
		f = r.p.HangupConsult
	}
	wait := r.e.cfg.PollInterval
	for {
		err := r.step(ctx, action, func(ctx context.Context) error { return f(ctx, r.t) }, "")
		if err == nil || r.persistErr != nil {
			return err
		}
		switch KindOf(err) {
		case KindProviderUnavailable, KindTimeout:
		default:
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(wait*2, r.e.cfg.PollMaxInterval)
	}
}

// finish ends the transfer; transition counts it.
func (r *run) finish(ctx context.Context, final State, out Outcome) {
	r.t.Outcome = &out
	r.transition(ctx, final)
}

// reconcile runs when a transfer is resumed by a process that did not
// start it (a restart, or a replica taking over an expired lease). The
// last saved step may be an intent whose result was never saved; the
// provider's state says what really happened. Then the machine simply
// continues from the saved state: every step is safe to repeat (adapters
// look for a consult call before dialling another, undos are idempotent
// and registered once), the consult deadline is saved, and a join is
// sent again only if the provider does not show it done.
func (r *run) reconcile(ctx context.Context) {
	if r.t.CallerHeld() {
		r.markHeld(true)
	}
	obs, err := r.observe(ctx)
	detail := "resumed by " + r.e.cfg.Owner
	if err == nil {
		detail += fmt.Sprintf("; provider shows caller %s, consult %s", obs.Caller, obs.Consult)
	} else {
		detail += "; the provider could not be read: " + err.Error()
	}
	r.note(StepReconcile, detail)
	r.log.Info().Str("state", string(r.t.State)).Str("detail", detail).Msg("resuming transfer")
	if err != nil {
		r.save(ctx)
		return
	}
	switch r.t.State {
	case StateConsulting:
		if (obs.Consult == ConsultAnswered || obs.Caller == CallerTransferred) && !r.t.Answered {
			r.t.Answered = true
			r.note(StepAnswered, "the target answered (seen when resuming)")
		}
	case StateCompleting:
		if obs.Caller == CallerTransferred {
			r.joined = true
		}
	}
	r.save(ctx)
}
