package orchestrator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/sendgate"
)

// This file is the level-triggered machine. Each reconcile compares what
// the provider shows of a transfer (a reading of its watcher) with the
// end state the transfer promises — the caller with the target, or the
// caller back with the agent, not held, and no leg of ours alive — and
// takes the next action toward it. Unknown (a reading failed, a new call
// not listed yet, an accepted action not applied yet) is never taken for
// gone, failed or done:
//
//   - Dial is sent at most once, and the join is never sent again on an
//     answer lost: that is resolved by watching. A join is sent again
//     only once a reading taken after it could have applied shows it did
//     not take: in its second form (JoinRetrier), or in the same form
//     when it may never have reached the provider (it failed on the
//     way, or the process that sent it stopped before saving its answer
//     and there is no other form; where there is, the other is sent,
//     and the first once more should that not take either).
//   - A join whose effect is unknown is never undone. It is verified for
//     VerifyTimeout; a provider that cannot be read about it for that long
//     ends the transfer unverified, and the sweeper verifies it from then.
//   - Compensations need no reading: the consult is hung up by our own
//     call-id or tag, the caller unheld by the saved id; they are sent
//     again while a reading taken after them still shows their target
//     state missing.
//   - A consult not seen within the visibility window counts as ended
//     for an unknown reason (the caller comes back at once); a tombstone
//     keeps watching for it after the transfer ended.
//   - A recovery whose effect the provider does not show within
//     VerifyTimeout ends with an unverified outcome and a cleanup
//     obligation that the sweeper (the same reconcile on a terminal
//     transfer) keeps working on until the provider shows it done.

// entry is this replica's working state of one open transfer it owns.
type entry struct {
	id string
	// t is the working record while the worker holding id reconciles it:
	// a clone of cur, stored back as cur when the reconcile ends. At rest
	// it is nil, so that a parked transfer keeps one copy of its record.
	t    *Transfer
	p    Provider
	flow Flow
	// log carries the transfer's fields while a worker reconciles it; at
	// rest it is the engine's logger, since a logger's context is a
	// buffer of its own (half a kilobyte) that a parked transfer would
	// keep for nothing. A pointer: a zerolog.Logger is 112 bytes, which
	// every parked transfer's entry would carry.
	log *zerolog.Logger
	w   *watcher
	// cur is the record as last reconciled or saved, for the watcher's
	// Read and the next reconcile. A stored record is never modified
	// again.
	cur atomic.Pointer[Transfer]
	// shown is the record as last saved (or adopted, or claimed), for
	// readers (Wait, the check of a client's signal): a reconcile whose
	// saves failed leaves in cur what the store does not have, which a
	// process resuming the transfer does not know of. Shown, a long poll
	// reported an end never saved (the next process reported another),
	// and a complete was accepted on an answer never saved (and dropped
	// by the next process).
	shown atomic.Pointer[Transfer]
	// published is Engine.published as it stood once the last saved (or
	// claimed) record was stored as cur: a reading noted at or after it
	// was read for that record or a later one (see reading).
	published uint64
	// subscribed is the count of readings its watcher had begun when the
	// transfer joined it (subscribe): a reading counted up to it was not
	// read for this transfer (see reading).
	subscribed uint64
	// signal: a client signal may be pending in the store.
	signal atomic.Bool
	// gate orders a client's signal against the worker's decisions on
	// this replica. Engine.signal holds it while it checks the published
	// record and puts the signal; the worker takes it for a moment after
	// each save (once the new record is published), and holds it through
	// every consulting pass, whose decisions must take a signal accepted
	// before them into account. So a signal checked against a record the
	// worker has since moved past is in the store, and its flag set, by
	// the time the worker looks again (the join's last look: step), and
	// one checked later sees the new record and is refused. Signals put
	// through another replica are ordered by the version they are put at
	// (Store.PutSignal). A channel of one, so that a signal gives up
	// with its request's context: the worker may hold the gate through a
	// save that a failing store keeps retrying.
	gate chan struct{}
	// gated: the worker holds gate (save must not take it again).
	gated bool
	// lookedLate: recovering has read the store once for a signal put
	// through another replica as this one decided to give up.
	lookedLate bool
	// looked, lookedSignal: the last save asked the store to look for a
	// pending signal (Transfer.LookForSignal), which it did and found
	// lookedSignal; the join's last look takes that instead of a read.
	looked       bool
	lookedSignal Signal
	entered      time.Time // when t entered its state (in this process)
	resumed      bool      // another process drove it before
	// adoptedAt is when this process took the transfer up from another
	// (resumed): every request of that process was written before it
	// (see hangupSettledAt). Claimed from a hand-over, it is the moment
	// the hand-over says every request sent unrecorded went out before
	// (unrecordedUntil), another replica's; zero when nothing was.
	adoptedAt time.Time
	// outlived: a reading taken a visibility window after the adoption
	// showed the consult live, so that a hang-up the process before sent
	// unrecorded has landed without ending it (see whoEnded). Atomic for
	// the tests only: the entry's worker alone writes it.
	outlived atomic.Bool
	// liveAt is when the latest reading of a transfer resumed with an
	// adoption's wait began that showed its consult live, or what the
	// hand-over it was claimed from said of it (see seenLiveAt): a
	// hand-over says it, for the next replica to judge by its own window.
	liveAt time.Time
	noted  bool // the resume was recorded
	// joinBefore: the join a stopped process may have sent, or one that
	// failed on the way, which a reading showed did not take, while it is
	// sent again (see completing); what the record says went out if the
	// new one does not.
	joinBefore time.Time

	held    bool // counted in the callers-on-hold gauge
	counted bool // counted in the cleanups-pending gauge (see setPending)
	// ended is what the working record's end counts (transferd_transfers_total
	// and the like) once a save has written it (see enter).
	ended *endCount

	// Pacing of a step that failed transiently.
	retries  int
	retryAt  time.Time
	firstTry time.Time
	// redoUnhold: the recovery's or sweep's unhold failed and is due
	// again (a failed hang-up is read from the record: lastFailed).
	redoUnhold bool
	// hangupUnseen: the last hang-up was sent before the consult was ever
	// seen, so it may have found nothing; the consult appearing in a
	// reading started after the hang-up was answered makes it due again
	// at once.
	hangupUnseen bool
	// judgeAt: a reading showed a compensation still needed but started
	// too early to prove it did not take (see compensate); a reading
	// started at judgeAt can, and the transfer looks again then.
	judgeAt    time.Time
	callerGone bool // the provider said the caller's call is gone
	// notFound counts unholds answered "not found" (see callerSeenUp).
	notFound      int
	unholdRefused string
	warnedUnread  bool
	// warnedOpen: warnStillOpen has said this life that the obligation
	// stays open.
	warnedOpen bool

	// unsaved: the working record carries a change (a step's result, a
	// move) that the next save writes; the reconcile saves it at its end
	// if nothing else did (see saveNext).
	unsaved bool

	lost        bool // another replica owns the transfer now
	saveFailing bool // the last save failed (not a conflict)
	// lapses is the engine's lease lapse count when the transfer was
	// last known to be this replica's (adopted, or saved): a restorative
	// step whose intent cannot be saved is sent only if no lapse came
	// since (see step).
	lapses      int64
	warnedLease bool // a step was held back for a lapsed heartbeat
	// claimed is the record of this transfer as this replica claimed it
	// back from another (see Engine.reclaim): the next reconcile goes on
	// from it, whatever this entry held.
	claimed atomic.Pointer[Transfer]
	// recheck: the store did not list the transfer as this replica's
	// after a lapse of its heartbeat (Engine.lookForTakeovers); the next
	// reconcile reads its record first (Engine.takenOver).
	recheck atomic.Bool
	// unsettled is a signal acted on whose effect could not be saved yet:
	// it is cleared from the store after the next successful save.
	unsettled Signal
	// completeWaits: a complete is pending while the record does not
	// show the target's answer yet (see consulting); it is acted on once
	// a reading shows it.
	completeWaits bool
}

// errUnsaved says that a step's intent could not be saved, so its side
// effect was not made.
var errUnsaved = errors.New("the step's intent could not be saved")

// errSlowIntent says that a step was not sent because its intent took
// longer than the step timeout to save (see step). It is an errUnsaved,
// whose handling it shares, but its intent was saved: a step given up
// for it (unsentTooLong) is saved as given up.
var errSlowIntent error = slowIntentError{}

type slowIntentError struct{}

func (slowIntentError) Error() string {
	return "not sent: its intent took longer than the step timeout to save, again past the step's patience"
}

func (slowIntentError) Is(target error) bool { return target == errUnsaved }

// errIntentRefused says that a step was not sent because the store
// failed to save its intent while this replica's heartbeat held (a store
// that refuses one table's or one row's writes, a full disk, a trigger).
// It is an errUnsaved; a step refused so past its patience is given up
// (unsentTooLong), in memory only, as nothing can be saved.
var errIntentRefused error = intentRefusedError{}

type intentRefusedError struct{}

func (intentRefusedError) Error() string {
	return "not sent: the store could not save its intent, again past the step's patience"
}

func (intentRefusedError) Is(target error) bool { return target == errUnsaved }

// unsentTooLong reports whether err says a step was not sent for its
// intent's save, again past the step's patience: the store commits, but
// slower than a step may take, every time (errSlowIntent), or refuses
// the intent while the heartbeat is renewed (errIntentRefused). Tried
// again without end, a hold, a dial or a join kept the caller held for as
// long as the store was slow or refusing; given up, the transfer fails
// and its recovery, whose unhold and hang-up are sent whatever their
// saves take (and with none, while the heartbeat has not lapsed since the
// last save), gives the caller back.
//
// Given up on a refused save, the failure is the working record's only:
// readers see the last saved record, and the end is counted and
// announced once a save goes through. A process that resumes the saved
// record instead (this one stopped first) takes up the transfer from
// there and reads the provider as it goes (a hold resent, a dial that
// rings the target, a join judged by readings), ending it with the
// caller back or with the target; it is not left held.
func (e *Engine) unsentTooLong(en *entry, err error) bool {
	return (errors.Is(err, errSlowIntent) || errors.Is(err, errIntentRefused)) && !e.patient(en)
}

// errCancelledFirst says that the join was not sent because a cancel the
// client was told of came in as the transfer moved to completing.
var errCancelledFirst = errors.New("the client's cancel came before the join was sent")

// process reconciles one transfer taken from the queue.
func (e *Engine) process(id string) {
	e.mu.Lock()
	en := e.entries[id]
	e.mu.Unlock()
	if en == nil {
		return
	}
	if c := en.claimed.Swap(nil); c != nil {
		// Claimed back from a replica that took it over while this one
		// could not reach the store: the claimed record is the truth, and
		// what this entry held is stale.
		en.cur.Store(c)
		en.shown.Store(c)
		en.published = e.published.Add(1)
		e.forgetFailedSave(en)
		en.lost, en.unsaved = false, false
		// An end this entry decided and could not save was never the
		// store's: the claimed record does not hold it, and the end this
		// replica saves from it is counted then. Kept, it was counted with
		// that one (twice, the time on hold too).
		en.ended = nil
		en.resumed, en.noted = true, false
		en.outlived.Store(false)
		en.liveAt = time.Time{}
		en.adoptedAt = e.now()
		en.retries, en.retryAt, en.firstTry = 0, time.Time{}, time.Time{}
		// The recovery's verification patience runs from here, as from an
		// adoption: from when this entry last moved the transfer, it could
		// be over before any reading showed what the recovery sends, and
		// the transfer was reported unverified at its first pass.
		en.entered = e.now()
		_, en.lapses = e.leaseHeld()
		// A signal acted on here may have been acted on there too, or not:
		// the store says which is still pending.
		en.unsettled, en.completeWaits = SignalNone, false
		en.signal.Store(true)
		// The claimed record may carry an obligation the other replica
		// left, or none where this entry had one.
		en.setPending(e, awaitsCleanup(c))
	}
	en.t = en.cur.Load().Clone()
	en.log = e.transferLog(en.t, en.p)
	ctx := en.log.WithContext(e.hard)
	wasTerminal := en.t.State.Terminal()
	var wait time.Duration
	if !e.takenOver(ctx, en) {
		wait = e.reconcile(ctx, en)
	}
	if !en.lost && en.t.Open() && e.keepNotes(en) {
		// A note the adapter took since the last save (a callback heard
		// here woke this reconcile) is saved by its end, whatever the
		// reading made of it: a process resuming the transfer after this
		// one stops knows it only from the record.
		en.unsaved = true
	}
	if en.unsaved && !en.lost {
		e.save(ctx, en)
	}
	if en.unsettled != SignalNone {
		e.settleSignal(ctx, en, en.unsettled)
	}
	// The working record becomes what readers see; the next reconcile
	// works on a clone of it.
	t := en.t
	en.cur.Store(t)
	en.t, en.log = nil, &e.log
	if en.lost || (!t.Open() && !en.saveFailing) {
		if !en.lost {
			e.keepFinished(t)
		}
		// Lost, its record is the other replica's to save.
		e.forgetFailedSave(en)
		e.drop(en)
		return
	}
	if !wasTerminal && t.State.Terminal() {
		e.mu.Lock()
		e.settledLocked()
		e.mu.Unlock()
	}
	if wait > 0 {
		e.q.AddAfter(id, wait)
	} else if en.w != nil {
		// It waits for the watcher: the next reading wakes it even if it
		// shows nothing new (a join not applied yet is looked at again).
		en.w.await(id)
	}
}

// takenOver reads the record of an entry the store did not list as this
// replica's (entry.recheck) and reports whether another replica owns the
// transfer now: its claim made the transfer that replica's, which drives
// it, and the entry is lost as the version conflict of its next save
// would make it (process drops it). A record that cannot be read, or
// that is still this replica's (ended meanwhile, or claimed back), leaves
// the entry as it is: unknown is not lost.
func (e *Engine) takenOver(ctx context.Context, en *entry) bool {
	if !en.recheck.Swap(false) {
		return false
	}
	cur, err := e.store.Get(ctx, en.id)
	if err != nil || cur.Owner == e.cfg.Owner {
		return false
	}
	en.lost = true
	en.ended = nil // the new owner's to decide and count
	en.log.Warn().Str("state", string(en.t.State)).Str("owner", cur.Owner).
		Msg("another replica took the transfer over while this one's heartbeat had lapsed; stopped driving it")
	return true
}

// reconcile runs the state handlers until the state stops changing and
// returns when to look again (0: when the watcher or a signal says).
func (e *Engine) reconcile(ctx context.Context, en *entry) time.Duration {
	en.judgeAt = time.Time{} // this reconcile's compensate sets it, if one is due
	if en.resumed && !en.noted {
		en.noted = true
		detail := resumedNote + e.cfg.Owner
		e.note(en, StepReconcile, detail)
		en.log.Info().Str("state", string(en.t.State)).Str("detail", detail).Msg("resuming transfer")
		e.save(ctx, en)
	}
	for range 16 {
		before := en.t.State
		var wait time.Duration
		switch en.t.State {
		case StatePending:
			wait = e.pending(ctx, en)
		case StateHolding:
			wait = e.holding(ctx, en)
		case StateDialing:
			wait = e.dialing(ctx, en)
		case StateConsulting:
			wait = e.consulting(ctx, en)
		case StateCompleting:
			wait = e.completing(ctx, en)
		case StateRecovering:
			wait = e.recovering(ctx, en)
		case StateCompleted, StateFailed, StateCancelled:
			wait = e.sweep(ctx, en)
		default:
			e.fail(ctx, en, ReasonInternal, fmt.Sprintf("unknown state %q", en.t.State), nil)
		}
		if en.lost || en.t.State == before {
			return wait
		}
	}
	return time.Millisecond
}

// --- the states --------------------------------------------------------

func (e *Engine) pending(ctx context.Context, en *entry) time.Duration {
	if e.interrupted(ctx, en) {
		return 0
	}
	if d := en.retryAt.Sub(e.now()); d > 0 {
		return d
	}
	next := StateDialing
	if en.flow.Hold {
		next = StateHolding
	}
	err := e.step(ctx, en, StepLocate, func(ctx context.Context) error {
		legs, err := en.p.Locate(ctx, en.t)
		if err == nil {
			en.t.Legs = legs
		}
		return err
	}, next, false, saveNext)
	return e.afterStep(ctx, en, StepLocate, err)
}

