package orchestrator

import (
	"errors"
	"fmt"
)

// Kind classifies an error so that each boundary (HTTP problem, outcome
// reason, metric label) can map it in one place. Kinds are append-only: a
// value, once published in an outcome or a log, keeps its meaning.
type Kind uint8

const (
	KindInternal            Kind = iota // a bug or an unexpected condition
	KindInvalid                         // the request is malformed or violates a rule
	KindUnsupported                     // the chosen provider cannot honour an option
	KindNotFound                        // no such transfer
	KindConflict                        // the transfer's state does not allow the action
	KindUnavailable                     // transferd itself cannot take the work now (shutting down)
	KindCallNotFound                    // the provider has no such call
	KindCallNotActive                   // the call exists but is not in a state that can be transferred
	KindProviderRejected                // the provider refused the command (4xx other than auth)
	KindProviderUnavailable             // network error, 5xx, or rate limited past our patience
	KindProviderAuth                    // the provider refused our credentials: our misconfiguration
	KindTimeout                         // a deadline passed
)

var kindNames = [...]string{
	KindInternal:            "internal",
	KindInvalid:             "invalid",
	KindUnsupported:         "unsupported",
	KindNotFound:            "not_found",
	KindConflict:            "conflict",
	KindUnavailable:         "unavailable",
	KindCallNotFound:        "call_not_found",
	KindCallNotActive:       "call_not_active",
	KindProviderRejected:    "provider_rejected",
	KindProviderUnavailable: "provider_unavailable",
	KindProviderAuth:        "provider_auth",
	KindTimeout:             "timeout",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// ErrSeveralCalls marks a Locate's KindCallNotFound that found more than
// one call and cannot tell which to move: an answer, not a call the
// provider may not list yet, so it is not read again (see afterStep).
var ErrSeveralCalls = errors.New("several calls match")

// Evidence is what a provider said when it refused or failed a command,
// kept verbatim (minus secrets) so that operators can see the raw cause.
type Evidence struct {
	Status  int    `json:"status,omitempty"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// Error is the one error type that carries a Kind across package
// boundaries. Op names the operation, e.g. "netsapiens.Hold".
type Error struct {
	Op       string
	Kind     Kind
	Err      error
	Evidence *Evidence
	// Fields names bad request fields and what is wrong with each
	// (KindInvalid, KindUnsupported).
	Fields map[string]string
}

func (e *Error) Error() string {
	msg := e.Kind.String()
	if e.Err != nil {
		msg = e.Err.Error()
	}
	if e.Op == "" {
		return msg
	}
	return e.Op + ": " + msg
}

func (e *Error) Unwrap() error { return e.Err }

// E builds an *Error. It exists so call sites read as one line.
func E(op string, kind Kind, err error) *Error {
	return &Error{Op: op, Kind: kind, Err: err}
}

// KindOf returns the Kind of the first *Error in err's chain, or
// KindInternal when there is none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// EvidenceOf returns the provider evidence in err's chain, if any.
func EvidenceOf(err error) *Evidence {
	var e *Error
	for err != nil {
		if !errors.As(err, &e) {
			return nil
		}
		if e.Evidence != nil {
			return e.Evidence
		}
		err = e.Err
	}
	return nil
}

// FieldsOf returns the field problems in err's chain, if any.
func FieldsOf(err error) map[string]string {
	var e *Error
	if errors.As(err, &e) {
		return e.Fields
	}
	return nil
}

// ErrNotSent matches (errors.Is) an action's error that the adapter
// raised before the action's request went out: nothing that can have had
// the action's effect reached the provider. See NotSent.
var ErrNotSent = errors.New("the request was not sent")

// NotSent marks err as raised before the action's request went out (a
// read the action needs first failed, say). The engine then knows the
// action did not happen: a join so marked is owed again, not possibly
// applied. err keeps its kind and evidence.
func NotSent(err error) error {
	if err == nil {
		return nil
	}
	return notSentError{err}
}

type notSentError struct{ err error }

func (e notSentError) Error() string        { return e.err.Error() }
func (e notSentError) Unwrap() error        { return e.err }
func (e notSentError) Is(target error) bool { return target == ErrNotSent }
