package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"sort"

	"github.com/rs/zerolog"
	"github.com/rs/zerolog/hlog"

	"github.com/transferd/transferd/internal/orchestrator"
)

// ProblemBase prefixes every problem type URI; the fragment names the
// problem, and docs/problems.md describes each one.
const ProblemBase = "https://github.com/transferd/transferd/blob/main/docs/problems.md#"

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Errors lists every bad field of a request.
	Errors []FieldError `json:"errors,omitempty"`
	// TransferID names the transfer a conflict is about.
	TransferID string `json:"transfer_id,omitempty"`
	// State is the transfer's state when an action conflicts with it.
	State string `json:"state,omitempty"`
}

// FieldError names one bad field (a JSON path or query parameter).
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// problem kinds: slug, title, status.
var (
	probMalformed     = Problem{Type: ProblemBase + "malformed-request", Title: "The request body is not valid JSON of the expected shape", Status: http.StatusBadRequest}
	probValidation    = Problem{Type: ProblemBase + "validation-error", Title: "The request has invalid fields", Status: http.StatusBadRequest}
	probUnsupported   = Problem{Type: ProblemBase + "unsupported-option", Title: "The provider cannot honour an option of the request", Status: http.StatusUnprocessableEntity}
	probTooLarge      = Problem{Type: ProblemBase + "body-too-large", Title: "The request body is too large", Status: http.StatusRequestEntityTooLarge}
	probBodyTimeout   = Problem{Type: ProblemBase + "request-timeout", Title: "The request body did not arrive in time", Status: http.StatusRequestTimeout}
	probMediaType     = Problem{Type: ProblemBase + "unsupported-media-type", Title: "The request body must be application/json", Status: http.StatusUnsupportedMediaType}
	probNotFound      = Problem{Type: ProblemBase + "not-found", Title: "No such resource", Status: http.StatusNotFound}
	probMethod        = Problem{Type: ProblemBase + "method-not-allowed", Title: "Method not allowed", Status: http.StatusMethodNotAllowed}
	probConflict      = Problem{Type: ProblemBase + "state-conflict", Title: "The transfer's state does not allow this action", Status: http.StatusConflict}
	probActive        = Problem{Type: ProblemBase + "active-transfer", Title: "The call already has an active transfer", Status: http.StatusConflict}
	probUnavailable   = Problem{Type: ProblemBase + "unavailable", Title: "transferd cannot take the request now", Status: http.StatusServiceUnavailable}
	probProvider      = Problem{Type: ProblemBase + "provider-error", Title: "The provider refused the request", Status: http.StatusBadGateway}
	probKeyReused     = Problem{Type: ProblemBase + "idempotency-key-reused", Title: "The Idempotency-Key was used with a different request", Status: http.StatusUnprocessableEntity}
	probKeyInProgress = Problem{Type: ProblemBase + "idempotency-in-progress", Title: "A request with this Idempotency-Key is still being served", Status: http.StatusConflict}
	probUnauthorized  = Problem{Type: ProblemBase + "unauthorized", Title: "A valid API key is required", Status: http.StatusUnauthorized}
	probForbidden     = Problem{Type: ProblemBase + "forbidden", Title: "The API key may not do this", Status: http.StatusForbidden}
	probRateLimited   = Problem{Type: ProblemBase + "rate-limited", Title: "Too many requests for this tenant", Status: http.StatusTooManyRequests}
	probInternal      = Problem{Type: ProblemBase + "internal", Title: "Internal error", Status: http.StatusInternalServerError}
	probNoEndpoint    = Problem{Type: ProblemBase + "endpoint-not-configured", Title: "The webhook delivery's endpoint is no longer configured", Status: http.StatusConflict}
)