func (e *Engine) holding(ctx context.Context, en *entry) time.Duration {
	if e.interrupted(ctx, en) {
		return 0
	}
	if d := en.retryAt.Sub(e.now()); d > 0 {
		return d
	}
	// Sent before the side effect: a hold whose answer is lost, or whose
	// process dies mid-step, is still undone.
	en.t.Sent.Hold = e.now()
	err := e.step(ctx, en, StepHold, func(ctx context.Context) error {
		var sends atomic.Int32
		err := en.p.Hold(withSendCounter(ctx, &sends), en.t)
		en.t.Sent.HoldSends += int(sends.Load())
		return err
	}, StateDialing, false, saveNext)
	return e.afterStep(ctx, en, StepHold, err)
}

// afterStep decides what a failed step of pending or holding means: a
// transient failure is tried again with back-off until StepTimeout has
// passed since the first try; a call the locate did not find, until
// VisibilityWindow has; anything else ends the transfer.
func (e *Engine) afterStep(ctx context.Context, en *entry, step string, err error) time.Duration {
	resumedFirstTry(en, step)
	switch {
	case err == nil || en.lost:
		return 0
	case e.unsentTooLong(en, err):
	case errors.Is(err, errUnsaved):
		return e.backoff(en)
	case transient(err) && e.patient(en):
		return e.backoff(en)
	case step == StepLocate && KindOf(err) == KindCallNotFound && !errors.Is(err, ErrSeveralCalls) && e.within(en, e.cfg.VisibilityWindow):
		// A PBX may list a new call only after a moment, and a client
		// may ask for the transfer as soon as the agent answers: not
		// listed yet is not gone. Nothing is changed yet, so the call is
		// looked for again for the time the provider is given to show
		// what is new, and only then is the transfer call_not_found.
		return e.backoff(en)
	}
	e.failErr(ctx, en, step, err)
	return 0
}

// resumedJoinFirstTry starts the patience of a join that failed on the way
// or was held back (ErrNotSent), or whose intent was refused, in a process
// that took the transfer up: from where the process that saw the first
// such failure in this state, since the last join the provider accepted,
// began it, as that process counts (an accepted join starts the patience
// over; a join stopped unanswered neither starts nor ends it). Begun again
// by each process, processes stopped one after another, each sooner than
// the step timeout, sent a join the provider failed for good for as long
// as the stops went on: the transfer stayed completing, the caller held
// beside the consult. Each process still sends the join once: this is
// looked at only after a failure.
//
// A join held back or refused begins it at its failure, and is sent
// again after a back-off, with no reading between. One that failed on the
// way begins it at the first reading that showed it did not take, where
// its process sent it again (notTakenResent): until then it may still
// apply. Counted from the failure, a resumed process gave up, a
// visibility window and however long the provider took to be read
// earlier, a join the process before would still have sent again. Where
// no process read it, from the failure.
func resumedJoinFirstTry(en *entry) {
	if !en.resumed {
		return
	}
	// unread: the end of the last failure, while it is not known whether
	// it was held back or failed on the way (a note after it, which sets
	// first, says the latter).
	var first, unread time.Time
	for _, s := range en.t.Steps {
		if s.StartedAt.Before(en.t.StateAt) {
			continue
		}
		switch {
		case s.Name == StepReconcile && s.Detail == notTakenResent:
			if first.IsZero() {
				first = s.StartedAt
			}
		case s.Name != StepTransfer || heldBackByLease(s):
		default:
			if !unread.IsZero() && first.IsZero() {
				first = unread // sent again with no reading: held back
			}
			unread = time.Time{}
			switch s.Status {
			case StepSucceeded:
				first = time.Time{}
			case StepFailed:
				unread = later(s.StartedAt, s.EndedAt)
			}
		}
	}
	if first.IsZero() {
		// The last failure, not read yet, is the only one since the last
		// accepted join: from its end.
		first = unread
	}
	if !first.IsZero() && (en.firstTry.IsZero() || first.Before(en.firstTry)) {
		en.firstTry = first
	}
}

// heldBackByLease reports whether s is a step held back because this
// replica's heartbeat had run out or lapsed (see step): its process
// waits for the heartbeat, however long, and begins no patience for it,
// nor does a process that resumes the transfer. Known by its detail (one
// of the lease's reasons), which the record alone carries.
func heldBackByLease(s Step) bool {
	if s.Status != StepFailed {
		return false
	}
	switch s.Detail {
	case notSentDetail + leaseRanOut, notSentDetail + leaseRanOutInSave, notSentDetail + leaseLapsed, notSentDetail + leaseLapsedRefused:
		return true
	}
	return false
}

// notTakenResent notes a join that failed on the way, which a reading
// showed did not take, sent again: its patience began there (see
// resumedJoinFirstTry).
const notTakenResent = "the join failed on the way and did not take; sending it again"

// joinPatient reports whether a join that failed on the way may be sent
// again (see resumedJoinFirstTry).
func (e *Engine) joinPatient(en *entry) bool {
	resumedJoinFirstTry(en)
	return e.patient(en)
}

// resumedFirstTry starts the patience of a step of pending or holding that
// a process before this one tried in the same state (its steps since the
// record's StateAt, begun before this process took the transfer up) from
// that first try, as that process would have.
// Begun again by each process, processes stopped one after another, each
// sooner than the patience, tried a locate or a hold the provider failed
// for good for as long as the stops went on: the transfer never failed,
// and a caller a hold had taken was never given back. Each process still
// tries the step once. A try held back for the heartbeat (heldBackByLease)
// began no patience in its process, which waits for the heartbeat however
// long, and begins none here.
func resumedFirstTry(en *entry, step string) {
	if !en.resumed || !en.firstTry.IsZero() {
		return
	}
	for _, s := range en.t.Steps {
		if s.Name == step && !s.StartedAt.Before(en.t.StateAt) && s.StartedAt.Before(en.entered) && !heldBackByLease(s) {
			// Its failure, as this process counts its own; a try
			// stopped before its answer, from its start.
			en.firstTry = later(s.StartedAt, s.EndedAt)
			return
		}
	}
}

func (e *Engine) dialing(ctx context.Context, en *entry) time.Duration {
	t := en.t
	if e.interrupted(ctx, en) {
		return 0
	}
	if !t.Sent.Dial.IsZero() {
		// An earlier process sent the dial and died before saving what came
		// of it. Dialling again could ring the target twice (a PBX may
		// accept a duplicate call-id): watch for the consult instead.
		if t.ConsultDeadline.IsZero() {
			t.ConsultDeadline = t.Sent.Dial.Add(t.Request.ConsultTimeout)
		}
		e.note(en, StepReconcile, "the dial's result was not saved; watching for the consult instead of dialling again")
		e.transition(ctx, en, StateConsulting)
		return 0
	}
	if d := en.retryAt.Sub(e.now()); d > 0 {
		return d
	}
	t.Sent.Dial = e.now()
	var leg LegRef
	err := e.step(ctx, en, StepDial, func(ctx context.Context) error {
		var err error
		leg, err = en.p.Dial(ctx, t)
		e.learn(en, leg)
		if err == nil || transient(err) {
			t.ConsultDeadline = e.now().Add(t.Request.ConsultTimeout)
		}
		return err
	}, StateConsulting, false, saveNow)
	switch {
	case err == nil || en.lost:
		return 0
	case errors.Is(err, errUnsaved):
		t.Sent.Dial = time.Time{} // not sent
		if !e.unsentTooLong(en, err) {
			return e.backoff(en)
		}
		e.failErr(ctx, en, StepDial, err)
		return 0
	case transient(err):
		// The answer was lost or the provider failed: the consult may
		// exist. The visibility window decides.
		s := &t.Steps[len(t.Steps)-1]
		s.Detail += "; the result is unknown: watching for the consult"
		e.transition(ctx, en, StateConsulting)
		return 0
	}
	if leg.IsZero() {
		t.Sent.Dial = time.Time{} // refused: nothing was created
	}
	e.failErr(ctx, en, StepDial, err)
	return 0
}

func (e *Engine) consulting(ctx context.Context, en *entry) time.Duration {
	t := en.t
	// Decided under the gate (entry.gate): a complete or cancel the
	// client is told was accepted, checked against the record before a
	// decision this pass saves (the consult deadline, a provider that
	// cannot be read past it, shutdown), is taken into that decision.
	// Nothing here waits on the provider: the gate is held for a save
	// at most.
	en.gate <- struct{}{}
	en.gated = true
	defer func() {
		en.gated = false
		<-en.gate
	}()
	switch s := e.takeSignal(ctx, en); s {
	case SignalCancel:
		e.fail(ctx, en, ReasonCancelled, "cancelled by the client", nil)
		e.settleSignal(ctx, en, s)
		return 0
	case SignalComplete:
		if t.Answered {
			e.transition(ctx, en, StateCompleting)
			e.settleSignal(ctx, en, s)
			return 0
		}
		// Never accepted against a record without the answer (see
		// signalChecked): it was checked against one this replica showed
		// and could not save (its store refused the save), which this
		// record, resumed from the last saved one, does not carry yet.
		// The client was told it was accepted: it stays pending, and is
		// honoured once a reading shows the answer (below).
		if !en.completeWaits {
			en.completeWaits = true
			en.log.Warn().Msg("a complete came before the target's answer was on record: it is honoured once a reading shows the answer")
		}
	}
	if e.isStopping() {
		if !e.handOver(ctx, en) {
			e.fail(ctx, en, ReasonShutdown, "transferd shut down while the transfer was consulting", nil)
		}
		return 0
	}
	now := e.now()
	obs, at, err, ok := e.reading(en, t.Sent.Dial)
	if !ok {
		return e.consultWake(en, now)
	}
	if err != nil {
		if !now.Before(t.ConsultDeadline.Add(e.cfg.VisibilityWindow)) {
			// The deadline passed while the provider could not be read:
			// what the target did is unknown.
			e.failErr(ctx, en, "observe", err)
			return 0
		}
		e.warnUnread(en, err)
		return e.consultWake(en, now)
	}
	en.warnedUnread = false
	changed := e.observed(en, obs, at)
	switch {
	case obs.Caller == CallerGone && !obs.Undecidable && (obs.Consult != ConsultEnded || obs.EndReason == ""):
		// (A caller's call ended where the provider cannot show why is
		// not the caller hanging up: it is judged as the consult shows,
		// and the outcome says it cannot be verified; see unknowable.)
		reason, detail := e.whoHungUp(en, obs, "the caller hung up during the consult", "the caller's call ended during the consult")
		e.fail(ctx, en, reason, detail, nil)
		return 0
	case obs.Consult == ConsultAnswered || obs.Caller == CallerTransferred:
		if !t.Answered {
			e.answered(en)
			changed = true
			if t.Request.Completion == CompletionManual {
				en.log.Info().Msg("target answered; waiting for the client to complete or cancel")
			}
		}
		if t.Request.Completion == CompletionAuto {
			e.carry(en, StateCompleting) // the join's intent saves it
			return 0
		}
		if en.completeWaits {
			en.completeWaits = false
			e.note(en, StepReconcile, "completed by the client before the target's answer was on record")
			e.transition(ctx, en, StateCompleting)
			e.settleSignal(ctx, en, SignalComplete)
			return 0
		}
		if obs.AgentGone && obs.Consult == ConsultAnswered {
			// The agent hung up while talking to the target: nobody can
			// take the caller back, and the agent will not complete.
			// Hanging up the target at the deadline would leave the
			// caller on hold with nobody; the target is waiting.
			e.note(en, StepReconcile, "the agent's call ended during the consult: joining the caller and the target")
			en.log.Info().Msg("the agent hung up during the consult; joining the caller and the target")
			e.carry(en, StateCompleting)
			return 0
		}
	case consultGone(t, obs):
		// Also when the caller's call ended with it: a provider that ends
		// the caller's call when its own transfer fails (Bandwidth)
		// reports the consult's reason, not a hang-up by the caller.
		reason, detail := obs.EndReason, obs.Detail
		if reason == "" {
			reason = ReasonConsultFailed
			if t.Answered {
				reason = ReasonTargetHungUp
			}
		}
		if detail == "" {
			detail = "the consult call ended before the transfer completed; the provider did not say why"
		}
		reason, detail = e.whoEnded(en, reason, detail)
		e.fail(ctx, en, reason, detail, nil)
		return 0
	case obs.Consult == ConsultAbsent && at.After(e.consultDueAt(t)):
		detail := fmt.Sprintf("the consult call did not appear within %s (visibility window); it is watched for and hung up if it appears late",
			e.cfg.VisibilityWindow)
		if s := t.lastStep(StepDial); s != nil && s.Status == StepFailed {
			// The dial failed on the way: that is the likely cause.
			e.fail(ctx, en, reasonFor(KindOf(s.Err())), StepDial+": "+s.Detail+"; "+detail, s.Evidence)
			return 0
		}
		e.fail(ctx, en, ReasonConsultFailed, detail, nil)
		return 0
	}
	// The deadline is judged on a reading taken at or after it, so that a
	// target who answered just before it is joined, not hung up on.
	if !at.Before(t.ConsultDeadline) {
		// A signal accepted since this pass took signals (above) is
		// taken into the decision.
		switch s := e.takeSignal(ctx, en); {
		case s == SignalComplete && t.Answered && t.Request.Completion == CompletionManual:
			e.note(en, StepReconcile, "completed by the client as the consult deadline passed")
			e.transition(ctx, en, StateCompleting)
			e.settleSignal(ctx, en, s)
		case s == SignalCancel:
			e.fail(ctx, en, ReasonCancelled, "cancelled by the client", nil)
			e.settleSignal(ctx, en, s)
		case t.Answered:
			e.fail(ctx, en, ReasonTimeout, fmt.Sprintf("not completed within consult_timeout %s", t.Request.ConsultTimeout), nil)
		default:
			e.fail(ctx, en, ReasonNoAnswer, fmt.Sprintf("the target did not answer within consult_timeout %s", t.Request.ConsultTimeout), nil)
		}
		return 0
	}
	if changed {
		e.save(ctx, en)
	}
	return e.consultWake(en, now)
}

// consultWake is when a consult must be looked at even if no reading
// arrives: its deadline, or the end of the visibility window.
func (e *Engine) consultWake(en *entry, now time.Time) time.Duration {
	t := en.t
	at := t.ConsultDeadline
	if !t.Seen.Consult {
		if v := e.consultDueAt(t); v.Before(at) {
			at = v
		}
	}
	if !now.Before(at) {
		// Due: the next reading (asked for now) decides.
		if en.w != nil {
			en.w.need(en.id)
		}
		return e.cfg.PollInterval
	}
	return at.Sub(now) + time.Millisecond
}

// consultDueAt is when a consult no reading has shown yet counts as not
// appearing: a visibility window after the dial's request was answered
// (its step's end, bounded by the step timeout for a step a stopped process
// left unfinished: stepSettledAt), as every other action of ours is
// judged. Sent.Dial is when the dial was decided, before its intent was
// saved and its request sent: counted from there, a dial answered late (a
// slow create, an adapter's retries, a slow save of its intent) left the
// provider no time to list the call it had just created, and the first
// reading after the answer, which did not show it yet, gave the transfer
// up and hung up the consult the target was being rung on.
func (e *Engine) consultDueAt(t *Transfer) time.Time {
	if at := e.stepSettledAt(t, StepDial); !at.IsZero() {
		return at
	}
	return t.Sent.Dial.Add(e.cfg.VisibilityWindow)
}

