package orchestrator

import (
	"errors"
	"maps"
	"slices"
	"time"
)

// State is a step of the published state machine (DESIGN.md §2).
type State string

const (
	StatePending    State = "pending"
	StateHolding    State = "holding"
	StateDialing    State = "dialing"
	StateConsulting State = "consulting"
	StateCompleting State = "completing"
	StateCompleted  State = "completed"
	StateRecovering State = "recovering"
	StateFailed     State = "failed"
	StateCancelled  State = "cancelled"
)

// States lists every state in machine order.
var States = []State{StatePending, StateHolding, StateDialing, StateConsulting,
	StateCompleting, StateCompleted, StateRecovering, StateFailed, StateCancelled}

// Terminal reports whether no further transition can happen.
func (s State) Terminal() bool {
	return s == StateCompleted || s == StateFailed || s == StateCancelled
}

// Valid reports whether s is one of the published states.
func (s State) Valid() bool { return slices.Contains(States, s) }

// Reason says why a transfer ended the way it did.
type Reason string

const (
	ReasonTransferred         Reason = "transferred"
	ReasonNoAnswer            Reason = "no_answer"
	ReasonBusy                Reason = "busy"
	ReasonRejected            Reason = "rejected"
	ReasonTargetHungUp        Reason = "target_hung_up"
	ReasonCallerHungUp        Reason = "caller_hung_up"
	ReasonCallNotFound        Reason = "call_not_found"
	ReasonCallNotActive       Reason = "call_not_active"
	ReasonProviderError       Reason = "provider_error"
	ReasonProviderUnavailable Reason = "provider_unavailable"
	ReasonTimeout             Reason = "timeout"
	ReasonCancelled           Reason = "cancelled"
	ReasonShutdown            Reason = "shutdown"
	ReasonInternal            Reason = "internal"
	// ReasonConsultFailed: the consult leg ended, or never appeared within
	// the visibility window, and the provider did not say why.
	ReasonConsultFailed Reason = "consult_failed"
)

// Reasons lists every reason, for documentation and metric pre-registration.
var Reasons = []Reason{ReasonTransferred, ReasonNoAnswer, ReasonBusy, ReasonRejected,
	ReasonTargetHungUp, ReasonCallerHungUp, ReasonCallNotFound, ReasonCallNotActive,
	ReasonProviderError, ReasonProviderUnavailable, ReasonTimeout, ReasonCancelled,
	ReasonShutdown, ReasonInternal, ReasonConsultFailed}

// reasonFor maps an error kind onto the outcome vocabulary.
func reasonFor(k Kind) Reason {
	switch k {
	case KindCallNotFound:
		return ReasonCallNotFound
	case KindCallNotActive:
		return ReasonCallNotActive
	case KindProviderRejected, KindProviderAuth:
		return ReasonProviderError
	case KindProviderUnavailable:
		return ReasonProviderUnavailable
	case KindTimeout:
		return ReasonTimeout
	default:
		return ReasonInternal
	}
}

// Completion says who decides that the caller joins the target.
type Completion string

const (
	// CompletionAuto completes as soon as the target answers.
	CompletionAuto Completion = "auto"
	// CompletionManual waits in consulting for /complete or /cancel.
	CompletionManual Completion = "manual"
)

// Mode selects the provider choreography.
type Mode string

const (
	// ModeAttended holds the caller, consults the target, then joins them.
	ModeAttended Mode = "attended"
	// ModeAnnounced hands the caller to the target with the provider's own
	// transfer primitive; the target may hear a whisper first.
	ModeAnnounced Mode = "announced"
)

// CallRef names the call to move, in the provider's terms.
type CallRef struct {
	Domain string `json:"domain,omitempty"`
	User   string `json:"user,omitempty"`
	CallID string `json:"call_id,omitempty"`
	// AgentCallID is the agent's own leg where a provider models it as a
	// separate call (Bandwidth attended transfers).
	AgentCallID string `json:"agent_call_id,omitempty"`
}

// Whisper is audio played to the target before it is connected.
type Whisper struct {
	Sentence string `json:"sentence,omitempty"`
	FileURL  string `json:"file_url,omitempty"`
	Gender   string `json:"gender,omitempty"`
	Locale   string `json:"locale,omitempty"`
	Voice    string `json:"voice,omitempty"`
}

