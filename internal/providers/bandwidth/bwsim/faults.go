package bwsim

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"
)

// This file holds fault injection and the documented rate limits (notes §5).

type faultSlot struct {
	Fault
	used int
}

// Operations returns every operation a Fault can target.
func Operations() []string {
	return []string{OpGetCall, OpListCalls, OpCreateCall, OpUpdateCall, OpTransfer, OpCreateBridge,
		OpUpdateBridge, OpGetBridge, OpListBridges, OpAudio, OpDTMF, OpAny}
}

// InjectFault adds a fault. A fault whose Operation is not one of Operations never matches.
func (s *Sim) InjectFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &faultSlot{Fault: f})
	s.notifyLocked()
}

// ClearFaults removes every fault.
func (s *Sim) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
	s.notifyLocked()
}

// Faults returns the faults not used up yet, each with Count reduced by its uses.
func (s *Sim) Faults() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Fault, 0, len(s.faults))
	for _, f := range s.faults {
		left := f.Fault
		if left.Count > 0 {
			left.Count -= f.used
		}
		out = append(out, left)
	}
	return out
}

// takeFaultLocked returns the first fault matching op and uses it up by one.
func (s *Sim) takeFaultLocked(op string) (Fault, bool) {
	for i, f := range s.faults {
		if f.Operation != op && f.Operation != OpAny {
			continue
		}
		f.used++
		if f.Count > 0 && f.used >= f.Count {
			s.faults = slices.Delete(s.faults, i, i+1)
		}
		return f.Fault, true
	}
	return Fault{}, false
}

// faultError is the error a fault answers: its own code, category and message, or what the
// real API sends for that status and operation.
func (s *Sim) faultError(f Fault, rt apiRoute, body []byte) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	def := s.defaultFaultErrorLocked(f.Status, rt, body)
	e := &apiError{Status: f.Status, Category: f.Category, Code: f.Code, Message: f.Message, ResetMS: def.ResetMS}
	if e.Code == "" {
		e.Code = def.Code
		if e.Message == "" {
			e.Message = def.Message
		}
	}
	if e.Category == "" {
		e.Category = def.Category
	}
	if e.Message == "" {
		e.Message = "Simulated fault: " + e.Code
	}
	if f.Status == http.StatusTooManyRequests {
		reset := f.RateLimitReset
		if reset <= 0 {
			reset = time.Second
		}
		e.ResetMS = s.now().Add(reset).UnixMilli()
	}
	return e
}

func (s *Sim) defaultFaultErrorLocked(status int, rt apiRoute, body []byte) *apiError {
	id := rt.callID
	bridgeOp := rt.op == OpCreateBridge || rt.op == OpUpdateBridge || rt.op == OpGetBridge || rt.op == OpListBridges
	switch status {
	case http.StatusBadRequest:
		return errValidation("Bad parameters")
	case http.StatusUnauthorized:
		return errUnauthorized()
	case http.StatusForbidden:
		switch {
		case rt.op == OpCreateCall:
			return errCallRateLimit(1, 2)
		case bridgeOp:
			return s.errForbidden("bridge-callIds-overflow", "Only two calls are allowed in a bridge")
		}
		state := "unknown"
		if c := s.calls[id]; c != nil {
			state = c.State
		}
		return s.errInvalidState(id, state)
	case http.StatusNotFound:
		switch {
		case bridgeOp && rt.bridgeID != "":
			return errBridgeNotFound(rt.bridgeID)
		case id != "":
			return errCallNotFound(id)
		}
		return &apiError{Category: "not-found", Code: "resource-not-found", Message: "The resource could not be found"}
	case http.StatusConflict:
		if bridgeOp {
			return &apiError{Category: "conflict", Code: "bridge-update-conflict",
				Message: "The bridge `" + rt.bridgeID + "` could not be updated because another update was is progress"}
		}
		return errUpdateConflict(id)
	case http.StatusTooManyRequests:
		return errRateLimited(0)
	case http.StatusInternalServerError:
		// The 500 BACKEND group lists no code a call operation would return [GUESS].
		return &apiError{Category: "backend", Code: "internal-server-error", Message: "An internal server error occurred"}
	case http.StatusServiceUnavailable:
		switch rt.op {
		case OpTransfer:
			var b struct {
				TransferTo string `json:"transferTo"`
			}
			_ = json.Unmarshal(body, &b) // best effort: the message names the target if known
			return errTransfer(id, b.TransferTo)
		case OpCreateCall:
			return &apiError{Category: "unavailable", Code: "call-creation-failure", Message: "The call could not be created"}
		case OpCreateBridge:
			return &apiError{Category: "unavailable", Code: "bridge-create-error", Message: "The bridge could not be created"}
		case OpUpdateBridge:
			return &apiError{Category: "unavailable", Code: "bridge-update-error", Message: "The bridge `" + rt.bridgeID + "` could not be updated"}
		case OpAudio:
			return &apiError{Category: "unavailable", Code: "audio-update-failure", Message: "The audio could not be updated"}
		case OpDTMF:
			return &apiError{Category: "unavailable", Code: "send-dtmf-failure", Message: "The DTMF could not be sent"}
		}
		return errCallUnavailable(id)
	}
	return &apiError{Category: categoryOf(status), Code: "simulated-fault"}
}

func categoryOf(status int) string {
	switch {
	case status == http.StatusConflict:
		return "conflict"
	case status >= 500:
		return "unavailable"
	default:
		return "bad-request"
	}
}

// rateLimitLocked applies the documented limits: POST calls over Config.CallRateLimit per
// second is 403 call-rate-limit; any other request over Config.RequestRateLimit per second
// is 429 with X-RateLimit-Reset, the epoch millisecond when the oldest request of the window
// leaves it. Windows slide over Config.Now, so a frozen test clock keeps them full.
func (s *Sim) rateLimitLocked(op string) *apiError {
	now := s.now()
	if op == OpCreateCall {
		if s.cfg.CallRateLimit <= 0 {
			return nil
		}
		s.callStamps = pruneWindow(s.callStamps, now)
		if len(s.callStamps) >= s.cfg.CallRateLimit {
			return errCallRateLimit(s.cfg.CallRateLimit, len(s.callStamps)+1)
		}
		s.callStamps = append(s.callStamps, now)
		return nil
	}
	if s.cfg.RequestRateLimit <= 0 {
		return nil
	}
	s.reqStamps = pruneWindow(s.reqStamps, now)
	if len(s.reqStamps) >= s.cfg.RequestRateLimit {
		return errRateLimited(s.reqStamps[0].Add(time.Second).UnixMilli())
	}
	s.reqStamps = append(s.reqStamps, now)
	return nil
}

// pruneWindow drops the stamps older than one second before now.
func pruneWindow(stamps []time.Time, now time.Time) []time.Time {
	cut := now.Add(-time.Second)
	i := 0
	for i < len(stamps) && !stamps[i].After(cut) {
		i++
	}
	return stamps[i:]
}
