package nssim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// ControlHandler returns the JSON control surface, with paths relative to where it is
// mounted. It is not part of NetSapiens' API: it plays the PBX's other actors (callers,
// phones) and the test harness. Errors are {"error":"..."} with a 4xx status.
//
//	POST   /calls                           {"domain","user","from","to","ring"} → 201 ActiveCall
//	GET    /calls[?domain=D]                → 200 [ActiveCall]
//	POST   /calls/{session-id}/hangup       {"party":"orig"|"term"} → 204
//	GET    /ended                           → 200 [{"call","reason","detail","time"}]
//	PUT    /users/{domain}/{user}/behaviour {"mode","delay":"2s"} → 204
//	POST   /users/{domain}/{user}/answer    → 204
//	GET    /faults                          → 200 [Fault]
//	POST   /faults                          {"operation","status","message","count","latency":"50ms","drop","apply","retry_after"} → 204
//	DELETE /faults                          → 204
//	GET    /requests                        → 200 [Request]
//	DELETE /requests                        → 204
//	POST   /reset                           → 204
//	GET    /idle                            → 204 once every action due without delay has run
func (s *Sim) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /calls", s.ctlPlaceCall)
	mux.HandleFunc("GET /calls", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Sessions(r.URL.Query().Get("domain")))
	})
	mux.HandleFunc("POST /calls/{session}/hangup", s.ctlHangup)
	mux.HandleFunc("GET /ended", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Ended())
	})
	mux.HandleFunc("PUT /users/{domain}/{user}/behaviour", s.ctlBehaviour)
	mux.HandleFunc("POST /users/{domain}/{user}/answer", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Answer(r.PathValue("domain"), r.PathValue("user")); err != nil {
			writeControlError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /faults", s.ctlFaults)
	mux.HandleFunc("POST /faults", s.ctlInjectFault)
	mux.HandleFunc("DELETE /faults", func(w http.ResponseWriter, r *http.Request) {
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /requests", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Requests())
	})
	mux.HandleFunc("DELETE /requests", func(w http.ResponseWriter, r *http.Request) {
		s.ResetRequests()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /idle", func(w http.ResponseWriter, r *http.Request) {
		if err := s.WaitIdle(r.Context()); err != nil {
			return // the client is gone
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeControlError(w, fmt.Errorf("%w: no control route %s %s", ErrNotFound, r.Method, r.URL.Path))
	})
	return withLeadingSlash(mux)
}

func writeControlError(w http.ResponseWriter, err error) {
	status := http.StatusBadRequest
	switch {
	case errors.Is(err, ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ErrNotRinging):
		status = http.StatusConflict
	}
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{err.Error()})
}

// decodeControl reads a JSON body strictly, so a typo in a test script fails loudly. An empty
// body reads as {}.
func decodeControl(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: body: %v", ErrInvalid, err)
	}
	return nil
}

func parseDuration(field, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: %s %q is not a non-negative Go duration such as \"2s\"", ErrInvalid, field, v)
	}
	return d, nil
}

func (s *Sim) ctlPlaceCall(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Domain string `json:"domain"`
		User   string `json:"user"`
		From   string `json:"from"`
		To     string `json:"to"`
		Ring   bool   `json:"ring"`
	}
	if err := decodeControl(w, r, &in); err != nil {
		writeControlError(w, err)
		return
	}
	call, err := s.PlaceCall(InboundCall{Domain: in.Domain, User: in.User, From: in.From, To: in.To, Ring: in.Ring})
	if err != nil {
		writeControlError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, call)
}

func (s *Sim) ctlHangup(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Party string `json:"party"`
	}
	if err := decodeControl(w, r, &in); err != nil {
		writeControlError(w, err)
		return
	}
	if err := s.Hangup(r.PathValue("session"), in.Party); err != nil {
		writeControlError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) ctlBehaviour(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Mode  string `json:"mode"`
		Delay string `json:"delay"`
	}
	if err := decodeControl(w, r, &in); err != nil {
		writeControlError(w, err)
		return
	}
	if !validMode(in.Mode) {
		writeControlError(w, fmt.Errorf("%w: mode %q is not one of answer, after, never, busy, reject, manual", ErrInvalid, in.Mode))
		return
	}
	d, err := parseDuration("delay", in.Delay)
	if err != nil {
		writeControlError(w, err)
		return
	}
	s.SetBehaviour(r.PathValue("domain"), r.PathValue("user"), Behaviour{Mode: in.Mode, Delay: d})
	w.WriteHeader(http.StatusNoContent)
}

// faultJSON is Fault on the control surface.
type faultJSON struct {
	Operation  string `json:"operation"`
	Status     int    `json:"status"`
	Message    string `json:"message"`
	Count      int    `json:"count"`
	Latency    string `json:"latency"`
	Drop       bool   `json:"drop"`
	Apply      bool   `json:"apply"`
	RetryAfter string `json:"retry_after"`
}

func (s *Sim) ctlInjectFault(w http.ResponseWriter, r *http.Request) {
	var in faultJSON
	if err := decodeControl(w, r, &in); err != nil {
		writeControlError(w, err)
		return
	}
	latency, err := parseDuration("latency", in.Latency)
	if err != nil {
		writeControlError(w, err)
		return
	}
	f := Fault{
		Operation: in.Operation, Status: in.Status, Message: in.Message, Count: in.Count,
		Latency: latency, Drop: in.Drop, Apply: in.Apply, RetryAfter: in.RetryAfter,
	}
	if err := f.Validate(); err != nil {
		writeControlError(w, err)
		return
	}
	s.InjectFault(f)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) ctlFaults(w http.ResponseWriter, r *http.Request) {
	faults := s.Faults()
	out := make([]faultJSON, 0, len(faults))
	for _, f := range faults {
		latency := ""
		if f.Latency > 0 {
			latency = f.Latency.String()
		}
		out = append(out, faultJSON{
			Operation: f.Operation, Status: f.Status, Message: f.Message, Count: f.Count,
			Latency: latency, Drop: f.Drop, Apply: f.Apply, RetryAfter: f.RetryAfter,
		})
	}
	writeJSON(w, http.StatusOK, out)
}