// Diversion controls SIP Diversion headers on the new leg.
type Diversion struct {
	Treatment string `json:"treatment,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// Recording asks the provider to record the transferred call.
type Recording struct {
	Enabled    *bool  `json:"enabled,omitempty"`
	FileFormat string `json:"file_format,omitempty"`
}

// Request is what a client asked for, after defaults are applied.
type Request struct {
	Provider       string        `json:"provider"`
	Mode           Mode          `json:"mode"`
	Call           CallRef       `json:"call"`
	Target         string        `json:"target"`
	Completion     Completion    `json:"completion"`
	ConsultTimeout time.Duration `json:"consult_timeout"`
	// ExternalID and Metadata are the client's own context (a CRM call or
	// ticket id, small labels); transferd only stores and returns them.
	ExternalID string            `json:"external_id,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	CallerID   string            `json:"caller_id,omitempty"`
	Whisper    *Whisper          `json:"whisper,omitempty"`
	Diversion  *Diversion        `json:"diversion,omitempty"`
	Recording  *Recording        `json:"recording,omitempty"`
}

// LegRef holds a provider's identifiers for one leg of the transfer.
type LegRef struct {
	CallID    string `json:"call_id,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	Server    string `json:"server,omitempty"`
	BridgeID  string `json:"bridge_id,omitempty"`
}

// IsZero reports whether no identifier is known.
func (l LegRef) IsZero() bool { return l == LegRef{} }

// Legs are the provider ids of every leg the transfer touches.
type Legs struct {
	// Caller is the call being moved (NetSapiens: the session and its
	// call-orig-call-id; Bandwidth: the A leg).
	Caller LegRef `json:"caller"`
	// Agent is the transferring party's leg (NetSapiens: call-term-call-id).
	Agent LegRef `json:"agent"`
	// Consult is the leg to the target.
	Consult LegRef `json:"consult"`
}

// StepStatus is where a step is in its write-ahead life.
type StepStatus string

const (
	// StepStarted is saved before the side effect: an intent.
	StepStarted   StepStatus = "started"
	StepSucceeded StepStatus = "succeeded"
	StepFailed    StepStatus = "failed"
)

// Step names.
const (
	StepLocate    = "locate"
	StepHold      = "hold"
	StepDial      = "dial"
	StepAnswered  = "answered"
	StepTransfer  = "transfer"
	StepVerify    = "verify"
	StepHangup    = "hangup_consult"
	StepUnhold    = "unhold"
	StepReconcile = "reconcile"
	// StepHangupAgent ends the agent's call after the join was seen
	// applied (Flow.HangupAgent).
	StepHangupAgent = "hangup_agent"
)

// Step records one provider interaction.
type Step struct {
	Name      string     `json:"name"`
	Status    StepStatus `json:"status"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   time.Time  `json:"ended_at,omitzero"`
	Detail    string     `json:"detail,omitempty"`
	Evidence  *Evidence  `json:"evidence,omitempty"`
	// ErrKind is the kind of a failed step's error (Kind.String).
	ErrKind string `json:"error_kind,omitempty"`
}

// Signal is a client's request to a running transfer.
type Signal string

const (
	SignalNone     Signal = ""
	SignalComplete Signal = "complete"
	SignalCancel   Signal = "cancel"
)

// Outcome is the verdict on a terminal transfer.
type Outcome struct {
	Reason Reason `json:"reason"`
	// CallerRestored is true when the caller is connected as before the
	// transfer started: never held, or taken off hold. It is false when
	// the caller was transferred, hung up, or could not be taken off hold.
	CallerRestored bool `json:"caller_restored"`
	// Verified is true once the provider was seen in the state the outcome
	// describes. A transfer whose provider stayed unreadable ends with
	// Verified false and a Cleanup obligation; the sweeper sets it true
	// (correcting CallerRestored if it was wrong) once it sees the state.
	// It stays false, with no obligation, when the provider can no longer
	// show it: the caller's call ended after a join was sent and before
	// any reading showed whether the join took (see joinUnknown).
	Verified bool      `json:"verified"`
	Detail   string    `json:"detail,omitempty"`
	Evidence *Evidence `json:"evidence,omitempty"`
}

// Sent records when transferd sent each side effect, so that the engine
// can tell an effect not applied yet from one that did not happen: a
// provider applies an accepted action later than it answers, and lists a
// new call only after a while. Zero means never sent.
type Sent struct {
	Hold time.Time `json:"hold,omitzero"`
	Dial time.Time `json:"dial,omitzero"`
	Join time.Time `json:"join,omitzero"`
	// JoinFirst is when the first form of the join was sent, once the
	// provider's second form was decided (JoinRetrier): the first was seen
	// not to take (Seen.NotJoined), and Join is the second's.
	JoinFirst time.Time `json:"join_first,omitzero"`
	// JoinFirstMaybeUnsent: the first form was decided by a process that
	// stopped before its answer was saved, so it may never have reached
	// the provider. The second form was sent in its place, and once that
	// is seen not to take the first is sent once more (joinOtherForm).
	JoinFirstMaybeUnsent bool      `json:"join_first_maybe_unsent,omitempty"`
	Hangup               time.Time `json:"hangup,omitzero"`
	Unhold               time.Time `json:"unhold,omitzero"`
	// HoldSends counts the hold requests the adapter sent (CountSend),
	// retries included, over every hold step.
	HoldSends int `json:"hold_sends,omitempty"`
}