// writeProblem sends p as application/problem+json.
func writeProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	if p.Instance == "" {
		p.Instance = r.URL.Path
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// fieldProblem lists fields sorted by name, so responses are stable.
func fieldProblem(base Problem, fields map[string]string) Problem {
	p := base
	names := make([]string, 0, len(fields))
	for f := range fields {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		p.Errors = append(p.Errors, FieldError{Field: f, Detail: fields[f]})
	}
	if len(names) == 1 {
		p.Detail = names[0] + " " + fields[names[0]]
	} else {
		p.Detail = "see errors for each invalid field"
	}
	return p
}

// writeError maps an error onto a problem: the one place where error
// kinds become HTTP statuses. Details of 5xx problems are generic; the
// cause is logged here, once.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var p Problem
	switch k := orchestrator.KindOf(err); k {
	case orchestrator.KindInvalid:
		p = fieldProblem(probValidation, orchestrator.FieldsOf(err))
	case orchestrator.KindUnsupported:
		p = fieldProblem(probUnsupported, orchestrator.FieldsOf(err))
	case orchestrator.KindNotFound:
		p = probNotFound
		p.Detail = "no transfer with this id"
	case orchestrator.KindConflict:
		var active *orchestrator.ActiveTransferError
		if errors.As(err, &active) {
			p = probActive
			p.TransferID = active.ID
			p.Detail = "transfer " + active.ID + " is still moving this call; wait for it to end or cancel it"
			if active.CleaningUp {
				p.Detail = "transfer " + active.ID + " has ended, but its outcome is not verified yet and it may still take the caller off hold; " +
					"wait until its outcome is verified (transfer.outcome_verified)"
			}
		} else {
			p = probConflict
			p.Detail = conflictDetail(err)
		}
	case orchestrator.KindUnavailable:
		p = probUnavailable
		p.Detail = unavailableDetail(r, err)
	case orchestrator.KindProviderAuth, orchestrator.KindProviderRejected, orchestrator.KindProviderUnavailable:
		hlog.FromRequest(r).Error().Err(err).Msg("provider error")
		p = probProvider
		p.Detail = "the telephony provider could not serve the request; see the service logs"
	default:
		hlog.FromRequest(r).Error().Err(err).Msg("internal error")
		p = probInternal
		p.Detail = "an internal error occurred; see the service logs"
	}
	writeProblem(w, r, p)
}

// writeReadError is writeError for a read of the store (a transfer, a
// list, events, webhook deliveries): a read that failed for no kind is
// taken as the store's (a database restarting or failing over ends every
// connection at once; SQLite's file unreadable), a 503 inviting a retry,
// logged here once. As a 500 "internal error" it told a client and a load
// balancer "a bug", not "retry shortly". A record read but not decoded
// (orchestrator.ErrUndecodable) stays a 500: retrying does not mend it.
// A request whose client left is not answered as the store's fault.
func writeReadError(w http.ResponseWriter, r *http.Request, err error) {
	if orchestrator.KindOf(err) != orchestrator.KindInternal || errors.Is(err, orchestrator.ErrUndecodable) || r.Context().Err() != nil {
		writeError(w, r, err)
		return
	}
	hlog.FromRequest(r).Error().Err(err).Msg("the store could not be read")
	p := probUnavailable
	p.Detail = "the store could not be read; retry"
	w.Header().Set("Retry-After", "1")
	writeProblem(w, r, p)
}

// unavailableDetail words a 503 by its cause, and logs the causes that are
// the store's.
func unavailableDetail(r *http.Request, err error) string {
	log := func() *zerolog.Event { return hlog.FromRequest(r).Error().Err(err) }
	switch {
	case errors.Is(err, orchestrator.ErrNotSaved):
		log().Msg("the store failed to save a new transfer")
		return "the store failed to save the transfer, and nothing was saved: retry, with the same Idempotency-Key if any"
	case errors.Is(err, orchestrator.ErrSaveUnknown):
		log().Msg("the store's answer to a create was lost; the transfer is looked for")
		return "the store's answer to the save was lost, so whether the transfer was saved is not known yet; if it was, transferd drives it. " +
			"Retry with the same Idempotency-Key: it answers with the transfer if it was saved, and creates it if not " +
			"(without a key, a retry is refused with active-transfer naming the transfer, if it was saved)"
	case errors.Is(err, orchestrator.ErrSignalUnknown):
		log().Msg("the store's answer to an action was lost")
		return "the store's answer was lost, so whether the action was recorded is not known yet. " +
			"Retry it, with the same Idempotency-Key if any: it is accepted if the action is pending or was not recorded, " +
			"and refused with state-conflict once the transfer has moved on (read the transfer then)"
	case errors.Is(err, orchestrator.ErrSignalNotRecorded):
		log().Msg("the store could not be read to check an action")
		return "the store could not be read, so the action was not recorded: retry it, with the same Idempotency-Key if any"
	case errors.Is(err, orchestrator.ErrReservationLost):
		log().Dur("reservation_timeout_ms", orchestrator.ReservationTimeout).Msg("the create outlived its Idempotency-Key reservation")
		return "this create's Idempotency-Key reservation was settled before its transfer could be saved (the request took longer than " +
			orchestrator.ReservationTimeout.String() + ", or this replica's heartbeat lapsed), so nothing was saved: retry with the same Idempotency-Key"
	}
	return "transferd is shutting down; retry on another instance"
}

// conflictDetail returns the innermost message of a conflict, which the
// engine words for people ("the target has not answered yet").
func conflictDetail(err error) string {
	var e *orchestrator.Error
	if errors.As(err, &e) && e.Err != nil {
		return e.Err.Error()
	}
	return err.Error()
}