func (e *Engine) completing(ctx context.Context, en *entry) time.Duration {
	t := en.t
	if !t.Sent.Join.IsZero() || !en.flow.Join {
		e.lateSignal(ctx, en, "after the transfer had begun joining the caller and the target")
	}
	if en.flow.Join && t.Sent.Join.IsZero() {
		if d := en.retryAt.Sub(e.now()); d > 0 {
			return d
		}
		if wait, landed := e.holdLanded(ctx, en); !landed {
			return wait
		}
		if s := e.hangupSettledAt(en); e.now().Before(s) {
			// Resumed: the process before may have given its join up (its
			// intent refused past the step's patience) and hung the
			// consult up blind, with nothing saved of either. Sent before
			// that hang-up lands, the join connected the caller to a leg
			// about to end, and the hang-up then ended the caller's call
			// with the target. Sent once it has landed, a join to an ended
			// consult is refused, and the caller is given back.
			return e.readingFrom(en, s)
		}
		t.Sent.Join = e.now()
		err := e.step(ctx, en, StepTransfer, func(ctx context.Context) error { return en.p.Complete(ctx, t) }, "", false, saveLater)
		if err != nil {
			resumedJoinFirstTry(en)
		}
		switch {
		case err == nil:
			en.joinBefore = time.Time{}
			// What follows an accepted join (the agent's hang-up, a join
			// that fails on the way sent again) has a patience of its own,
			// from its own first failure: counted from the join's first
			// failure, a join held back for most of the step timeout left
			// the agent's hang-up after it none, and the agent's call up
			// alone in a bridge of ours.
			en.retries, en.retryAt, en.firstTry = 0, time.Time{}, time.Time{}
		case en.lost:
			return 0
		case e.unsentTooLong(en, err):
			// Not sent, and given up: an earlier join, if any, may still
			// land (see joinNotSent).
			t.Sent.Join = time.Time{}
			joinNotSent(en)
			e.failErr(ctx, en, StepTransfer, err)
			return 0
		case errors.Is(err, errUnsaved):
			// Not sent, and owed again: joinBefore, if any, is kept for it.
			t.Sent.Join = time.Time{}
			return e.backoff(en)
		case errors.Is(err, errCancelledFirst):
			joinNotSent(en)
			e.fail(ctx, en, ReasonCancelled, "cancelled by the client before the join was sent", nil)
			e.settleSignal(ctx, en, SignalCancel)
			return 0
		case errors.Is(err, ErrNotSent):
			// Nothing that can join them reached the provider (a request
			// the join needs first failed): the join did not happen (step
			// cleared Sent.Join as it recorded the failure), and is owed
			// again while the failure may pass.
			if transient(err) && e.patient(en) {
				return e.backoff(en)
			}
			joinNotSent(en)
			e.failErr(ctx, en, StepTransfer, err)
			return 0
		case transient(err):
			// The join may have happened: only the provider can tell, and
			// undoing it would hang up the leg that carries the caller.
			en.joinBefore = time.Time{}
			e.save(ctx, en)
		default:
			joinNotSent(en) // refused: nothing was joined
			e.failErr(ctx, en, StepTransfer, err)
			return 0
		}
	}
	since := later(t.Sent.Join, t.Sent.Dial)
	obs, at, err, ok := e.reading(en, since)
	if !ok {
		return 0
	}
	// The join, and a provider unreadable about it, is waited for
	// VerifyTimeout, or until a reading can show it did not take, if that
	// is later: a join may show as late as a visibility window after its
	// request was answered (joinSettledAt), which may be well after it was
	// decided (Sent.Join: the intent's save, a slow request, an adapter's
	// retries; a stopped process may have sent its join as late as its
	// step's timeout). Judged earlier, a join that was yet to apply was
	// given up, and the recovery, on a reading that could not show it,
	// hung up the consult it was landing on; a resumed join, or one that
	// may be sent again, failed before it could be judged, never sent
	// again.
	interrupted, failedOnTheWay := stepInterrupted(en, StepTransfer), joinFailedOnTheWay(t)
	settled := e.joinSettledAt(t)
	within := max(e.cfg.VerifyTimeout, settled.Sub(since))
	if err != nil {
		// Unknown: never undone. Verified for VerifyTimeout (within); past that
		// the transfer gives up waiting, not the join: the recovery sends
		// nothing to a caller it cannot see after a join, so it ends with
		// an unverified outcome, and the sweeper keeps verifying it (and
		// corrects it to completed when the provider shows the join). A
		// reading that fails for good, or that the adapter cannot judge
		// (a NetSapiens caller's call that goes on with a party not
		// recognised), would otherwise keep the transfer completing for
		// as long as the call lasts.
		e.warnUnread(en, err)
		if at.After(since.Add(within)) {
			e.fail(ctx, en, reasonFor(KindOf(err)), fmt.Sprintf(
				"the provider accepted the transfer, but whether it connected the caller to the target could not be read within %s: %v",
				within.Round(time.Millisecond), err), nil)
		}
		return 0
	}
	en.warnedUnread = false
	e.observed(en, obs, at)
	switch {
	case obs.Caller == CallerTransferred && at.Before(e.hangupSettledAt(en)):
		// Resumed: the process before may have failed the transfer in
		// memory (a join not shown in time, its failure refused by the
		// store) and hung the consult up blind on a reading without the
		// join. A join landing late shows the caller with the target
		// until that hang-up lands and ends the caller's call with the
		// consult: report what shows once it could have, as recovering
		// does.
		return e.readingFrom(en, e.hangupSettledAt(en))
	case obs.Caller == CallerTransferred:
		detail := "the caller is connected to the target"
		if obs.CallerEnded {
			detail = "the provider connected the caller to the target; the call has ended since"
		}
		d, lost, again := e.afterJoin(ctx, en)
		if lost {
			return 0
		}
		if again > 0 {
			return again
		}
		detail += d
		e.finish(ctx, en, StateCompleted, Outcome{Reason: ReasonTransferred, Verified: true, Detail: detail}, nil)
		if !en.flow.Join && !en.lost {
			// No join step looked for a signal once the move to
			// completing was saved: this save is the first since
			// consulting, so a signal put before it (at consulting's
			// version, through any replica) is pending now, and the
			// provider had connected them already.
			en.signal.Store(true)
			e.lateSignal(ctx, en, "after the provider had connected the caller and the target")
		}
	case obs.Caller == CallerGone && joinUnknown(en):
		// The call may have ended after the join connected the caller to
		// the target, before any reading showed it: a listing cannot tell
		// that from a caller who hung up first. Said as it is, and the
		// outcome stays unverified (see recovering).
		// Announced (an answered consult: where the provider connects
		// them itself, joinUnknown holds all through completing), a cancel
		// the process before sent while the consult rang may have ended
		// it (whoHungUp).
		const ended = "the caller's call ended before a reading showed the transfer connect it to the target: " +
			"whether the caller was connected to the target first, the provider does not show"
		reason, detail := e.whoHungUp(en, obs, ended, ended)
		e.fail(ctx, en, reason, detail, nil)
	case obs.Caller == CallerGone:
		e.fail(ctx, en, ReasonCallerHungUp, "the caller hung up while the transfer was completing", nil)
	case obs.Consult == ConsultAbsent && t.Seen.Consult && en.flow.Join && at.Before(e.joinSettledAt(t)):
		// A join being applied may take the consult's leg out of a
		// listing before the caller's row shows the target (a PBX that
		// rewrites the consult's row into the caller's), and an adapter
		// reads a missing consult by its id only before a join is sent.
		// Taken for the target gone, the recovery hung up, on this very
		// reading, the leg the join was landing on. Unknown until the
		// join could have applied; a leg shown ended still counts below.
		return e.readingFrom(en, e.joinSettledAt(t))
	case consultGone(t, obs):
		reason, detail := e.whoEnded(en, ReasonTargetHungUp, "the target hung up while the transfer was completing")
		e.fail(ctx, en, reason, detail, nil)
	case t.Seen.NotJoined && interrupted && joinsAgain(en) && (t.Sent.JoinFirst.IsZero() || t.Sent.JoinFirstMaybeUnsent):
		// A stopped process saved the join's intent and not its answer
		// (an accepted join's is saved late: saveLater), and a reading
		// taken once it could have applied shows it did not take. It may
		// have gone out and been ignored, or never gone out: the provider
		// cannot tell which. The other form is sent (the first again, if
		// the first may never have gone out either), and the record keeps
		// that the form left behind may be unsent, so that it is sent once
		// more should the other be seen not to take. Sent again in the
		// same form, a join whose process is stopped every time before its
		// answer is judged never got past a form the PBX ignores: found by
		// the storm (seed 723238167575024: a kill every 3 to 12 s and a
		// disk refusing writes for long spans, a PBX that ignores the
		// consult's core server), four callers held past its liveness
		// bound, each process sending the first form again.
		e.note(en, StepReconcile, "the join a stopped process was sending did not take; sending its other form")
		joinOtherForm(en, true)
		return e.completing(ctx, en)
	case t.Seen.NotJoined && (interrupted || (failedOnTheWay && e.joinPatient(en))):
		// A stopped process saved the join's intent and not its answer
		// where the provider has no other form, or the join failed on the
		// way (a 5xx, a 429, no answer): whether it reached the provider
		// is unknown, and a reading taken once it could have applied shows
		// it did not take. Sent again, in the same form, as never sent: a
		// form that went out and was ignored is followed by the second as
		// usual, and one that never went out is not skipped for the other
		// (which a PBX that wants this one ignores), nor given up on where
		// there is no other. Failures on the way are sent again for as
		// long as the step's patience lasts (its process lives on: no
		// other form is needed to get past one it keeps failing on).
		// Until the new one is accepted the record keeps this one
		// (joinBefore), so that no saved record shows no join sent.
		if interrupted {
			e.note(en, StepReconcile, "the join a stopped process was sending did not take; sending it again")
		} else {
			e.note(en, StepReconcile, notTakenResent)
		}
		en.joinBefore = t.Sent.Join
		t.Sent.Join, t.Seen.NotJoined = time.Time{}, false
		return e.completing(ctx, en)
	case t.Seen.NotJoined && joinsAgain(en) && (t.Sent.JoinFirst.IsZero() || t.Sent.JoinFirstMaybeUnsent):
		// The join was accepted and did not take, and the provider has a
		// second form of it (NetSapiens: naming the other call's core
		// server). Sent at once, from the same pass: the record is saved
		// with it (its intent), so no saved record shows the first join
		// unsent. The second form seen not to take where the first may
		// never have gone out (JoinFirstMaybeUnsent) is followed by the
		// first once more.
		if t.Sent.JoinFirst.IsZero() {
			e.note(en, StepReconcile, "the join was accepted and did not take; sending its other form")
		} else {
			e.note(en, StepReconcile, "the join's other form was accepted and did not take, and the first may never have gone out; sending the first again")
		}
		joinOtherForm(en, false)
		return e.completing(ctx, en)
	case at.After(since.Add(within)):
		if s := t.lastStep(StepTransfer); s != nil && s.Status == StepFailed {
			// The join failed on the way and did not happen after all.
			e.fail(ctx, en, reasonFor(KindOf(s.Err())), fmt.Sprintf("%s: %s; the caller was not connected to the target within %s",
				StepTransfer, s.Detail, within.Round(time.Millisecond)), s.Evidence)
			break
		}
		detail := fmt.Sprintf("the provider accepted the transfer but did not connect the caller to the target within %s", within.Round(time.Millisecond))
		if x, ok := en.p.(JoinExplainer); ok {
			if why := x.JoinNotTaken(t); why != "" {
				detail += ": " + why
			}
		}
		e.fail(ctx, en, ReasonProviderError, detail, nil)
	default:
		wait := since.Add(within).Sub(e.now())
		if !t.Seen.NotJoined && at.Before(settled) {
			// The join waits on a reading that can show it did not take:
			// one taken once it could have applied.
			if d := settled.Sub(e.now()); d > 0 {
				wait = min(wait, d)
			} else if _, _, _, ok := e.reading(en, settled); !ok {
				return 0 // the watcher queues the transfer with it
			}
		}
		return wait + time.Millisecond
	}
	return 0
}

// holdLanded reports whether the join may be sent as far as the hold is
// concerned: no hold request of ours can still land. A provider applies an
// accepted hold late and sometimes after a later action, and a hold
// applied after the join holds the caller with the target (a PBX holds
// the caller's call, whoever is on the other end). So the join waits until
// the hold was seen applied and was sent exactly once (no twin in flight),
// or until readings settle (settledAt) when it was sent more than once,
// by a process that died mid-step, or by an adapter that does not count
// its sends. Meanwhile the consult is watched: a caller or target who
// hangs up ends the transfer as in consulting. Otherwise it returns when
// to look again.
func (e *Engine) holdLanded(ctx context.Context, en *entry) (time.Duration, bool) {
	t := en.t
	now := e.now()
	if t.Sent.Hold.IsZero() || (t.Seen.Held && holdSentOnce(t)) || !now.Before(e.settledAt(t)) {
		return 0, true
	}
	wait := e.settledAt(t).Sub(now) + time.Millisecond
	obs, at, err, ok := e.reading(en, t.Sent.Hold)
	if !ok {
		return wait, false
	}
	if err != nil {
		e.warnUnread(en, err)
		return wait, false
	}
	en.warnedUnread = false
	if e.observed(en, obs, at) {
		e.save(ctx, en)
		if en.lost {
			return 0, false
		}
	}
	switch {
	case obs.Caller == CallerGone:
		e.fail(ctx, en, ReasonCallerHungUp, "the caller hung up before the transfer was completed", nil)
		return 0, false
	case consultGone(t, obs):
		reason, detail := e.whoEnded(en, ReasonTargetHungUp, "the target hung up before the transfer was completed")
		e.fail(ctx, en, reason, detail, nil)
		return 0, false
	case t.Seen.Held && holdSentOnce(t):
		return 0, true
	}
	if en.w != nil {
		en.w.await(en.id) // the next reading may show the hold
	}
	return wait, false
}

// holdSentOnce reports whether exactly one hold request was sent: one hold
// step, finished, and one send counted.
func holdSentOnce(t *Transfer) bool {
	n := 0
	for i := range t.Steps {
		if t.Steps[i].Name == StepHold {
			n++
			if t.Steps[i].EndedAt.IsZero() {
				return false // the process died mid-step: unknown
			}
		}
	}
	return n == 1 && t.Sent.HoldSends == 1
}

