package orchestrator

import (
	"context"
	"sync/atomic"
)

// Capabilities declare what a provider can do, so that the API can refuse
// an option the provider cannot honour instead of silently dropping it.
type Capabilities struct {
	Attended  bool // hold, consult, join
	Announced bool // the provider's own transfer primitive, no consult phase
	CallerID  bool
	Whisper   bool
	Diversion bool
	Recording bool
	// Events means the provider can push state changes (callbacks), so
	// polling can back off further.
	Events bool
}

// ModeCapabilities is implemented by providers whose options depend on
// the mode: the engine then checks a request's options against the
// capabilities of its mode.
type ModeCapabilities interface {
	CapabilitiesFor(Mode) Capabilities
}

// Flow says which steps of the machine apply to a request on a provider.
type Flow struct {
	// Hold: the caller is held before the consult leg is dialled.
	Hold bool
	// Join: an explicit Complete joins caller and target. Without it the
	// provider joins them itself when the target answers (announced).
	Join bool
	// HangupAgent: the join leaves the agent's call up, and the provider
	// is an AgentHanger. The engine hangs it up once a reading shows the
	// caller with the target, not before: until then a recovery may have
	// to give the caller back to the agent.
	HangupAgent bool
}

// AgentHanger is a provider whose join leaves the agent's call up
// (Bandwidth's attended consult: the agent waits alone in the consult
// bridge). HangupAgent ends it; safe to repeat, and an agent's call that
// has ended already is not an error.
type AgentHanger interface {
	HangupAgent(ctx context.Context, t *Transfer) error
}

// NoteKeeper is a provider whose adapter learns of a transfer outside
// its readings (Bandwidth's callbacks, which may reach one process only):
// Notes returns what it knows of t for the record, in its own words,
// including what t.ProviderNotes carried (the adapter reads that back
// wherever it uses its notes), or "" when it knows nothing. The engine
// saves it as t.ProviderNotes whenever it differs, so that a process
// resuming the transfer knows what only the process that heard it knew.
// It is called at every reconcile and save: cheap, without I/O.
type NoteKeeper interface {
	Notes(t *Transfer) string
}

// JoinExplainer is a provider that can say why an accepted join may not
// have taken, for the operator: the engine appends JoinNotTaken's answer
// (when not empty) to the outcome of a join the provider accepted and
// never showed applied. NetSapiens names the core servers involved where
// the join may have named the one the PBX does not want.
type JoinExplainer interface {
	JoinNotTaken(t *Transfer) string
}

// JoinRetrier is a provider whose join has a second form, to send once
// the first was accepted and a reading showed it did not take
// (Seen.NotJoined, a visibility window after it). JoinAgain reports
// whether there is one for t; Complete sends the second form when
// t.Sent.JoinFirst is set. The engine sends it once (again only when it
// may never have reached the provider: the process that sent it stopped
// before saving its answer, or it failed on the way). A first form whose
// process stopped before saving its answer, seen not to take, is followed
// by the second rather than sent again, and, the second seen not to take,
// by the first once more (it may never have gone out:
// Transfer.Sent.JoinFirstMaybeUnsent), Complete then called with
// JoinFirst cleared; the second may then follow once more, so that
// without stops a join goes out in at most four forms. NetSapiens:
// the join names the other call's core server, where the two calls are
// on different cores and which one the PBX wants is undocumented; on one
// core, a join sent a moment after the dial (which an API node lagging
// behind may have accepted without knowing the consult) is sent again.
type JoinRetrier interface {
	JoinAgain(t *Transfer) bool
}

// CallerState is what the provider shows of the caller's call.
type CallerState uint8

const (
	CallerUnknown     CallerState = iota
	CallerConnected               // talking to the agent, not held
	CallerHeld                    // on hold
	CallerTransferred             // connected to the target
	CallerGone                    // hung up
)

