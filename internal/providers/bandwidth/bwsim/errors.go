package bwsim

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// apiError is one Catapult error response (notes §4): the status, the body's category, code
// and message, and what a 429 or 405 adds.
type apiError struct {
	Status   int
	Category string
	Code     string
	Message  string
	// ResetMS, on a 429, is the X-RateLimit-Reset value (epoch milliseconds), also sent as the
	// rateLimitResetTime detail.
	ResetMS int64
	// Allow, on a 405, lists the allowed methods.
	Allow string
}

type errorDetail struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type errorBody struct {
	Category string        `json:"category"`
	Code     string        `json:"code"`
	Message  string        `json:"message"`
	Details  []errorDetail `json:"details"`
}

// writeError writes e with the documented details: requestPath (relative to /v1, without the
// leading slash), requestMethod and remoteAddress.
func (s *Sim) writeError(w http.ResponseWriter, r *http.Request, e *apiError) {
	var details []errorDetail
	if e.ResetMS != 0 {
		v := strconv.FormatInt(e.ResetMS, 10)
		w.Header().Set("X-RateLimit-Reset", v)
		details = append(details, errorDetail{"rateLimitResetTime", v})
	}
	if e.Allow != "" {
		w.Header().Set("Allow", e.Allow)
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="Bandwidth API (sim)"`)
	}
	remote := r.RemoteAddr
	if host, _, err := net.SplitHostPort(remote); err == nil {
		remote = host
	}
	details = append(details,
		errorDetail{"requestPath", strings.TrimPrefix(r.URL.Path, "/")},
		errorDetail{"requestMethod", r.Method},
		errorDetail{"remoteAddress", remote},
	)
	writeJSON(w, e.Status, errorBody{Category: e.Category, Code: e.Code, Message: e.Message, Details: details})
}

// The constructors below carry the docs' message templates (errors.md) verbatim, including
// their typos, because clients may match on them.

func errBadRequest(code, msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Category: "bad-request", Code: code, Message: msg}
}

func errValidation(msg string) *apiError { return errBadRequest("validation-error", msg) }

func errMissing(resource, prop string) *apiError {
	return errBadRequest("missing-property", fmt.Sprintf("The '%s' resource property '%s' is required but was not specified", resource, prop))
}

// errOneOf is errors.md's "The `${0}` resource property `${1}` must be one of the following
// values: `${2}`".
func errOneOf(resource, prop string, values []string) *apiError {
	return errValidation(fmt.Sprintf("The `%s` resource property `%s` must be one of the following values: `%s`", resource, prop, strings.Join(values, ", ")))
}

// errInvalidValue reports a value of the wrong type or shape; the wording is [GUESS] but
// names the property, as the documented templates do.
func errInvalidValue(resource, prop, want string) *apiError {
	return errValidation(fmt.Sprintf("The `%s` resource property `%s` has an invalid value: %s", resource, prop, want))
}

func errCallerID(id string) *apiError {
	return errValidation(fmt.Sprintf("The callerId `%s` is not allowed. It must be `private` or a phone number owned by user", id))
}

func errCallNotFound(id string) *apiError {
	return &apiError{Status: http.StatusNotFound, Category: "not-found", Code: "call-not-found",
		Message: fmt.Sprintf("The call `%s` could not be found", id)}
}

// errBridgeNotFound: the code is [DOC], the message mirrors call-not-found [GUESS].
func errBridgeNotFound(id string) *apiError {
	return &apiError{Status: http.StatusNotFound, Category: "not-found", Code: "bridge-not-found",
		Message: fmt.Sprintf("The bridge `%s` could not be found", id)}
}

func errResourceNotFound(path string) *apiError {
	return &apiError{Status: http.StatusNotFound, Category: "not-found", Code: "resource-not-found",
		Message: fmt.Sprintf("The resource `%s` could not be found", strings.TrimPrefix(path, "/"))}
}

// errMethodNotAllowed: the docs list 405 for v2 only; code and category are [GUESS].
func errMethodNotAllowed(allow string) *apiError {
	return &apiError{Status: http.StatusMethodNotAllowed, Category: "bad-request", Code: "method-not-allowed",
		Message: "The request method is not supported for this resource", Allow: allow}
}

func (s *Sim) errForbidden(code, msg string) *apiError {
	return &apiError{Status: http.StatusForbidden, Category: s.cfg.ForbiddenCategory, Code: code, Message: msg}
}

func (s *Sim) errInvalidState(id, state string) *apiError {
	return s.errForbidden("call-invalid-state", fmt.Sprintf("Unable to update call `%s`. Invalid call state `%s`", id, state))
}

func (s *Sim) errStateFinal(id, state string) *apiError {
	return s.errForbidden("call-invalid-state", fmt.Sprintf("Unable to update call `%s`. You can`t update the call`s state after being set to `%s`.", id, state))
}

// errUserAccess answers a {userId} other than Config.UserID. The docs list
// user-access-denied under 401, but a 401 would tell a client its token and secret are wrong
// when it is its user id; 403 with category "authorization" is the chosen [GUESS].
func errUserAccess(user string) *apiError {
	return &apiError{Status: http.StatusForbidden, Category: "authorization", Code: "user-access-denied",
		Message: fmt.Sprintf("Access to user `%s` is denied", user)}
}

// errUnauthorized: the 401 body is [GUESS].
func errUnauthorized() *apiError {
	return &apiError{Status: http.StatusUnauthorized, Category: "authentication", Code: "unauthorized",
		Message: "Authentication failed: invalid API token or secret"}
}

func errCallRateLimit(limit, rate int) *apiError {
	return &apiError{Status: http.StatusForbidden, Category: "limit", Code: "call-rate-limit",
		Message: fmt.Sprintf("You can create %d calls per 1 seconds, calculated as the average over 1 seconds. Your rate is: %d", limit, rate)}
}

// errRateLimited: the documented body has no message; one is added because the python SDK
// raises KeyError on an error body without it.
func errRateLimited(resetMS int64) *apiError {
	return &apiError{Status: http.StatusTooManyRequests, Category: "too-many-requests", Code: "rate-limit-reached",
		Message: "The rate limit was reached", ResetMS: resetMS}
}

func errTransfer(callID, to string) *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Category: "unavailable", Code: "call-transfer-error",
		Message: fmt.Sprintf("Call `%s` could not be transferred to `%s`", callID, to)}
}

func errCallUnavailable(id string) *apiError {
	return &apiError{Status: http.StatusServiceUnavailable, Category: "unavailable", Code: "call-unavailable",
		Message: fmt.Sprintf("The call `%s` is being initialized and cannot be modified now retry your operation later", id)}
}

func errUpdateConflict(id string) *apiError {
	return &apiError{Status: http.StatusConflict, Category: "conflict", Code: "call-update-conflict",
		Message: fmt.Sprintf("The call `%s` could not be updated because another update was is progress", id)}
}