// recovering gives the caller back: the consult hung up, the caller off
// hold, each sent blind and again while a later reading still shows it
// needed; then it reports what the provider shows.
func (e *Engine) recovering(ctx context.Context, en *entry) time.Duration {
	t := en.t
	failure := t.Failure
	if failure == nil {
		failure = &Outcome{Reason: ReasonInternal, Detail: "recovering without a recorded failure"}
	}
	if !en.lookedLate {
		// A signal put through another replica sets no flag here: the
		// store is read once (recovery is off the common path).
		en.lookedLate = true
		en.signal.Store(true)
	}
	e.lateSignal(ctx, en, "after the transfer had given up ("+string(failure.Reason)+") and begun giving the caller back")
	now := e.now()
	if t.Sent.Hold.IsZero() && t.Sent.Dial.IsZero() {
		// Nothing changed at the provider.
		e.finish(ctx, en, finalState(failure), Outcome{Reason: failure.Reason, CallerRestored: failure.Reason != ReasonCallerHungUp,
			Verified: true, Detail: failure.Detail, Evidence: failure.Evidence}, nil)
		return 0
	}
	if refusedWhich(t, failure) {
		// Which call a refused join did not find shows in a reading taken
		// after the refusal, and the consult's hang-up sent first would
		// end the consult in every reading: wait for one (a reading that
		// fails is one too: the recovery goes on).
		_, at, rerr, ok := e.reading(en, e.stepEnd(t, StepTransfer))
		if !ok {
			return 0 // the watcher queues the transfer with it
		}
		if until := e.consultDueAt(t); rerr != nil && t.Sent.Hangup.IsZero() &&
			!t.Sent.Dial.IsZero() && at.Before(until) {
			// Unknown within the consult's visibility window: an API
			// node that has not seen the consult yet answers "not found"
			// for it, which an adapter reports unknown then. Once the
			// window has passed a reading can say, and the hang-up is
			// held back until then, or until a reading that can say comes
			// sooner (a target who hung up as the join was sent was
			// reported call_not_found, the join's refusal blamed on the
			// call).
			if en.w != nil {
				en.w.await(en.id) // at the watcher's own pace: not one read after another
			}
			return e.readingFrom(en, until)
		}
	}
	obs, at, rerr, ok := e.reading(en, lastSent(t))
	fresh := ok && rerr == nil
	if fresh {
		e.observed(en, obs, at)
		e.callerSeenUp(en, obs, at, failure)
		e.notFoundWhich(en, obs, at, failure)
		if obs.Caller == CallerTransferred {
			if s := e.hangupSettledAt(en); at.Before(s) {
				// A hang-up we sent may not be applied yet. Where the
				// provider's transfer ends the caller's call with its B-leg
				// (Bandwidth, announced), it would end the call the caller
				// now has with the target: report what shows once it could
				// have applied, not before.
				return e.readingFrom(en, s)
			}
			// The provider joined caller and target after all (a join
			// applied late, or an announced transfer answered as it was
			// cancelled): that is the truth to report.
			detail := "the provider connected the caller to the target although " + failure.Detail
			d, lost, again := e.afterJoin(ctx, en)
			if lost {
				return 0
			}
			if again > 0 {
				return again
			}
			detail += d
			e.finish(ctx, en, StateCompleted, Outcome{Reason: ReasonTransferred, Verified: true, Detail: detail}, nil)
			return 0
		}
	}
	e.compensate(ctx, en, obs, at, fresh, failure.Reason == ReasonCallerHungUp)
	if en.lost {
		return 0
	}
	if fresh {
		if restored, done := e.restored(en, obs, at); done {
			out := Outcome{Reason: failure.Reason, CallerRestored: restored, Verified: true,
				Detail: failure.Detail + e.recoveryNotes(en, restored), Evidence: failure.Evidence}
			if unknowable(en, obs) {
				out.Verified, out.Detail = false, failure.Detail+unknowableNote(failure.Detail, obs)
			}
			e.finish(ctx, en, finalState(failure), out, e.tombstone(t, now))
			return 0
		}
	} else if rerr != nil {
		e.warnUnread(en, rerr)
	}
	deadline := e.recoveryDeadline(en)
	// A process that took the transfer up judges it on a reading of its
	// own, whatever the record's patience says.
	if !now.Before(deadline) && (ok || !en.resumed) {
		// The provider did not show the caller back in time: say what is
		// known, and leave the rest to the sweeper.
		restored := !t.Sent.Unhold.IsZero() && !en.redoUnhold && !en.callerGone && en.unholdRefused == "" &&
			failure.Reason != ReasonCallerHungUp
		why := "the provider could not be read"
		if fresh {
			restored = obs.Caller == CallerConnected
			why = fmt.Sprintf("the provider shows the caller %s and the consult %s", obs.Caller, obs.Consult)
		}
		detail := fmt.Sprintf("%s"+notePendingFrom+"%s (%s)"+notePendingTo, failure.Detail, e.cfg.VerifyTimeout, why)
		until := now
		if tb := e.tombstone(t, now); tb != nil {
			until = tb.Until
		}
		e.finish(ctx, en, finalState(failure), Outcome{Reason: failure.Reason, CallerRestored: restored, Detail: detail,
			Evidence: failure.Evidence}, &Cleanup{Until: until, Reason: "outcome not verified: " + why})
		return 0
	}
	wait := min(e.cfg.VisibilityWindow, deadline.Sub(now)+time.Millisecond, e.redoWait(en, now))
	if s := e.settledAt(t); fresh && at.Before(s) {
		// The reading started before a late hold could be ruled out
		// (restored), and the first that can starts at s: the transfer
		// looks again at s and asks for it. Nothing else would: readings
		// that show nothing new (the caller back, the consult ended) do
		// not wake it, and the wake for the unhold's own settling
		// (judgeAt, a moment after s when the consult failed at once)
		// may still find the latest reading started before s. It waited
		// a visibility window more then (Bandwidth's busy or rejected
		// consult, shown ended, was reported two windows after the hold).
		wait = min(wait, e.readingFrom(en, s))
	}
	return wait
}

// recoveryDeadline is when the recovery stops waiting for the provider to
// show the caller back and ends the transfer unverified, leaving the rest
// to the sweeper: TRANSFERD_VERIFY_TIMEOUT after the recovery began (the
// record's StateAt) or readings could settle, if later. Counted from when
// this process took the transfer up, as it was, processes stopped one
// after another, each sooner than the patience, each began it again, and
// a recovery the provider could not be read about stayed recovering for
// as long as the stops went on. A process that took the transfer up is
// still given a reading of the first compensation it sent itself (a
// visibility window after it was answered), so that one resuming a
// recovery long after it began does not report the caller unverified
// before any reading could show its own unhold; never longer than the
// patience from its adoption, the bound it had before.
func (e *Engine) recoveryDeadline(en *entry) time.Time {
	t := en.t
	began := t.StateAt
	if began.IsZero() { // a record saved before StateAt existed
		began = en.entered
	}
	deadline := later(began, e.settledAt(t)).Add(e.cfg.VerifyTimeout)
	if !en.resumed {
		return deadline
	}
	for _, s := range t.Steps {
		if (s.Name == StepUnhold || s.Name == StepHangup) && !s.StartedAt.Before(en.entered) &&
			!s.EndedAt.IsZero() && !strings.HasPrefix(s.Detail, notSentDetail) {
			own, bound := s.EndedAt.Add(e.cfg.VisibilityWindow), en.entered.Add(e.cfg.VerifyTimeout)
			if own.After(bound) {
				own = bound
			}
			return later(deadline, own)
		}
	}
	return deadline
}

// sweep works on a terminal transfer's cleanup obligation. What it owes
// depends on the outcome:
//
//   - A verified outcome with a tombstone owes only the consult leg that
//     was dialled and never seen: the sweeper hangs it up if it appears,
//     and discharges the obligation once a reading taken after the
//     tombstone's Until shows no leg of ours alive. The caller is the
//     agent's again: whatever the caller or the agent do now (hang up,
//     hold, transfer the call elsewhere) is theirs, and the verified
//     outcome stands (see sweepTombstone).
//   - An unverified outcome owes the whole end state: it hangs up a
//     consult leg of ours, takes a caller still held off hold, and, once
//     the provider shows the invariant holds and the obligation's window
//     has passed, verifies the outcome, correcting caller_restored to what
//     the provider shows.
//
// A reading that failed is never evidence of anything: the obligation
// then waits for one that succeeds.
func (e *Engine) sweep(ctx context.Context, en *entry) time.Duration {
	t := en.t
	if t.Cleanup == nil {
		if en.saveFailing {
			// The terminal state itself was not saved, and nothing else
			// will save it: try again until the store takes it.
			e.save(ctx, en)
			return e.cfg.PollMaxInterval
		}
		return 0
	}
	now := e.now()
	obs, at, err, ok := e.reading(en, lastSent(t))
	if !ok || err != nil {
		if err != nil {
			// Said once a life: an obligation that a provider nobody can
			// read holds open is otherwise silent.
			e.warnUnread(en, err)
		}
		return max(t.Cleanup.Until.Sub(now), e.cfg.PollMaxInterval)
	}
	e.observed(en, obs, at)
	if obs.Caller == CallerTransferred && t.State != StateCompleted && sentToTarget(en) {
		// The provider connected the caller to the target through what this
		// transfer sent — the join, or, in a flow without one, the dial
		// itself (an announced transfer answered during a read outage, a
		// late B-leg answered while a tombstone watched for it): the truth
		// is completed, whatever the outcome said, verified or not. Only
		// then: where a join is needed and none was sent, a caller with
		// the target was put there by someone else (the agent's own
		// transfer, after this one gave the caller back), and this
		// transfer's outcome does not change for it. Once no hang-up of
		// ours can still land on that call, the sweeper says so.
		if s := e.hangupSettledAt(en); at.Before(s) {
			return e.readingFrom(en, s)
		}
		// The agent first: a hang-up held back is tried again, and what
		// follows is said once.
		d, lost, again := e.afterJoin(ctx, en)
		if lost {
			return 0
		}
		if again > 0 {
			return again
		}
		old := *t.Outcome
		t.Cleanup = nil
		detail := fmt.Sprintf("the provider shows the caller connected to the target; the outcome %s (%s) is corrected to completed",
			t.State, old.Reason)
		e.note(en, StepVerify, detail)
		emit(t, EventOutcomeVerified, now, t.State, t.State)
		detail = "the provider connected the caller to the target although " + withoutPending(old.Detail, "")
		detail += d
		e.finish(ctx, en, StateCompleted, Outcome{Reason: ReasonTransferred, Verified: true, Detail: detail}, nil)
		return 0
	}
	if t.State != StateCompleted && unknowable(en, obs) {
		// What this transfer sent may have connected the caller to the
		// target (a late leg of ours answered while a tombstone watched,
		// or a join the outcome could not verify), and the caller's call
		// has ended since: no reading can tell any more. A consult leg of
		// ours still up is hung up first (never the caller: gone), and
		// the obligation is discharged once none is, after its window.
		e.compensate(ctx, en, obs, at, true, true)
		if en.lost {
			return 0
		}
		if obs.Consult == ConsultRinging || obs.Consult == ConsultAnswered {
			return min(e.cfg.VisibilityWindow, e.redoWait(en, now))
		}
		if now.Before(t.Cleanup.Until) {
			return min(t.Cleanup.Until.Sub(now)+time.Millisecond, e.redoWait(en, now))
		}
		o := t.Outcome
		if !en.flow.Join && (o.Verified || o.CallerRestored) {
			o.Detail += "; then a consult leg of ours was answered"
		}
		if o.Verified {
			en.ended = &endCount{prev: en.ended, unverified: true} // counted once saved
		}
		o.Verified, o.CallerRestored, t.Cleanup = false, false, nil
		if !strings.Contains(o.Detail, noteCannotVerify) {
			// (The recovery said it already where it found the outcome
			// unknowable and left a tombstone to watch.)
			o.Detail += unknowableNote(o.Detail, obs)
		}
		switch {
		case obs.Undecidable && obs.Caller == CallerGone:
			e.note(en, StepVerify, "the caller's call has ended: why, and whether what the transfer sent connected it to the target first, the provider cannot show ("+obs.Detail+")")
		case obs.Undecidable:
			e.note(en, StepVerify, "the caller's call goes on: whether what the transfer sent connected it to the target, the provider cannot show ("+obs.Detail+")")
		default:
			e.note(en, StepVerify, "the caller's call has ended: whether what the transfer sent connected the caller to the target first, the provider cannot show")
		}
		emit(t, EventOutcomeVerified, now, t.State, t.State)
		emit(t, EventNeedsAttention, now, t.State, t.State)
		if e.save(ctx, en) {
			en.log.Warn().Str("state", string(t.State)).Msg("cleanup done: the outcome cannot be verified")
		}
		return 0
	}
	if t.Outcome.Verified {
		return e.sweepTombstone(ctx, en, obs, at)
	}
	if e.trackMovedOn(en, obs) {
		en.unsaved = true // the reconcile saves the note at its end
	}
	if t.State != StateCompleted && e.callerSeenUp(en, obs, at, t.Outcome) {
		en.unsaved = true
	}
	if obs.Caller != CallerTransferred {
		e.compensate(ctx, en, obs, at, true, t.State == StateCompleted || t.Outcome.Reason == ReasonCallerHungUp)
		if en.lost {
			return 0
		}
	}
	restored, done := e.restored(en, obs, at)
	redo := e.redoWait(en, now)
	if obs.Caller == CallerTransferred {
		restored, done = false, !now.Before(t.Cleanup.Until)
		// Nothing of ours is owed to a caller with the target: what an
		// earlier reconcile left due (a failed unhold, a compensation to
		// judge) is not (the readings show nothing new, and a stale due
		// time would have the sweep spin until Until).
		redo = time.Hour
	}
	if !done || now.Before(t.Cleanup.Until) {
		if now.Before(t.Cleanup.Until) {
			return min(t.Cleanup.Until.Sub(now)+time.Millisecond, redo)
		}
		e.warnStillOpen(en, obs, now)
		return min(e.cfg.VisibilityWindow, redo)
	}
	o := t.Outcome
	detail := "the provider shows the invariant holds"
	if t.State != StateCompleted && o.CallerRestored != restored {
		detail += fmt.Sprintf("; caller_restored corrected to %t (caller %s)", restored, obs.Caller)
		o.CallerRestored = restored
	}
	// What the outcome said while unverified (the patience that ran out, the
	// reading then, the obligation open) is no longer true once verified:
	// it says what the reading that verifies it shows instead.
	// The reading's own detail says what "unknown" is (a caller alone,
	// say), unless the outcome says it already.
	verified := fmt.Sprintf("; verified later: the provider shows the caller %s and the consult %s", obs.Caller, obs.Consult)
	if obs.Detail != "" && !strings.Contains(o.Detail, obs.Detail) {
		verified += " (" + obs.Detail + ")"
	}
	o.Detail = withoutPending(o.Detail, verified)
	// (An outcome the provider can no longer show took the branch near
	// the top: it is never verified here.)
	o.Verified = true
	t.Cleanup = nil
	e.note(en, StepVerify, detail)
	emit(t, EventOutcomeVerified, now, t.State, t.State)
	if needsAttention(t) {
		emit(t, EventNeedsAttention, now, t.State, t.State)
	}
	if e.save(ctx, en) {
		en.log.Info().Str("state", string(t.State)).Bool("caller_restored", o.CallerRestored).
			Msg("cleanup done: outcome verified")
	}
	return 0
}

// notePendingFrom and notePendingTo frame what an outcome the recovery
// could not verify in time says of it: the patience, the reading then and
// the obligation left open (withoutPending takes it out once verified).
const (
	notePendingFrom = "; not verified within "
	notePendingTo   = ": a cleanup obligation remains"
)

// withoutPending is detail with its note of an outcome not verified in time
// replaced by now: a verified outcome must not say an obligation remains,
// nor what a reading showed before it was verified. A note wrapped in a
// later detail (callerSeenUp quotes the outcome) is replaced where it is.
func withoutPending(detail, now string) string {
	i := strings.LastIndex(detail, notePendingFrom)
	if i < 0 {
		return detail
	}
	j := strings.Index(detail[i:], notePendingTo)
	if j < 0 {
		return detail
	}
	return detail[:i] + now + detail[i+j+len(notePendingTo):]
}

// noteUnknowable ends the detail of an outcome that stays unverified with
// nothing left to do (see joinUnknown).
const noteUnknowable = noteCannotVerify + ": the caller's call ended before any reading showed whether the transfer connected the caller to the target"

// noteCannotVerify begins every note of an outcome unknowable.
const noteCannotVerify = "; the outcome cannot be verified"

// unknowableNote is the note of an outcome unknowable on obs, whose detail
// so far is detail: the reading's own detail is not said twice (a failure
// decided on that reading carries it already).
func unknowableNote(detail string, obs Observation) string {
	switch {
	case !obs.Undecidable:
		return noteUnknowable
	case obs.Caller == CallerGone && strings.Contains(detail, obs.Detail):
		return noteCannotVerify
	case obs.Caller == CallerGone:
		return noteCannotVerify + ": " + obs.Detail
	case strings.Contains(detail, obs.Detail):
		return noteCannotVerify + ": the caller's call goes on"
	}
	return noteCannotVerify + ": the caller's call goes on, and " + obs.Detail
}

// joinsAgain reports whether the transfer's provider has a second form of
// the join to send once the first did not take (JoinRetrier).
func joinsAgain(en *entry) bool {
	r, ok := en.p.(JoinRetrier)
	return ok && r.JoinAgain(en.t)
}

// joinOtherForm sets the record up for the join's other form
// (JoinRetrier): the second, its first recorded in JoinFirst, with
// maybeUnsent when the first may never have gone out; or, from the
// second, the first again, the second's send kept (joinBefore) until the
// first is accepted. Each move back to the first clears
// JoinFirstMaybeUnsent, and only a stopped process sets it: without
// stops, a join is sent in at most four forms (first, second, first,
// second) before it is given up.
func joinOtherForm(en *entry, maybeUnsent bool) {
	t := en.t
	if t.Sent.JoinFirst.IsZero() {
		t.Sent.JoinFirst, t.Sent.JoinFirstMaybeUnsent = t.Sent.Join, maybeUnsent
	} else {
		en.joinBefore = t.Sent.Join
		t.Sent.JoinFirst, t.Sent.JoinFirstMaybeUnsent = time.Time{}, false
	}
	t.Sent.Join, t.Seen.NotJoined = time.Time{}, false
}