func (c CallerState) String() string {
	switch c {
	case CallerConnected:
		return "connected"
	case CallerHeld:
		return "held"
	case CallerTransferred:
		return "transferred"
	case CallerGone:
		return "gone"
	default:
		return "unknown"
	}
}

// ConsultState is what the provider shows of the consult leg.
type ConsultState uint8

const (
	// ConsultAbsent: not visible now. It does not say gone: a provider
	// lists a new call only after a while, so the engine decides from
	// what it saw before and from the visibility window.
	ConsultAbsent   ConsultState = iota
	ConsultRinging               // dialled, not answered
	ConsultAnswered              // the target answered
	ConsultEnded                 // the provider positively shows the leg ended
)

func (c ConsultState) String() string {
	switch c {
	case ConsultRinging:
		return "ringing"
	case ConsultAnswered:
		return "answered"
	case ConsultEnded:
		return "ended"
	default:
		return "absent"
	}
}

// Observation is what one reading of the provider shows of a transfer.
type Observation struct {
	Caller  CallerState
	Consult ConsultState
	// ConsultLegs counts the live legs carrying the transfer's consult
	// call-id or tag (more than one only if the provider accepted a
	// duplicate); 0 with Consult ConsultAbsent or ConsultEnded.
	ConsultLegs int
	// EndReason says why the consult ended, when the provider tells
	// (busy, rejected, no_answer, target_hung_up); empty when unknown.
	EndReason Reason
	// ConsultWasAnswered: the consult leg, ended now, had been answered
	// (the provider keeps its answer time). In a flow without a join the
	// provider connected the caller to the target then: a caller's call
	// that has ended since may have ended after the transfer took (see
	// the engine's joinUnknown). Providers that cannot tell leave it false.
	ConsultWasAnswered bool
	// CallerWithAgent: the caller held or connected is so with the agent,
	// positively (NetSapiens: the caller's row carries the agent's leg).
	// Once a join could have applied, that shows it did not take, whatever
	// the consult shows. Providers whose "held" may be a caller left alone
	// (a Bandwidth bridge after the target left) leave it false.
	CallerWithAgent bool
	// CallerEnded: with CallerTransferred, the caller's call has ended
	// since the provider connected it to the target, as the provider
	// positively shows (Bandwidth announced: the target answered before
	// the caller's call ended, by the platform's clock). Providers that
	// cannot tell report the ended call as CallerGone.
	CallerEnded bool
	// Undecidable: the provider cannot show, now or ever, whether what the
	// transfer sent connected the caller to the target. Either the
	// caller's call is up (Caller CallerUnknown; Bandwidth announced,
	// polling: the dial's answer was lost, and the caller's call reads
	// active showing no transfer, as a platform may show a transfer
	// connected and one given back alike), or it has ended (Caller
	// CallerGone) and why is unknown too (Bandwidth announced: the
	// transfer's leg has never been readable, and the platform ends the
	// caller's call itself when the transfer fails): such an end is not
	// the caller hanging up. The engine then reports the outcome
	// unverified and final, caller_restored false, Detail saying why; it
	// never guesses.
	Undecidable bool
	Detail      string
	// ConsultLeg carries consult ids learned by observing (NetSapiens
	// shows the consult's call-session-id only once the call exists); the
	// engine saves the non-empty ones.
	ConsultLeg LegRef
	// AgentGone: the provider positively shows that the agent's own call
	// ended while the consult was answered, in a flow where the agent's
	// call is a leg apart from the caller's (Bandwidth attended). The
	// caller can no longer be given back to the agent, so the engine joins
	// caller and target rather than strand the caller on hold. Providers
	// that cannot tell leave it false.
	AgentGone bool
	// CallerAlone: in a flow without a hold, the caller's call is up and
	// connected to no one, given back by the provider out of the call it
	// shared with the agent, and the provider can put it back (Unhold):
	// the agent's call was still where the caller left it when read
	// (Bandwidth announced, on the side of the guess that gives a caller
	// back when the transfer fails). Caller is CallerUnknown with it. The
	// engine sends the unhold once the consult is clear, as it does for a
	// caller held; the provider refuses it when the agent has left.
	CallerAlone bool
}

