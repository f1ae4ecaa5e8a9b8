package orchestrator

import "context"

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
	ConsultAbsent   ConsultState = iota // not (yet) visible
	ConsultRinging                      // dialled, not answered
	ConsultAnswered                     // the target answered
	ConsultEnded                        // the consult leg is gone
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

// Observation is one reading of the provider's view of a transfer.
type Observation struct {
	Caller  CallerState
	Consult ConsultState
	// EndReason says why the consult ended, when the provider tells
	// (busy, rejected, no_answer, target_hung_up); empty when unknown.
	EndReason Reason
	Detail    string
	// ConsultLeg carries consult ids learned by observing (NetSapiens
	// shows the consult's call-session-id only once the call exists); the
	// engine saves the non-empty ones.
	ConsultLeg LegRef
}

// Provider is what the machine needs from a telephony provider. Every
// method is called with the transfer's current record; adapters read the
// ids they need from t.Legs and t.Request and never mutate t.
//
// Methods that change a call must be safe to call again after a crash or
// a lost response: adapters read the provider's state before repeating a
// non-idempotent command.
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
	Hold(ctx context.Context, t *Transfer) error
	Unhold(ctx context.Context, t *Transfer) error
	// Dial starts the consult leg (attended) or hands the caller to the
	// target (announced) and returns the leg's ids.
	Dial(ctx context.Context, t *Transfer) (LegRef, error)
	Observe(ctx context.Context, t *Transfer) (Observation, error)
	// Complete joins caller and target (only when Flow.Join).
	Complete(ctx context.Context, t *Transfer) error
	// HangupConsult ends the consult leg whatever its state; ending a leg
	// that is already gone is success.
	HangupConsult(ctx context.Context, t *Transfer) error
}