// joinNotSent records that the join last decided was not sent. Where it
// was sent again after a stopped process's or one that failed on the way
// (joinBefore), or was the second form (JoinRetrier), an earlier one may
// have gone out and did not take: the record says so again, so that what
// follows (a recovery, a hang-up of the consult after a join) knows a join
// went out.
func joinNotSent(en *entry) {
	t := en.t
	t.Sent.Join = cmp.Or(en.joinBefore, t.Sent.JoinFirst)
	en.joinBefore = time.Time{}
	if !t.Sent.Join.IsZero() {
		t.Seen.NotJoined = true
	}
}

// stepInterrupted reports whether the last step called name was left
// unfinished by a process that stopped: its intent saved, its answer
// not, so that it may or may not have been sent.
func stepInterrupted(en *entry, name string) bool {
	s := en.t.lastStep(name)
	return s != nil && s.Status == StepStarted && en.resumed
}

// joinFailedOnTheWay reports whether the transfer's last join failed with
// an error that does not say whether it reached the provider (a 5xx, a
// 429, no answer): the join may or may not have been applied.
func joinFailedOnTheWay(t *Transfer) bool {
	s := t.lastStep(StepTransfer)
	return s != nil && s.Status == StepFailed && transient(s.Err()) && !t.Sent.Join.IsZero()
}

// joinUnknown reports whether what the transfer sent may have connected
// the caller to the target without any reading showing it. With a join in
// the flow: a join was sent, and no reading showed either the caller with
// the target (the transfer would be completed) or, once the join could
// have applied, the caller still held or back with the agent
// (Seen.NotJoined): a provider applies an accepted join late, so a reading
// taken within the visibility window says nothing. Without one (the
// provider connects them when the target answers): the consult leg was
// answered and no reading showed the caller with the target.
func joinUnknown(en *entry) bool {
	t := en.t
	if t.State == StateCompleted {
		return false
	}
	if en.flow.Join {
		return !t.Sent.Join.IsZero() && !t.Seen.NotJoined
	}
	return !t.Sent.Dial.IsZero() && t.Answered
}

// unknowable reports an outcome the provider can no longer show: a reading
// shows the caller's call ended while whether the transfer connected it to
// the target is unknown. (An unhold answered "not found" is not enough: it
// may be about the agent's leg; see restored.) A call that ended after it
// was connected and one that ended before look the same in every reading
// from now on, so the outcome is reported as it is (the caller's call
// ended, caller_restored false) and never verified: "verified" would claim
// that the provider showed the caller was not transferred.
//
// Or the provider says it can never tell (Observation.Undecidable), of a
// caller's call that goes on: the same holds.
func unknowable(en *entry, obs Observation) bool {
	return obs.Undecidable || obs.Caller == CallerGone && joinUnknown(en)
}

// callerSeenUp takes back what the transfer believed of a caller gone
// when a fresh reading shows the caller's call up: a listing that lacked
// the caller's row once, or an unhold answered "not found", is not the
// last word, and a caller shown held is owed the unhold. A call does not
// come back once it has ended, so a reading that shows it is the truth.
// o is the failure being recovered from, or the unverified outcome the
// sweeper works on: a reason that says the caller hung up is corrected
// (the transfer was given up on a wrong reading). It reports whether the
// record changed.
func (e *Engine) callerSeenUp(en *entry, obs Observation, at time.Time, o *Outcome) bool {
	if obs.Caller != CallerHeld && obs.Caller != CallerConnected {
		return false
	}
	if en.callerGone && at.After(e.stepEnd(en.t, StepUnhold)) {
		en.callerGone = false // the unhold is due again (compensate)
		if obs.Caller == CallerHeld && en.notFound >= 2 {
			// Answered "not found" again while the caller's call is up
			// and held: the unhold addresses a leg that has ended (on
			// NetSapiens, the agent's), and sending it again would go on
			// for as long as the call lasts. Nothing of ours can take
			// this caller off hold.
			en.unholdRefused = fmt.Sprintf("the unhold was answered \"not found\" %d times while the caller's call is up and held: the leg it addresses has ended", en.notFound)
		}
	}
	if o == nil || o.Reason != ReasonCallerHungUp {
		return false
	}
	detail := fmt.Sprintf("the provider showed the caller's call ended (%s), then showed it %s", o.Detail, obs.Caller)
	o.Reason, o.Detail, o.CallerRestored = ReasonProviderError, detail, false
	e.note(en, StepReconcile, detail)
	en.log.Warn().Str("caller", obs.Caller.String()).Msg("the caller taken for gone is up: the caller is given back")
	return true
}

// notFoundWhich says which call a join refused as "not found" or "not
// active" did not find, from the first reading after it: a caller or a
// target who hung up as the join was sent (a PBX may answer 404 for a
// destination session that just ended; Bandwidth refuses a bridge naming
// an ended call with call-invalid-state) is what that reading shows, and
// call_not_found ("the provider had no such call") or call_not_active
// would blame the call's state for a party's hang-up. A consult shown
// ended counts only on a reading started before the recovery sent its
// hang-up: after it, the consult ended is the recovery's doing, and a join
// refused while both parties stayed (a NetSapiens join addresses the
// agent's call, which may be what was not found) was blamed on the target.
// A caller's call shown ended counts only on a reading started before the
// recovery's unhold: a caller given back may hang up, which says nothing
// of the join (the first reading after a refusal comes after the
// compensations when the readings before failed).
func (e *Engine) notFoundWhich(en *entry, obs Observation, at time.Time, f *Outcome) {
	t := en.t
	if !refusedWhich(t, f) {
		return
	}
	switch {
	case (t.Sent.Unhold.IsZero() || at.Before(t.Sent.Unhold)) && obs.Caller == CallerGone:
		f.Reason = ReasonCallerHungUp
		f.Detail += "; the caller's call has ended"
	case (t.Sent.Hangup.IsZero() || at.Before(t.Sent.Hangup)) &&
		consultGone(t, obs):
		f.Reason, f.Detail = e.whoEnded(en, ReasonTargetHungUp, f.Detail+"; the consult call has ended")
	default:
		return
	}
	en.unsaved = true
}

// consultGone reports whether obs shows t's consult ended: shown ended,
// or no longer visible once a reading showed it. An adapter answers an
// unknown reading where a seen leg's absence may not mean that (a listing
// that leaves a row out, a "not found" for a call read before).
func consultGone(t *Transfer, obs Observation) bool {
	return obs.Consult == ConsultEnded || (obs.Consult == ConsultAbsent && t.Seen.Consult)
}

// refusedWhich reports whether f is a join refused as "not found" or "not
// active", which notFoundWhich judges.
func refusedWhich(t *Transfer, f *Outcome) bool {
	if f.Reason != ReasonCallNotFound && f.Reason != ReasonCallNotActive {
		return false
	}
	s := t.lastStep(StepTransfer)
	return s != nil && s.Status == StepFailed
}

// sentToTarget reports whether what this transfer sent can have put the
// caller with the target: a join, or, where the provider joins them itself
// when the target answers (no Join in the flow), the dial.
func sentToTarget(en *entry) bool {
	t := en.t
	return !t.Sent.Join.IsZero() || (!en.flow.Join && !t.Sent.Dial.IsZero())
}

// sweepTombstone works on the obligation of a verified outcome: a
// tombstone, which owes only the consult leg that never appeared. It hangs
// up a late leg of ours (never touching the caller: no unhold, whatever
// the reading shows of the caller) and discharges the obligation once a
// reading taken at or after the tombstone's Until shows no leg of ours
// alive — whatever the caller's state: the caller was verified back and
// is the agent's again, to hang up, hold or transfer elsewhere. The
// outcome is not rewritten: it was verified, and nothing the caller or
// the agent do after it is this transfer's doing. obs was read at `at`,
// after every request of ours.
func (e *Engine) sweepTombstone(ctx context.Context, en *entry, obs Observation, at time.Time) time.Duration {
	t := en.t
	now := e.now()
	// The hang-up only: callerDone, so that the caller is never unheld.
	e.compensate(ctx, en, obs, at, true, true)
	if en.lost {
		return 0
	}
	alive := obs.Consult == ConsultRinging || obs.Consult == ConsultAnswered
	switch {
	case now.Before(t.Cleanup.Until):
		// A late leg wakes the transfer through its watcher; the end of
		// the window through the queue.
		return min(t.Cleanup.Until.Sub(now)+time.Millisecond, e.redoWait(en, now))
	case alive:
		// Hung up above, or due again: a reading after the hang-up decides.
		return min(e.cfg.VisibilityWindow, e.redoWait(en, now))
	case at.Before(t.Cleanup.Until):
		// A leg may have appeared between this reading and the end of the
		// window: only a reading taken after it may discharge.
		en.w.need(en.id)
		return 0
	}
	t.Cleanup = nil
	e.note(en, StepVerify, "the tombstone's watch ended: no consult leg of ours is alive; the verified outcome stands")
	// The outcome did not change: a transfer.needs_attention it called for
	// was sent when it ended.
	emit(t, EventOutcomeVerified, now, t.State, t.State)
	if e.save(ctx, en) {
		en.log.Info().Str("state", string(t.State)).Msg("cleanup done: the tombstone's watch ended")
	}
	return 0
}

// compensate sends the consult's hang-up and the caller's unhold where
// they are due: never sent yet, failed, or sent and a reading taken a
// visibility window after its request was answered still shows them
// needed. obs was read at `at` (when fresh). callerDone means the caller
// must not be unheld (gone, or with the target).
func (e *Engine) compensate(ctx context.Context, en *entry, obs Observation, at time.Time, fresh, callerDone bool) {
	t := en.t
	now := e.now()
	// What a reading shows of an action proves it did not take only when
	// the reading started a visibility window after the action's request
	// was answered. Sent.Hangup and Sent.Unhold are when they were
	// decided, before their intents were saved and their requests sent: a
	// reading started in between shows the consult up and the caller held,
	// whatever the clock says by the time it is judged (seen in CI: a
	// cancel's hang-up and unhold sent twice). Such a reading is no proof
	// either way: the transfer looks again when one could be (judgeAt),
	// or, that time past, asks for the next reading.
	//
	// A compensation just sent is looked at again likewise: nothing else
	// may wake the transfer if it is lost (the readings go on showing the
	// same thing).
	judgeAt := func(s time.Time) {
		if en.judgeAt.IsZero() || s.Before(en.judgeAt) {
			en.judgeAt = s
		}
	}
	settled := func(name string) bool {
		s := e.stepSettledAt(t, name)
		switch {
		case !at.Before(s):
			return true
		case now.Before(s):
			judgeAt(s)
		default:
			e.needReading(en)
		}
		return false
	}
	alive := obs.Consult == ConsultRinging || obs.Consult == ConsultAnswered
	// A hang-up sent before the consult was ever seen may have found
	// nothing: a reading started after it was answered that shows the
	// consult makes it due again at once; an earlier one asks for that
	// reading.
	hangupAgain := func() bool {
		if !en.hangupUnseen {
			return settled(StepHangup)
		}
		if at.After(e.stepEnd(t, StepHangup)) {
			return true
		}
		e.needReading(en)
		return false
	}
	// A compensation whose intent was saved by a process that died before
	// its result is owed again (stepInterrupted): it may never have been
	// sent, and what it undoes besides the leg (a Bandwidth consult bridge
	// holding the agent) may not show in a reading.
	// A compensation whose last try failed is owed again once its pause
	// is over — also after a restart, which forgets the pause: the record
	// says it failed. A Bandwidth consult hang-up refused while the leg
	// was being set up, for one, is what empties the consult bridge that
	// holds the agent; until it is sent again every unhold is refused.
	if !t.Sent.Dial.IsZero() {
		due := t.Sent.Hangup.IsZero() || (t.lastFailed(StepHangup) && !now.Before(en.retryAt)) || stepInterrupted(en, StepHangup) ||
			(fresh && alive && hangupAgain())
		// After a join was sent, the consult may carry the caller: it is
		// hung up only on a reading that shows it does not.
		if !t.Sent.Join.IsZero() && !(fresh && obs.Caller != CallerTransferred) {
			due = false
		}
		if due {
			t.Sent.Hangup = now
			en.hangupUnseen = !(fresh && alive)
			err := e.step(ctx, en, StepHangup, func(ctx context.Context) error { return en.p.HangupConsult(ctx, t) }, "", true, saveNow)
			if en.lost {
				return
			}
			judgeAt(e.stepSettledAt(t, StepHangup))
			if err != nil {
				en.retryAt = now.Add(e.retryWait(en))
			}
			if KindOf(err) == KindConflict {
				// The adapter found the consult with the caller: the join
				// landed after the reading. Nothing more on that reading.
				return
			}
		}
	}
	// A flow without a hold owes an unhold only to a caller the provider
	// gave back alone (Observation.CallerAlone), once a reading shows the
	// consult clear: the unhold puts the caller back with the agent.
	alone := fresh && obs.CallerAlone && !alive
	if (t.Sent.Hold.IsZero() && t.Sent.Unhold.IsZero() && !alone) || callerDone || en.callerGone || en.unholdRefused != "" {
		return
	}
	redo := en.redoUnhold && !now.Before(en.retryAt)
	if redo && fresh && !at.After(e.stepEnd(t, StepUnhold)) {
		// The reading began before the failed unhold was answered: the
		// caller it shows held may have gone on since (the agent's own
		// transfer put the caller with the target as the unhold went
		// out, seen in CI: TestSweepOfACallerWithTheTargetDoesNotSpin),
		// and an unhold sent again on it takes the caller back from the
		// target. The next reading decides. Without one (the provider
		// unreadable, fresh false) the unhold is sent again blind, as
		// before: a compensation needs no reading.
		redo = false
		e.needReading(en)
	}
	due := t.Sent.Unhold.IsZero() || redo || stepInterrupted(en, StepUnhold) ||
		(fresh && (obs.Caller == CallerHeld || alone) && settled(StepUnhold))
	// After a join was sent, the caller may be with the target, and an
	// unhold would take the caller back from the target (Bandwidth gives
	// the caller's bridge back to caller and agent): it is sent only on a
	// fresh reading that shows the caller held.
	if !t.Sent.Join.IsZero() && !(fresh && obs.Caller == CallerHeld) {
		due = false
	}
	if !due {
		return
	}
	t.Sent.Unhold = now
	err := e.step(ctx, en, StepUnhold, func(ctx context.Context) error { return en.p.Unhold(ctx, t) }, "", true, saveNow)
	if en.lost {
		return
	}
	judgeAt(e.stepSettledAt(t, StepUnhold))
	en.redoUnhold = false
	switch {
	case err == nil:
	case errors.Is(err, errUnsaved):
		// Not sent (see step): owed again after a pause.
		en.redoUnhold = true
		en.retryAt = now.Add(e.retryWait(en))
	case KindOf(err) == KindCallNotFound:
		en.callerGone = true // hung up while held, or a leg the unhold addresses has ended
		en.notFound++
	case transient(err) || KindOf(err) == KindProviderRejected || KindOf(err) == KindProviderAuth:
		// Rejected may be a state not applied yet (a bridge member still
		// leaving another bridge), and credentials refused may be taken
		// again (a key rotated, the tenants file reloaded): try again.
		// Given up, the caller would stay held for good.
		en.redoUnhold = true
		en.retryAt = now.Add(e.retryWait(en))
	default:
		en.unholdRefused = err.Error()
	}
}