// Seen records what the provider has shown at least once, in a reading
// taken after the matching side effect was sent.
type Seen struct {
	// Held: the caller was seen held after the hold was sent.
	Held bool `json:"held,omitempty"`
	// Consult: the consult leg was seen (ringing, answered or ended).
	Consult bool `json:"consult,omitempty"`
	// ConsultEnded: a reading showed the consult leg ended. An ended leg
	// never comes back, so a platform that does not show it later (a
	// "not found" for it, a failed leg the platform never indexed, whose
	// end only a callback told) shows it ended still: an adapter may say
	// so, where it would otherwise have to take the leg's absence for
	// unknown, and a restarted process, whose callbacks are gone, could
	// then never verify the outcome.
	ConsultEnded bool `json:"consult_ended,omitempty"`
	// NotJoined: a reading taken once the join could have applied (a
	// visibility window after it was sent) showed the caller held or back
	// with the agent and the target still on the consult leg: the join did
	// not connect the caller to the target.
	// Until then a join that was sent is unknown, and a caller's call that
	// ends meanwhile leaves it unknown for good (see joinUnknown).
	NotJoined bool `json:"not_joined,omitempty"`
}

// Cleanup is a durable obligation a terminal transfer still carries: the
// provider has not yet been seen in the state the outcome promises (the
// caller not held, no leg of ours alive), or a consult leg that never
// appeared may still appear late (a tombstone). Any replica's sweeper
// reconciles it until the provider shows the invariant holds and Until
// has passed, then clears it and marks the outcome verified.
type Cleanup struct {
	// Until is the earliest time the obligation may be discharged: the end
	// of the window in which a late consult leg may still appear.
	Until  time.Time `json:"until"`
	Reason string    `json:"reason"`
}