// View is one reading of the provider made by Provider.Read; the engine
// derives each watched transfer's Observation from it without I/O.
type View interface {
	// Observe returns what the reading shows of t. An error means t's part
	// could not be read: unknown, never "gone".
	Observe(t *Transfer) (Observation, error)
}

// Provider is what the machine needs from a telephony provider. Every
// method is called with the transfer's current record; adapters read the
// ids they need from t.Legs and t.Request and never mutate t.
//
// Reading is separate from acting: the engine reads through shared
// watchers (Read, once for every transfer of a WatchKey) and decides from
// the readings; the actions never depend on a reading of their own where
// they can be sent blind (unhold by the saved id, hang up by our call-id
// or tag). The engine sends Dial and Complete at most once per transfer:
// they are not idempotent, and a lost answer is resolved by watching.
type Provider interface {
	Name() string
	Capabilities() Capabilities
	// Validate checks the provider-specific parts of a request and returns
	// a problem per bad field (JSON path, e.g. "call.domain"). It never
	// performs I/O.
	Validate(r *Request) map[string]string
	// Flow returns the steps that apply to r.
	Flow(r *Request) Flow
	// Locate finds the call to move. It changes nothing. Errors of kind
	// KindCallNotFound or KindCallNotActive end the transfer before any
	// change.
	Locate(ctx context.Context, t *Transfer) (Legs, error)
	// Hold holds the caller; safe to repeat.
	Hold(ctx context.Context, t *Transfer) error
	// Unhold takes the caller off hold by the saved ids, without reading
	// first; safe to repeat. KindCallNotFound means the caller's call is
	// gone. In a flow without a hold it is sent only to a caller read
	// alone (Observation.CallerAlone), and puts it back with the agent.
	Unhold(ctx context.Context, t *Transfer) error
	// Dial starts the consult leg (attended) or hands the caller to the
	// target (announced) and returns the leg's ids.
	Dial(ctx context.Context, t *Transfer) (LegRef, error)
	// Complete joins caller and target (only when Flow.Join). The engine
	// sends it once, a second time only to a JoinRetrier whose first form
	// a reading showed did not take (Transfer.Sent.JoinFirst set), and a
	// form again only where it may never have reached the provider and a
	// reading showed it did not take (a stopped process's, or one that
	// failed on the way; see JoinRetrier).
	Complete(ctx context.Context, t *Transfer) error
	// HangupConsult ends every leg of the transfer's consult that the
	// provider shows now, whatever its state, and undoes what Dial set up
	// around it; safe to repeat. A leg not visible is not an error: the
	// engine keeps watching for one that appears late.
	HangupConsult(ctx context.Context, t *Transfer) error
	// WatchKey names the shared reading that serves t: transfers with the
	// same key are read together (NetSapiens: one listing per domain).
	WatchKey(t *Transfer) string
	// Read reads the provider once for every transfer in ts, all with the
	// key given.
	Read(ctx context.Context, key string, ts []*Transfer) (View, error)
}

type sendsKey struct{}

// CountSend tells the engine that an adapter is about to send one request
// that may change something (not a read) for the step running under ctx:
// once per try, retries included. The
// engine counts the sends of a hold, because a hold sent more than once
// (a safe retry after a lost answer) may have a twin that the provider
// applies later than the first, and the engine must not join caller and
// target while one may still land. An adapter that does not count is
// treated as one that may have sent twice.
func CountSend(ctx context.Context) {
	if n, ok := ctx.Value(sendsKey{}).(*atomic.Int32); ok {
		n.Add(1)
	}
}

// withSendCounter returns ctx counting the sends of CountSend in n.
func withSendCounter(ctx context.Context, n *atomic.Int32) context.Context {
	return context.WithValue(ctx, sendsKey{}, n)
}