// afterJoin does what is left once the caller is seen with the target,
// on whichever path sees it (completing, a recovery that finds the join
// applied late, a sweep): where the flow leaves the agent's call up
// (Flow.HangupAgent), it hangs it up. The step saves no intent (see step):
// repeating it is harmless (a crash before the completion is saved sends
// it again), and a failure leaves the agent alone on a silent call, not
// the caller, so the transfer still completes. It returns what to add to
// the outcome's detail, and whether the transfer was lost to another
// replica.
//
// again, when not zero, says that the hang-up was held back before it
// went out (this replica's claim on the transfer was in doubt: its
// heartbeat ran out or lapsed, or the claim the adapter decided under ran
// out): the caller is to come back after that wait, having finished
// nothing.
// Finished then, the transfer was completed with the agent's call left
// up alone in a bridge of ours (Bandwidth's b2), for good: nothing sends
// the step again once the completion is saved. A save first makes the
// claim sure again (a lapse is cleared by one), or finds the transfer
// another replica's (lost), whose own reading then hangs the agent up.
// A request the adapter needed first that failed (ErrNotSent) is tried
// again while the step's patience lasts.
func (e *Engine) afterJoin(ctx context.Context, en *entry) (detail string, lost bool, again time.Duration) {
	if !en.flow.HangupAgent {
		return "", false, 0
	}
	h, ok := en.p.(AgentHanger)
	if !ok {
		return fmt.Sprintf("; provider %s has no way to hang up the agent's call", en.p.Name()), false, 0
	}
	if last := en.t.lastStep(StepHangupAgent); last == nil || (en.resumed && last.StartedAt.Before(en.entered)) {
		// Its patience runs from its own first try, not from a failure of
		// the join before it (one that failed on the way and was applied
		// all the same, or was held back before it was accepted): judged
		// from there, a hang-up that failed for a moment was not sent
		// again, and the agent's call stayed up alone in a bridge of ours.
		// Tried by a process before this one and not yet by this one:
		// from the first try in this state, as that process counted it
		// (resumedFirstTry). Begun again by each process, processes
		// stopped one after another kept a hang-up the provider failed for
		// good going, and the transfer completing, for as long as the
		// stops went on. A hang-up held back for the heartbeat began
		// nothing there: afterJoin sends it again once the heartbeat is
		// renewed, however long that takes.
		en.retries, en.retryAt, en.firstTry = 0, time.Time{}, time.Time{}
		resumedFirstTry(en, StepHangupAgent)
	}
	err := e.step(ctx, en, StepHangupAgent, func(ctx context.Context) error { return h.HangupAgent(ctx, en.t) }, "", true, saveNext)
	if en.lost {
		return "", true, 0
	}
	// Held back before it went out, or failed for a reason that may go
	// away (a 5xx on each of the adapter's attempts): sent again, within
	// the step's patience, before the transfer completes. Completed
	// first, the agent's call stayed up alone in the consult bridge, and
	// nothing sent the hang-up again. A refusal goes into the detail.
	if errors.Is(err, errUnsaved) || ((errors.Is(err, ErrNotSent) || transient(err)) && e.patient(en)) {
		if e.save(ctx, en); en.lost {
			return "", true, 0
		}
		return "", false, e.backoff(en)
	}
	if err != nil {
		return "; the agent's call could not be hung up: " + err.Error(), false, 0
	}
	return "", false, 0
}

// redoWait is when a compensation that failed is due again, or when a
// reading could prove that one a reading showed still needed did not
// take (judgeAt; see compensate): a long wait when neither.
func (e *Engine) redoWait(en *entry, now time.Time) time.Duration {
	d := time.Hour
	if en.t.lastFailed(StepHangup) || en.redoUnhold {
		d = max(en.retryAt.Sub(now), 0) + time.Millisecond
	}
	if !en.judgeAt.IsZero() {
		d = min(d, max(en.judgeAt.Sub(now), 0)+time.Millisecond)
	}
	return d
}

// readingFrom is the wait for a reading started at or after s: until s,
// the queue wakes the transfer then; after it, the next reading does.
func (e *Engine) readingFrom(en *entry, s time.Time) time.Duration {
	if d := s.Sub(e.now()); d > 0 {
		return d + time.Millisecond
	}
	e.needReading(en)
	return e.cfg.VisibilityWindow
}

// needReading makes the next reading wake the transfer, whatever it shows.
func (e *Engine) needReading(en *entry) {
	if en.w != nil {
		en.w.need(en.id)
	}
}

// restored decides, from a fresh reading taken at `at`, whether the
// recovery is done and whether the caller is back: no consult leg of ours
// alive, a hold that may still be applied settled, and the caller
// connected, gone, or moved on for good (see movedOnSince: only the
// sweeper of an unverified outcome records that).
func (e *Engine) restored(en *entry, obs Observation, at time.Time) (restored, done bool) {
	t := en.t
	consultClear := t.Sent.Dial.IsZero() || (obs.Consult != ConsultRinging && obs.Consult != ConsultAnswered)
	holdSettled := !at.Before(e.settledAt(t))
	if !consultClear || !holdSettled {
		return false, false
	}
	switch obs.Caller {
	case CallerConnected:
		return true, true
	case CallerGone:
		return false, true
	case CallerHeld, CallerUnknown:
		// Held although nothing of ours is left to undo (the agent's leg
		// ended, say): not restored, and nothing more to do.
		if en.unholdRefused != "" {
			return false, true
		}
		if en.callerGone {
			// An unhold answered "not found". Only a reading taken after
			// it can say whether the caller's call ended (where the
			// transfer may have connected the caller to the target, an
			// outcome that cannot be known) or goes on (the 404 was about
			// the agent's leg, or a call the PBX did not show for a
			// moment: callerSeenUp takes it back, and the caller is owed
			// the unhold again). The reading passed here is usually the
			// one the unhold was decided on, which showed the caller held:
			// taken for gone on it, the caller was left on hold, verified.
			if !at.After(e.stepEnd(t, StepUnhold)) {
				return false, false
			}
			return false, true
		}
		// The caller's call goes on with neither the agent nor the target
		// (the agent transferred it elsewhere), and every reading has
		// shown so for the verification patience: the caller moved on,
		// and no action of ours can bring them back. Not restored, and
		// done. Only successful readings count (see trackMovedOn).
		if since := movedOnSince(t); obs.Caller == CallerUnknown && !since.IsZero() &&
			!at.Before(since.Add(e.cfg.VerifyTimeout)) {
			return false, true
		}
	}
	return false, false
}

// Notes the sweeper records when the caller's call shows neither the
// agent nor the target, and when it shows one of them again.
const (
	noteMovedOn = "the caller's call shows neither the agent nor the target"
	noteBack    = "the caller's call shows the agent or the target again"
)

// movedOnSince returns when the sweeper first saw the caller moved on
// (noteMovedOn), if no reading has shown the caller back since; otherwise
// the zero time. It is kept in the record's steps, so that a restart or
// another replica keeps counting from it.
func movedOnSince(t *Transfer) time.Time {
	for i := len(t.Steps) - 1; i >= 0; i-- {
		s := &t.Steps[i]
		if s.Name != StepReconcile {
			continue
		}
		switch s.Detail {
		case noteMovedOn:
			return s.StartedAt
		case noteBack:
			return time.Time{}
		}
	}
	return time.Time{}
}

// trackMovedOn records, from a successful reading, whether the caller has
// moved on (CallerUnknown: the call goes on without the agent or the
// target) or is seen again, and reports whether the record changed. A
// reading that failed says nothing and is never passed here.
func (e *Engine) trackMovedOn(en *entry, obs Observation) bool {
	t := en.t
	switch movedOn := !movedOnSince(t).IsZero(); {
	case obs.Caller == CallerUnknown && !movedOn:
		e.note(en, StepReconcile, noteMovedOn)
	case obs.Caller != CallerUnknown && movedOn:
		e.note(en, StepReconcile, noteBack)
	default:
		return false
	}
	return true
}

// settledAt is when readings start to count for judging the caller. A
// request that holds the caller may still land after the unhold: a
// provider applies accepted actions late, and an adapter may have sent a
// hold more than once (a safe retry after a lost answer), so even a hold
// seen applied may have a twin in flight. A dial may move the caller too
// (Bandwidth takes the agent out of the caller's bridge before it creates
// the consult), even when it then failed and created nothing; a consult
// seen means the dial got past that. So: a visibility window after the
// last such request could have been sent.
func (e *Engine) settledAt(t *Transfer) time.Time {
	var at time.Time
	if !t.Sent.Hold.IsZero() {
		at = e.stepSettledAt(t, StepHold)
	}
	if !t.Seen.Consult {
		at = later(at, e.stepSettledAt(t, StepDial))
	}
	return at
}

// stepEnd is when the last request of step name had certainly gone out
// (Transfer.StepEnd): a step that never ended (the process died in it) is
// bounded by the step timeout. A reading started before it cannot show it.
func (e *Engine) stepEnd(t *Transfer, name string) time.Time {
	return t.StepEnd(name, e.cfg.StepTimeout)
}

// whoEnded returns reason and detail for a consult found ended, unless
// reason blames the target (target_hung_up) for an end that a hang-up of
// the process before this one may have caused: a transfer resumed from a
// process that may have sent one unrecorded (hangupSettledAt), whose
// consult no reading showed live once such a hang-up had landed. The
// record cannot say that process sent one (its intent was refused: a
// give-up's compensation sent blind), and a provider shows an answered
// leg hung up by us as one whose party hung up (Bandwidth's
// NORMAL_CLEARING): the cause is unknown (consult_failed), never a wrong
// one. A reason the provider gave that no hang-up of ours produces (busy,
// rejected, no answer) is kept.
func (e *Engine) whoEnded(en *entry, reason Reason, detail string) (Reason, string) {
	if reason != ReasonTargetHungUp || !en.resumed || en.adoptedAt.IsZero() || en.outlived.Load() {
		return reason, detail
	}
	return ReasonConsultFailed, detail + "; a process that drove the transfer before this one may have hung the consult up " +
		"without a record of it: whether the target hung up is unknown"
}

// whoHungUp returns reason and detail for a caller's call found ended
// during the consult or while completing: the caller hung up (hungUp),
// unless a hang-up of the consult by a process before this one may have
// ended it. Where the provider connects the caller and the consult itself
// (an announced transfer, Flow.Join false), the consult's end may take the
// caller's call with it: Bandwidth ends the caller's call when its B-leg
// is cancelled before the answer, and the leg then reads cancelled
// (ORIGINATOR_CANCEL) as when the caller hangs up while it rings; a cancel
// sent while the leg rang and applied once it answered ends the connected
// caller with it, as the caller hanging up on the target does. For a
// transfer resumed from a process that may have sent such a hang-up
// unrecorded, whose consult no reading showed live once it had landed (as
// whoEnded), and is not shown live now, who ended the call is unknown
// (consult_failed; ended says what is known), never the caller.
func (e *Engine) whoHungUp(en *entry, obs Observation, hungUp, ended string) (Reason, string) {
	if en.flow.Join || !en.resumed || en.adoptedAt.IsZero() || en.outlived.Load() ||
		obs.Consult == ConsultRinging || obs.Consult == ConsultAnswered {
		return ReasonCallerHungUp, hungUp
	}
	return ReasonConsultFailed, ended + "; a process that drove the transfer before this one " +
		"may have hung the consult up without a record of it, which ends the caller's call with it: whether the caller hung up is unknown"
}

// hangupSettledAt is when no hang-up of the consult sent for the transfer
// can still land: a visibility window after the last one's step ended
// and, for a transfer this process resumed, a window after it adopted
// it. The process that drove it before may have sent one later than its
// step's record says (its intent slow to save: a hang-up has the step
// timeout from that save) or with no record at all (its intent could not
// be saved: sent blind), but not after this process adopted it: its send
// gate shut with its lease, before any claim, and a process restarted
// under its name was stopped first. Where a hang-up of the consult ends
// the caller's call with the target (an announced transfer, Bandwidth's
// B-leg), a reading of the caller with the target taken before it landed
// was reported completed, verified, and no hang-up of this process's own
// came after it to be waited for.
func (e *Engine) hangupSettledAt(en *entry) time.Time {
	s := e.stepSettledAt(en.t, StepHangup)
	if en.resumed && !en.adoptedAt.IsZero() {
		s = later(s, en.adoptedAt.Add(e.cfg.VisibilityWindow))
	}
	return s
}

// stepSettledAt is when the last request of step name can no longer be
// applied late: a visibility window after its step ended. A reading
// started then shows whether it took. Zero when no such step was made.
func (e *Engine) stepSettledAt(t *Transfer, name string) time.Time {
	end := e.stepEnd(t, name)
	if end.IsZero() {
		return end
	}
	return end.Add(e.cfg.VisibilityWindow)
}

func (e *Engine) recoveryNotes(en *entry, restored bool) string {
	// In a flow without a hold, an unhold puts a caller given back alone
	// back with the agent (Observation.CallerAlone): say that, not "off
	// hold", for the caller was never held.
	alone := en.t.Sent.Hold.IsZero() && !en.t.Sent.Unhold.IsZero()
	switch {
	case restored && alone:
		return "; the caller is back with the agent"
	case restored:
		return ""
	case alone && en.unholdRefused != "":
		return "; not put back with the agent: " + en.unholdRefused
	case en.callerGone:
		return "; the caller hung up before being taken off hold"
	case en.unholdRefused != "":
		return "; unhold failed: " + en.unholdRefused
	case en.t.Sent.Hold.IsZero():
		// The provider's own transfer failed and took the caller's call
		// with it (Bandwidth ends an announced transfer's caller).
		return "; the provider did not return the caller to the original call: the caller's call has ended"
	case !en.t.Sent.Unhold.IsZero():
		// An unhold was sent and not refused: it may have applied, and the
		// caller hung up once back with the agent, or not yet; no reading
		// showed which, so the detail does not say.
		return "; the caller's call ended after transferd asked to take it off hold, before any reading showed it off hold"
	}
	return "; the caller's call ended before it was taken off hold"
}

// tombstone is the obligation a transfer keeps when its consult may still
// appear: it was dialled, never seen, and TombstoneTTL has not passed.
func (e *Engine) tombstone(t *Transfer, now time.Time) *Cleanup {
	if t.Sent.Dial.IsZero() || t.Seen.Consult {
		return nil
	}
	// From the dial's answer, as the visibility window that declared the
	// consult missing (consultDueAt): from its decision, a dial answered
	// later than the two's difference left no tombstone at all.
	from := t.Sent.Dial
	if end := e.stepEnd(t, StepDial); end.After(from) {
		from = end
	}
	until := from.Add(e.cfg.TombstoneTTL)
	if !now.Before(until) {
		return nil
	}
	return &Cleanup{Until: until, Reason: "tombstone: the consult never appeared; it is hung up if it appears late"}
}

func finalState(failure *Outcome) State {
	if failure.Reason == ReasonCancelled {
		return StateCancelled
	}
	return StateFailed
}

// --- readings ----------------------------------------------------------

// reading returns what the latest reading of en's view shows, if it was
// taken after `after`; otherwise it asks the watcher for a new one and
// reports false (the watcher queues the transfer when it arrives).
func (e *Engine) reading(en *entry, after time.Time) (Observation, time.Time, error, bool) {
	e.subscribe(en)
	s := en.w.latest()
	// A reading begun before the transfer joined the watcher (one of a
	// view watched for other transfers) was not read for it: an adapter
	// answers it unknown, or from a listing not read for this record
	// (see below). Taken as the transfer's, a provider unreadable, the
	// recovery of a refused join hung the consult up blind on it, and
	// no reading after that hang-up could say which call the join had
	// not found (notFoundWhich).
	if s == nil || !s.at.After(after) || s.read <= en.subscribed {
		en.w.need(en.id)
		return Observation{}, time.Time{}, nil, false
	}
	if s.err != nil {
		return Observation{}, s.at, s.err, true
	}
	obs, err := s.view.Observe(en.t)
	if err != nil && s.published < en.published {
		// The view was read for a record older than this transfer's last
		// saved one (a watcher reads for the records as last published),
		// and an adapter's read may depend on the record: a NetSapiens
		// listing confirms one by one the consult it does not show only
		// while no join was sent, so a listing read as a join went out,
		// judged after the join was refused, cannot tell whether the
		// consult is up. That is not the provider being unreadable: a
		// reading read for this record can tell, and is asked for.
		en.w.need(en.id)
		return Observation{}, time.Time{}, nil, false
	}
	return obs, s.at, err, true
}