// Transfer is the persisted record of one transfer.
type Transfer struct {
	ID      string `json:"id"`
	Version int64  `json:"version"`
	// Tenant owns the transfer; "" in records older than tenants means
	// DefaultTenant.
	Tenant  string `json:",omitempty"`
	Request Request
	State   State
	// StateAt is when the transfer entered State, saved with it so that a
	// replica that resumes the transfer measures the time spent in the
	// state from its start, not from the resumption
	// (transferd_transfer_state_duration_seconds). Zero in records saved
	// before it existed, and in a transfer still pending (CreatedAt).
	StateAt time.Time `json:",omitzero"`
	Legs    Legs
	Steps   []Step
	// Sent and Seen are the engine's memory of what it did and what the
	// provider showed; see their types.
	Sent Sent
	Seen Seen
	// ProviderNotes is what the provider's adapter learnt of the transfer
	// outside its readings, in its own words (NoteKeeper): Bandwidth's
	// callbacks, which name a leg the platform may never list and say why
	// it ended. Kept in memory alone, it died with every process that
	// heard it, and a process resuming the transfer judged the leg as one
	// that never appeared. "" for providers that keep none.
	ProviderNotes string `json:",omitempty"`
	// Answered is set when the target answered the consult.
	Answered bool
	// Failure is why the transfer is recovering (set on entering recovering).
	Failure *Outcome
	Outcome *Outcome
	Signal  Signal
	// ConsultDeadline is when consulting gives up; persisted so that it
	// survives restarts.
	ConsultDeadline time.Time
	// Cleanup is set on a terminal transfer that still has an obligation;
	// see Open.
	Cleanup *Cleanup
	// Owner is the replica that drives the transfer while that replica's
	// heartbeat is live; another replica claims it once it expired.
	Owner string
	// IdempotencyScope and IdempotencyKey name the Idempotency-Key the
	// transfer was created with, if any: the store links the reservation
	// to the transfer in the same write, so that a reservation whose
	// request ended without recording its response (its process died, or
	// the recording failed) replays the transfer once settled
	// (Store.SettleIdempotency).
	IdempotencyScope string `json:",omitempty"`
	IdempotencyKey   string `json:",omitempty"`
	// IdempotencyReservedAt names the reservation the create holds (see
	// Store.Create). Only the create uses it: it is not stored.
	IdempotencyReservedAt time.Time `json:"-"`
	// RequestID is the HTTP request that created the transfer.
	RequestID string `json:",omitempty"`
	// EventSeq is the sequence number of the transfer's latest event.
	EventSeq int64 `json:",omitempty"`
	// Outbox holds the events the next save records; the store writes them
	// in the same transaction and the engine empties it once saved.
	Outbox []Event `json:"-"`
	// LookForSignal asks the next Update to read the transfer's pending
	// signal after its write, in the write's transaction, and answer in
	// SignalLooked and PendingSignal: the join's last look for a cancel
	// (Engine.step), made without a read of its own. None of the three
	// is stored.
	LookForSignal bool   `json:"-"`
	SignalLooked  bool   `json:"-"`
	PendingSignal Signal `json:"-"`
	// Token asks the next save (Store.Create, Store.Update) to be made
	// only while Owner's heartbeat was last written with this token, the
	// saving process's (Store.Heartbeat); "" asks nothing. Not stored.
	Token string `json:"-"`
	// Unowned is set by Store.Claim on a record it took with no owner: a
	// graceful hand-over's (Engine.handOver), whose save recorded all the
	// replica before sent. A record it took from a replica (a crash, or
	// one that claimed it and died unrecorded) is not. Not stored.
	Unowned   bool `json:"-"`
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Open reports whether the transfer still needs reconciling: it is not
// terminal, or it is terminal with a cleanup obligation. Stores keep open
// transfers claimable and never purge them.
func (t *Transfer) Open() bool { return !t.State.Terminal() || t.Cleanup != nil }

// Clone returns a deep copy, so that stores and readers never share the
// runner's mutable slices.
func (t *Transfer) Clone() *Transfer {
	c := *t
	c.Steps = slices.Clone(t.Steps)
	for i := range c.Steps {
		if c.Steps[i].Evidence != nil {
			ev := *c.Steps[i].Evidence
			c.Steps[i].Evidence = &ev
		}
	}
	if t.Cleanup != nil {
		cl := *t.Cleanup
		c.Cleanup = &cl
	}
	c.Failure = cloneOutcome(t.Failure)
	c.Outcome = cloneOutcome(t.Outcome)
	c.Request = t.Request.clone()
	c.Outbox = slices.Clone(t.Outbox)
	return &c
}

func cloneOutcome(o *Outcome) *Outcome {
	if o == nil {
		return nil
	}
	c := *o
	if o.Evidence != nil {
		ev := *o.Evidence
		c.Evidence = &ev
	}
	return &c
}

func (r Request) clone() Request {
	r.Metadata = maps.Clone(r.Metadata)
	if r.Whisper != nil {
		w := *r.Whisper
		r.Whisper = &w
	}
	if r.Diversion != nil {
		d := *r.Diversion
		r.Diversion = &d
	}
	if r.Recording != nil {
		rec := *r.Recording
		if rec.Enabled != nil {
			v := *rec.Enabled
			rec.Enabled = &v
		}
		r.Recording = &rec
	}
	return r
}

// Err rebuilds the error a failed step recorded, so that a later
// decision can report it with its kind and evidence.
func (s *Step) Err() error {
	k := KindProviderUnavailable
	for i, n := range kindNames {
		if n == s.ErrKind {
			k = Kind(i)
		}
	}
	return &Error{Op: s.Name, Kind: k, Err: errors.New(s.Detail), Evidence: s.Evidence}
}

// lastFailed reports whether the most recent step with the given name
// failed.
func (t *Transfer) lastFailed(name string) bool {
	s := t.lastStep(name)
	return s != nil && s.Status == StepFailed
}

// StepEnd is when the last request of step name had certainly gone out:
// when the step ended, answered or not; for a step that never ended (the
// process that made it stopped in it), unfinished after it began, the
// bound a step's request is given (Config.StepTimeout). Zero when no such
// step was made. An action's Sent time is when it was decided, before its
// intent was saved and its request sent: a provider's window counted from
// there is short by however long the request took to be answered. The
// engine judges every action from here; an adapter that counts a
// visibility window from an action does too, so that the two agree.
func (t *Transfer) StepEnd(name string, unfinished time.Duration) time.Time {
	s := t.lastStep(name)
	switch {
	case s == nil:
		return time.Time{}
	case s.EndedAt.IsZero():
		return s.StartedAt.Add(unfinished)
	}
	return s.EndedAt
}

// lastStep returns the most recent step with the given name.
func (t *Transfer) lastStep(name string) *Step {
	for i := len(t.Steps) - 1; i >= 0; i-- {
		if t.Steps[i].Name == name {
			return &t.Steps[i]
		}
	}
	return nil
}