// observed records what a reading showed and reports whether the record
// changed.
func (e *Engine) observed(en *entry, obs Observation, at time.Time) bool {
	t := en.t
	changed := e.learn(en, obs.ConsultLeg)
	en.setHeld(e, obs.Caller == CallerHeld)
	if obs.Caller == CallerHeld && !t.Sent.Hold.IsZero() && at.After(t.Sent.Hold) && !t.Seen.Held {
		t.Seen.Held, changed = true, true
	}
	// The join did not take when, once it could have applied, the caller
	// is held or with the agent while the target is still on the consult
	// leg, apart from the caller, or while the provider shows the caller
	// positively with the agent. Not otherwise when the consult has ended:
	// a join that took and whose target then hung up leaves the caller
	// alone in a bridge, which a Bandwidth reading shows as held.
	if (obs.Caller == CallerHeld || obs.Caller == CallerConnected) &&
		(obs.Consult == ConsultAnswered || obs.Consult == ConsultRinging || obs.CallerWithAgent) &&
		!t.Seen.NotJoined && !t.Sent.Join.IsZero() &&
		!at.Before(e.joinSettledAt(t)) {
		t.Seen.NotJoined, changed = true, true
	}
	if (obs.Consult == ConsultRinging || obs.Consult == ConsultAnswered) && en.resumed && !en.adoptedAt.IsZero() {
		en.liveAt = later(en.liveAt, at)
		if !at.Before(en.adoptedAt.Add(e.cfg.VisibilityWindow)) {
			en.outlived.Store(true)
		}
	}
	// A leg seen ended was there: no tombstone needs to watch for it.
	if obs.Consult != ConsultAbsent && !t.Seen.Consult {
		t.Seen.Consult, changed = true, true
	}
	if obs.Consult == ConsultEnded && !t.Seen.ConsultEnded {
		t.Seen.ConsultEnded, changed = true, true
	}
	// A leg that ended before any reading showed it answered was
	// answered all the same.
	if obs.ConsultWasAnswered && !t.Answered && !t.Sent.Dial.IsZero() {
		if t.State.Terminal() {
			// A late leg's answer, after the end was reported: a fact for
			// joinUnknown, not a new event (the sweeper's note says it).
			t.Answered = true
		} else {
			e.answered(en)
		}
		changed = true
	}
	if changed {
		// What a reading taught is saved by the end of this reconcile at
		// the latest, whatever the state does with it: a restart must not
		// forget it (a join seen not to take would turn unknowable).
		en.unsaved = true
	}
	return changed
}

// keepNotes takes into the record what the provider's adapter knows of
// the transfer outside its readings (NoteKeeper), and reports whether
// that changed it. A provider that keeps none costs a type assertion.
func (e *Engine) keepNotes(en *entry) bool {
	k, ok := en.p.(NoteKeeper)
	if !ok {
		return false
	}
	n := k.Notes(en.t)
	if n == "" || n == en.t.ProviderNotes {
		return false
	}
	en.t.ProviderNotes = n
	return true
}

// joinSettledAt is when a join can no longer be applied late: a visibility
// window after its step ended. The step ends after the request went out,
// which may be well after Sent.Join (the intent's save; on Bandwidth, the
// consult's release and the join sent again while a call leaves a
// bridge); a step that never ended (the process died in it) is bounded by
// the step timeout.
func (e *Engine) joinSettledAt(t *Transfer) time.Time {
	if at := e.stepSettledAt(t, StepTransfer); !at.IsZero() {
		return at
	}
	return t.Sent.Join.Add(e.cfg.VisibilityWindow)
}

// answered records that the target answered the consult leg.
func (e *Engine) answered(en *entry) {
	t := en.t
	t.Answered = true
	e.note(en, StepAnswered, "the target answered")
	emit(t, EventTargetAnswered, e.now(), t.State, t.State)
}

// learn keeps consult ids the provider revealed.
func (e *Engine) learn(en *entry, l LegRef) bool {
	c := &en.t.Legs.Consult
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
	return changed
}

func (e *Engine) warnUnread(en *entry, err error) {
	if !en.warnedUnread {
		en.warnedUnread = true
		en.log.Warn().Err(err).Str("state", string(en.t.State)).Msg("the provider cannot be read; the transfer waits, taking nothing for granted")
	}
}

// warnStillOpen says, once a life of the entry, that readings keep
// showing what does not let an unverified outcome's obligation be
// discharged (the caller still held, say, or a consult leg still up) a
// verification patience past its window: the obligation waits for the
// provider, and nothing else tells an operator, or a test following the
// transfer, where it stands.
func (e *Engine) warnStillOpen(en *entry, obs Observation, now time.Time) {
	if en.warnedOpen || now.Before(en.t.Cleanup.Until.Add(e.cfg.VerifyTimeout)) {
		return
	}
	en.warnedOpen = true
	en.log.Warn().Str("state", string(en.t.State)).Str("caller", obs.Caller.String()).Str("consult", obs.Consult.String()).
		Str("detail", obs.Detail).Msg("the cleanup obligation is still open: the provider does not show the caller safe and no leg of ours alive")
}

// awaitsCleanup reports whether t is a caller not confirmed safe, as
// transferd_cleanups_pending counts them: a terminal transfer whose
// outcome is unverified and whose obligation is open. A tombstone's
// outcome was verified (its caller is back with the agent; it watches for
// a consult leg that never appeared) and counts only in flight. An
// outcome changes its verified flag only as its obligation is discharged,
// so what an entry counted stays right until then.
func awaitsCleanup(t *Transfer) bool {
	return t.Cleanup != nil && t.Outcome != nil && !t.Outcome.Verified
}

// setPending keeps the cleanups-pending gauge equal to what the entry's
// record says (awaitsCleanup).
func (en *entry) setPending(e *Engine, pending bool) {
	en.count(e.m.cleanups, &en.counted, pending)
}

// setHeld keeps the callers-on-hold gauge equal to what readings show.
func (en *entry) setHeld(e *Engine, held bool) {
	en.count(e.m.onHold, &en.held, held)
}

// count keeps the entry counted in gauge exactly while want holds: *in
// says whether it is counted now.
func (en *entry) count(gauge *prometheus.GaugeVec, in *bool, want bool) {
	if want == *in {
		return
	}
	*in = want
	g := gauge.WithLabelValues(en.p.Name())
	if want {
		g.Inc()
	} else {
		g.Dec()
	}
}

// --- steps, saves, transitions -------------------------------------------

// resultSave says when a successful step's result is written.
type resultSave uint8

const (
	// saveNow: at once, with the move to the next state.
	saveNow resultSave = iota
	// saveNext: by the next save, at the latest when the reconcile ends.
	// For a result followed at once by the next step's intent, which then
	// carries it: a crash before that save only repeats a safe step (a
	// read, or a hold, whose repetition the join's hold gate allows for).
	saveNext
	// saveLater: by whatever save comes next, however late. For a result
	// that carries no recovery information: a join accepted, whose effect
	// is verified by watching whatever its answer was.
	saveLater
)

// notSentDetail begins the detail of a step whose request was not made
// (errUnsaved).
const notSentDetail = "not sent: "

// Why a step was held back for this replica's heartbeat (errUnsaved, after
// notSentDetail): its process waits for the heartbeat, however long, and
// begins no patience for it, and a process that resumes the transfer knows
// such a step by its detail alone (heldBackByLease).
const (
	leaseRanOut        = "this replica's heartbeat ran out; another replica may own the transfer now"
	leaseRanOutInSave  = "this replica's heartbeat ran out while it saved the intent; another replica may own the transfer now"
	leaseLapsed        = "this replica's heartbeat lapsed since the transfer was last saved"
	leaseLapsedRefused = "the store could not save its intent, and this replica's heartbeat lapsed since the transfer was last saved"
)

// step saves the intent of a provider request, makes it, and saves its
// result (when; see resultSave). When it succeeds and next is set, the
// move to state next goes with the result: one durable write instead of
// two. A read (locate) saves no intent: it can simply be repeated. When
// the intent cannot be saved the request is not made (errUnsaved) —
// except a restorative one (unhold, hang-up), which is always safe to make
// and matters more than its record. A failure is always saved at once.
func (e *Engine) step(ctx context.Context, en *entry, name string, f func(context.Context) error, next State, restorative bool, result resultSave) error {
	t := en.t
	t.Steps = append(t.Steps, Step{Name: name, Status: StepStarted, StartedAt: e.now()})
	// When the last request of the step may go out (see below).
	stepDeadline := t.Steps[len(t.Steps)-1].StartedAt.Add(e.cfg.StepTimeout)
	// gate: whether the step's requests may still be written (sendgate).
	var gate func() bool
	if name != StepLocate {
		notSent := func(why string) error {
			s := &t.Steps[len(t.Steps)-1]
			s.Status, s.EndedAt, s.Detail = StepFailed, e.now(), notSentDetail+why
			return errUnsaved
		}
		heldBack := func(why string) error {
			if !en.warnedLease {
				en.warnedLease = true
				en.log.Warn().Str("step", name).
					Msg("not sending: this replica's heartbeat ran out and another replica may own the transfer now; waiting until it is renewed")
			}
			return notSent(why)
		}
		held, lapses := e.leaseHeld()
		if !held {
			return heldBack(leaseRanOut)
		}
		// The join's last look for a cancel (below) is made by its
		// intent's save, in the same transaction.
		t.LookForSignal = name == StepTransfer
		switch {
		case name == StepHangupAgent:
			// Its intent carries nothing to recover, so it is not saved: a
			// crash before the completion is saved sends it again from the
			// reading that shows the join, and the agent's call ends once.
			// Without that save, only the lease says the transfer is still
			// this replica's.
			if en.lapses != lapses {
				return notSent(leaseLapsed)
			}
		case !e.save(ctx, en):
			switch {
			case en.lost:
				return ErrVersionConflict
			case !restorative:
				if held, now := e.leaseHeld(); !held || now != lapses {
					// The heartbeat ran out while the save was tried (a
					// store cut off answers at its i/o timeout): held back
					// by the lease, as if it had run out first, and not
					// given up (unsentTooLong) while another replica may
					// own the transfer; it goes on once the heartbeat is
					// renewed.
					return heldBack(leaseRanOutInSave)
				}
				notSent("the store could not save its intent")
				return errIntentRefused
			case en.lapses != lapses:
				// The heartbeat lapsed since the transfer was last saved:
				// another replica may have claimed it and be acting on it.
				// Only a save, which its claim would make fail, can tell.
				return notSent(leaseLapsedRefused)
			}
		}
		// The save may have taken long (a store that cannot be reached
		// answers at its i/o timeout): the lease is judged again at the
		// moment of sending.
		if held, now := e.leaseHeld(); !held || now != lapses {
			return heldBack(leaseRanOutInSave)
		}
		if restorative {
			// An unhold or a hang-up has the step timeout from here, its
			// intent's save not counted: it is sent when its intent could
			// not be saved at all, and must be when the save took long.
			// Bounded by its start, a store slower than the step timeout
			// (whose commits still went through, the heartbeat with them)
			// had every unhold refused, and the caller held, for as long
			// as it was slow. A process resuming the transfer does not
			// rely on the bound: it sends an interrupted unhold or hang-up
			// again (stepInterrupted) and judges from its own.
			stepDeadline = e.now().Add(e.cfg.StepTimeout)
		}
		// And again at each write of its requests: the process may stop
		// anywhere between here and there. So is the step's end (below):
		// a process stopped past it, in the middle of an adapter's
		// retries, whose heartbeat still runs when it wakes (a lease
		// longer than the step timeout, or one process and no lease)
		// writes nothing more of the step; on waking, the context's
		// deadline and a write on its way run in no set order.
		gate = func() bool {
			held, now := e.leaseHeld()
			return held && now == lapses && e.now().Before(stepDeadline)
		}
		if name == StepTransfer {
			// The last moment a cancel can be honoured. One checked
			// against the record before the intent's save (consulting,
			// so accepted) is pending by now: through this replica, by
			// entry.gate; through another, by the version it was put at
			// (Store.PutSignal). The store is read whatever the flag
			// says, since a signal put elsewhere sets none here: by the
			// intent's save, after its write, when the store could
			// (Transfer.LookForSignal), or else now.
			s := en.lookedSignal
			if en.looked {
				en.signal.Store(false)
			} else {
				en.signal.Store(true)
				s = e.takeSignal(ctx, en)
			}
			en.looked, en.lookedSignal = false, SignalNone
			switch s {
			case SignalCancel:
				notSent("cancelled by the client")
				return errCancelledFirst
			case SignalNone:
			default:
				en.signal.Store(true) // not this step's to take
			}
		}
	}
	// The step's requests go out within StepTimeout of its start
	// (StartedAt, saved with its intent): a process that resumes the
	// transfer after this one stopped mid-step takes that as the last
	// moment a request of it was sent (Transfer.StepEnd), and judges
	// the hold, the dial and the join by readings a visibility window
	// after it. Counted from here instead, a slow save of the intent (or
	// the join's look for a cancel) let a request go out that much later,
	// applied after readings that were taken to rule it out.
	left := stepDeadline.Sub(e.now())
	if left <= 0 {
		s := &t.Steps[len(t.Steps)-1]
		s.Status, s.EndedAt, s.Detail = StepFailed, e.now(), notSentDetail+"its intent took longer than the step timeout to save"
		return errSlowIntent
	}
	e.crash(t, name+":intent")
	sctx, cancel := context.WithTimeout(ctx, left)
	// No request of the step (an adapter's retries) is sent once the
	// heartbeat has expired.
	stop := context.AfterFunc(e.leaseContext(), cancel)
	if gate != nil {
		sctx = sendgate.With(sctx, gate)
	}
	err := f(sctx)
	stop()
	cancel()
	e.crash(t, name+":effect")
	s := &t.Steps[len(t.Steps)-1]
	s.EndedAt = e.now()
	label := "ok"
	if err != nil {
		label = KindOf(err).String()
		s.Status, s.Detail, s.Evidence, s.ErrKind = StepFailed, err.Error(), EvidenceOf(err), label
		en.log.Warn().Err(err).Str("step", name).Msg("transfer step failed")
		if name == StepTransfer && errors.Is(err, ErrNotSent) {
			// Nothing that can join them went out: the save of this result
			// says so, so that a crash right after it does not leave the
			// join counted as possibly applied (see completing). A second
			// form (JoinFirst) is owed again as the first was.
			t.Sent.Join = time.Time{}
		}
	} else {
		s.Status = StepSucceeded
	}
	e.m.stepSeconds.WithLabelValues(en.p.Name(), name, label).Observe(s.EndedAt.Sub(s.StartedAt).Seconds())
	var from State
	advance := err == nil && next != ""
	if advance {
		from = e.enter(en, next)
	}
	switch {
	case err == nil && result == saveNext:
		en.unsaved = true
		e.crash(t, name+":result")
	case err == nil && result == saveLater:
		e.crash(t, name+":result")
	default:
		saved := e.save(ctx, en)
		if en.lost {
			return ErrVersionConflict
		}
		if saved {
			e.crash(t, name+":result")
		}
	}
	if advance {
		e.announce(en, from, next)
	}
	return err
}

// save writes the working record. A version conflict means another
// replica owns the transfer now: this one stops driving it — unless the
// conflict is with this replica's own write, answered with an error but
// made (see ownWrite). Any other failure leaves the record in memory
// (later saves carry it) and makes the replica unready.
func (e *Engine) save(ctx context.Context, en *entry) bool {
	if en.lost {
		return false
	}
	ctx = context.WithoutCancel(ctx)
	en.t.UpdatedAt = e.now()
	e.keepNotes(en) // carried by every save, at no write of its own
	_, lapses := e.leaseHeld()
	en.looked, en.lookedSignal = false, SignalNone
	// Saved only while this process's heartbeat is the name's: once
	// another process took the name over, this one's saves, and so the
	// requests each of them precedes, stop (Store.Update).
	en.t.Token = e.token
	err := e.store.Update(ctx, en.t)
	if errors.Is(err, ErrVersionConflict) && !errors.Is(err, ErrSuperseded) && en.saveFailing {
		var own bool
		if own, err = e.ownWrite(ctx, en); own {
			// The failed save was made, with its events: announce them
			// (the working record carries on without them).
			e.eventsSaved(en.t)
			err = e.store.Update(ctx, en.t)
		}
	}
	if errors.Is(err, ErrSuperseded) {
		// Not a write of this replica's own that a failed save made (see
		// ownWrite): the name is another process's. Also when the save
		// made again after that write is refused: the takeover landed
		// between the two.
		e.supersede()
	}
	if err == nil && en.t.LookForSignal && en.t.SignalLooked {
		en.looked, en.lookedSignal = true, en.t.PendingSignal
	}
	en.t.LookForSignal, en.t.SignalLooked, en.t.PendingSignal = false, false, SignalNone
	switch {
	case err == nil:
		if len(en.t.Outbox) > 0 {
			e.eventsSaved(en.t)
		}
		en.t.Outbox = nil
		en.unsaved = false
		en.lapses, en.warnedLease = lapses, false
		if en.saveFailing {
			en.saveFailing = false
			e.failingSaves.Add(-1)
			en.log.Info().Msg("the transfer is saved again")
		}
		e.storeOK(&e.saveErr)
		if c := en.ended; c != nil {
			// Counted before it is published: whoever sees the end sees it
			// counted.
			en.ended = nil
			e.countEnd(en, c)
		}
		c := en.t.Clone()
		en.cur.Store(c)
		prev := en.shown.Swap(c)
		en.published = e.published.Add(1)
		e.publish(en.id)
		if e.cfg.NotesSaved != nil && c.ProviderNotes != "" && (prev == nil || prev.ProviderNotes != c.ProviderNotes) {
			e.cfg.NotesSaved(en.id)
		}
		if !en.gated {
			// A signal checked against the record before this one has
			// been put by now (see entry.gate).
			en.gate <- struct{}{}
			<-en.gate
		}
		return true
	case errors.Is(err, ErrVersionConflict):
		en.lost = true
		en.ended = nil // the new owner's to decide and count
		en.log.Warn().Str("state", string(en.t.State)).Msg("another replica took the transfer over; stopped driving it")
		return false
	}
	if !en.saveFailing {
		en.log.Error().Err(err).Str("state", string(en.t.State)).
			Msg("cannot save the transfer; only steps that give the caller back are made until it can")
		e.failingSaves.Add(1)
	}
	en.saveFailing = true
	e.storeFailed(&e.saveErr, err)
	return false
}

// forgetFailedSave lets go of the failed save of an entry that will not
// save again: another replica took its transfer over (it saves the record
// now), or this one claimed it back (the claimed record replaces it).
// When no other entry's save is failing, Ready no longer reports the
// store unable to save: with no save left to succeed, nothing else would
// clear it, and the replica stayed unready for good.
func (e *Engine) forgetFailedSave(en *entry) {
	if !en.saveFailing {
		return
	}
	en.saveFailing = false
	if e.failingSaves.Add(-1) == 0 {
		e.storeOK(&e.saveErr)
	}
}

// ownWrite tells a version conflict that follows a failed save apart:
// a store may answer a write with an error and still have made it (a
// commit whose answer was lost), and this replica's next save then
// conflicts with its own write. That write is the only one that can
// have taken the stored record exactly one version past the working
// one while leaving this replica its owner: a claim by another replica
// changes the owner, and this replica claims its own transfers only when
// it opens. The working record then carries on from the stored version
// (what it holds is newer than what was written), without the events
// that write recorded. It returns false, with ErrVersionConflict, when
// the record is another's, and false with the read's error when the
// store cannot be read: unknown is not lost, the next save asks again.
func (e *Engine) ownWrite(ctx context.Context, en *entry) (bool, error) {
	cur, err := e.store.Get(ctx, en.id)
	if err != nil {
		return false, fmt.Errorf("a save conflicted after a failed one, and reading the stored record failed: %w", err)
	}
	if cur.Owner != en.t.Owner || cur.Version != en.t.Version+1 {
		return false, ErrVersionConflict
	}
	en.log.Warn().Int64("version", cur.Version).
		Msg("a save answered with an error had been written; carrying on from it")
	en.t.Version = cur.Version
	en.t.Outbox = slices.DeleteFunc(en.t.Outbox, func(ev Event) bool { return ev.Seq <= cur.EventSeq })
	return true, nil
}

// transition moves t to state `to`, saves it and logs one line.
func (e *Engine) transition(ctx context.Context, en *entry, to State) {
	from := e.enter(en, to)
	e.save(ctx, en)
	if !en.lost {
		e.announce(en, from, to)
	}
}

// carry moves t to state `to` and leaves the write to the next save of
// this reconcile (at the latest, its end): for a move followed at once by
// a step's intent, which carries it. A crash before that save resumes in
// the state before, which leads here again.
func (e *Engine) carry(en *entry, to State) {
	from := e.enter(en, to)
	en.unsaved = true
	e.announce(en, from, to)
}

// enter moves t to state `to` in memory, settling the metrics; the caller
// saves it and then announces it.
func (e *Engine) enter(en *entry, to State) (from State) {
	t := en.t
	from = t.State
	now := e.now()
	e.m.stateSeconds.WithLabelValues(en.p.Name(), string(from)).Observe(timeIn(en, now).Seconds())
	en.entered, t.StateAt = now, now
	en.retries, en.retryAt, en.firstTry = 0, time.Time{}, time.Time{}
	t.State = to
	emit(t, EventStateChanged, now, from, to)
	if to.Terminal() {
		emit(t, map[State]EventType{StateCompleted: EventCompleted, StateFailed: EventFailed, StateCancelled: EventCancelled}[to], now, from, to)
		if needsAttention(t) {
			emit(t, EventNeedsAttention, now, from, to)
		}
		// Counted once the store has the end (save), by the replica whose
		// save wrote it: an end whose save another replica's claim refused
		// is that replica's to decide and count. An earlier end not saved
		// yet (its save failed) is counted with this one.
		c := &endCount{state: to, prev: en.ended}
		if o := t.Outcome; o != nil {
			c.outcome, c.reason, c.unverified = true, o.Reason, !o.Verified
		}
		// The caller's time on hold ends at the first end; a correction
		// (the sweeper's, to completed) is not more of it.
		if !t.Sent.Hold.IsZero() && !from.Terminal() {
			c.held, c.hold = true, now.Sub(holdBegan(t))
		}
		en.ended = c
	}
	return from
}

// holdBegan is when the caller's hold began: the start of the first hold
// step whose request may have gone out. Sent.Hold is stamped anew by each
// attempt (a hold sent again after its answer was lost, or by the process
// that resumed the transfer), and the first may have held the caller
// already; an attempt whose intent could not be saved sent nothing
// (notSentDetail) and held nobody.
func holdBegan(t *Transfer) time.Time {
	for _, s := range t.Steps {
		if s.Name == StepHold && !strings.HasPrefix(s.Detail, notSentDetail) {
			return s.StartedAt
		}
	}
	return t.Sent.Hold
}

// timeIn is how long en's transfer has been in its state: from the
// record's StateAt, which a resumed transfer brings from the process that
// entered the state (entry.entered is when this process took it), or
// from its creation while it is pending. A record saved before StateAt
// existed counts from entry.entered, as before. Another replica's clock
// may be ahead of this one's: never less than nothing.
func timeIn(en *entry, now time.Time) time.Duration {
	t := en.t
	since := t.StateAt
	if since.IsZero() && t.State == StatePending {
		since = t.CreatedAt
	}
	if since.IsZero() {
		since = en.entered
	}
	return max(now.Sub(since), 0)
}

// endCount is what an end counts once it is saved: the outcome, whether it
// is unverified, the caller's time on hold. A sweeper that makes a
// verified outcome unverified for good counts only that.
type endCount struct {
	prev       *endCount // an earlier end the same save writes
	outcome    bool      // an end with an outcome (transferd_transfers_total)
	state      State
	reason     Reason
	unverified bool
	held       bool
	hold       time.Duration
}

// countEnd counts c, the end of en's record that a save just wrote.
func (e *Engine) countEnd(en *entry, c *endCount) {
	if c.prev != nil {
		e.countEnd(en, c.prev)
	}
	p := en.p.Name()
	if c.outcome {
		e.m.finished.WithLabelValues(p, string(c.state), string(c.reason)).Inc()
	}
	if c.unverified {
		e.m.unverified.WithLabelValues(p).Inc()
	}
	if c.held {
		e.m.holdSeconds.WithLabelValues(p).Observe(c.hold.Seconds())
	}
}

// announce logs one line for a transition.
func (e *Engine) announce(en *entry, from, to State) {
	t := en.t
	lvl := zerolog.InfoLevel
	o := t.Outcome
	if to.Terminal() && o != nil {
		switch {
		case to != StateCompleted && !o.CallerRestored && o.Reason != ReasonCallerHungUp:
			lvl = zerolog.ErrorLevel // the caller was not given back
		case !o.Verified:
			lvl = zerolog.WarnLevel
		}
	}
	agent := t.Request.Call.User
	if agent == "" {
		agent = t.Request.Call.AgentCallID
	}
	ev := en.log.WithLevel(lvl).Str("from", string(from)).Str("to", string(to)).
		Str("target", t.Request.Target).Str("agent", agent)
	if l := t.Legs; !l.Caller.IsZero() {
		ev = ev.Str("caller_call_id", l.Caller.CallID).Str("caller_session_id", l.Caller.SessionID).
			Str("agent_call_id", l.Agent.CallID).Str("consult_call_id", l.Consult.CallID)
	}
	if o != nil {
		ev = ev.Str("reason", string(o.Reason)).Bool("caller_restored", o.CallerRestored).Bool("verified", o.Verified)
	} else if f := t.Failure; f != nil && to == StateRecovering {
		ev = ev.Str("reason", string(f.Reason)).Str("detail", f.Detail)
	}
	ev.Msg("transfer " + string(to))
	e.crash(t, "state:"+string(to))
}

// finish ends the transfer; enter counts it. A cleanup obligation keeps
// the transfer open (claimable, watched) after its terminal state.
func (e *Engine) finish(ctx context.Context, en *entry, final State, out Outcome, cleanup *Cleanup) {
	en.t.Outcome = &out
	en.t.Cleanup = cleanup
	en.setPending(e, awaitsCleanup(en.t))
	e.transition(ctx, en, final)
}

// fail enters recovering with the given reason.
func (e *Engine) fail(ctx context.Context, en *entry, reason Reason, detail string, ev *Evidence) {
	en.t.Failure = &Outcome{Reason: reason, Detail: detail, Evidence: ev}
	e.transition(ctx, en, StateRecovering)
}

// failErr enters recovering for a step error.
func (e *Engine) failErr(ctx context.Context, en *entry, step string, err error) {
	e.fail(ctx, en, reasonFor(KindOf(err)), fmt.Sprintf("%s: %v", step, err), EvidenceOf(err))
}

// note records an observed event (no side effect) as a finished step.
func (e *Engine) note(en *entry, name, detail string) {
	now := e.now()
	en.t.Steps = append(en.t.Steps, Step{Name: name, Status: StepSucceeded, StartedAt: now, EndedAt: now, Detail: detail})
}

// --- signals, pacing -----------------------------------------------------

// actedOn reports whether t's record already carries what s asks: a
// cancel, a failure for that reason; a complete, a move to completing
// (the state, or a join attempted).
func actedOn(t *Transfer, s Signal) bool {
	switch s {
	case SignalCancel:
		return t.Failure != nil && t.Failure.Reason == ReasonCancelled
	case SignalComplete:
		return t.State == StateCompleting || t.State == StateCompleted || t.lastStep(StepTransfer) != nil
	}
	return false
}

// lateSignal clears a signal the transfer can no longer act on, and says
// so in its steps, since the client was told the signal was accepted. It
// came in as the transfer moved past the state it applies to: through
// another replica, whose check read the stored record just before this
// one saved its decision (this replica's own are ordered by entry.gate),
// or in a window a process restart opened.
func (e *Engine) lateSignal(ctx context.Context, en *entry, when string) {
	s := e.takeSignal(ctx, en)
	if s == SignalNone || s == en.unsettled {
		return // none, or the one acted on, not cleared yet
	}
	if actedOn(en.t, s) {
		// What it asks is under way, or was done: it was acted on and
		// left pending (its clearing failed, or the process died before
		// it), or the agent hung up during the consult and the transfer
		// is joining on its own.
		en.unsettled = s
		return
	}
	e.note(en, StepReconcile, fmt.Sprintf("the client's %s came %s: not acted on", s, when))
	en.log.Warn().Str("signal", string(s)).Str("state", string(en.t.State)).Msg("a client signal came too late to act on")
	en.unsaved = true
	en.unsettled = s // cleared once the note is saved (process)
}

// interrupted checks for a cancel signal or shutdown before a step that
// changes a call, and starts recovery if there is one.
func (e *Engine) interrupted(ctx context.Context, en *entry) bool {
	if s := e.takeSignal(ctx, en); s == SignalCancel {
		e.fail(ctx, en, ReasonCancelled, "cancelled by the client", nil)
		e.settleSignal(ctx, en, s)
		return true
	}
	if e.isStopping() {
		if !e.handOver(ctx, en) {
			e.fail(ctx, en, ReasonShutdown, "transferd shut down before the transfer finished", nil)
		}
		return true
	}
	return false
}

// takeSignal reads a client's signal from the store, where any replica
// may have put it. It stays pending there until settleSignal: a process
// that dies before saving what the signal caused leaves it to the process
// that resumes the transfer, which acts on it again. (Taken out before the
// save, a cancel the client was told of was lost: the resumed transfer
// went on to complete.)
func (e *Engine) takeSignal(ctx context.Context, en *entry) Signal {
	if !en.signal.Swap(false) {
		return SignalNone
	}
	s, err := e.store.PeekSignal(context.WithoutCancel(ctx), en.id)
	if err != nil {
		en.signal.Store(true)
		en.log.Warn().Err(err).Msg("reading client signals failed")
		return SignalNone
	}
	return s
}

// settleSignal clears a signal the transfer acted on once what it caused
// is saved. Until then it stays pending: for another replica that owns the
// transfer now, or for a process resuming it; this one clears it after
// its next successful save (entry.unsettled), since its working record
// already carries the signal's effect.
func (e *Engine) settleSignal(ctx context.Context, en *entry, s Signal) {
	if en.lost {
		en.unsettled = SignalNone
		return
	}
	if en.saveFailing {
		en.unsettled = s
		return
	}
	en.unsettled = SignalNone
	e.clearSignal(ctx, en, s)
}

// clearSignal takes s out of the store. A signal that came in meanwhile
// (TakeSignal returns it instead) is put back for the next look.
func (e *Engine) clearSignal(ctx context.Context, en *entry, s Signal) {
	ctx = context.WithoutCancel(ctx)
	taken, err := e.store.TakeSignal(ctx, en.id)
	if err != nil {
		// Left pending: harmless, as the transfer's state has moved past
		// what the signal asks (or the signal is retried after a restart).
		en.log.Warn().Err(err).Msg("could not clear a client signal acted on")
		return
	}
	if taken != SignalNone && taken != s {
		if err := e.store.PutSignal(ctx, en.id, taken, 0); err != nil {
			en.log.Warn().Err(err).Str("signal", string(taken)).Msg("could not put back a client signal that came in meanwhile")
		}
		en.signal.Store(true)
	}
}

// patient reports whether a transiently failing step may be tried again.
func (e *Engine) patient(en *entry) bool { return e.within(en, e.cfg.StepTimeout) }

// within reports whether a failed step is within d of its first try.
func (e *Engine) within(en *entry, d time.Duration) bool {
	now := e.now()
	if en.firstTry.IsZero() {
		en.firstTry = now
	}
	return now.Sub(en.firstTry) < d
}

// backoff schedules the next try of a failed step.
func (e *Engine) backoff(en *entry) time.Duration {
	d := e.retryWait(en)
	en.retryAt = e.now().Add(d)
	return d
}

func (e *Engine) retryWait(en *entry) time.Duration {
	d := e.cfg.PollInterval
	for i := 0; i < en.retries && d < e.cfg.PollMaxInterval; i++ {
		d *= 2
	}
	en.retries++
	return min(d, e.cfg.PollMaxInterval)
}

// transient reports whether an error leaves the effect unknown or may go
// away by itself.
func transient(err error) bool {
	k := KindOf(err)
	return k == KindProviderUnavailable || k == KindTimeout
}

func lastSent(t *Transfer) time.Time {
	s := t.Sent
	return later(later(s.Hold, s.Dial), later(later(s.Join, s.Hangup), s.Unhold))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
