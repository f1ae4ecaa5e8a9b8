package nssim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/transferd/transferd/internal/providers/simjson"
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
//	POST   /users/{domain}/{user}/answer    → 204 (every leg ringing to the user answers; nothing
//	                                        ringing: it waits up to 10 s for accepted actions
//	                                        to apply, then 409)
//	GET    /faults                          → 200 [Fault]
//	POST   /faults                          {"operation","status","message","count","latency":"50ms","drop","apply","retry_after","body"} → 204
//	DELETE /faults                          → 204
//	GET    /requests                        → 200 [Request]
//	DELETE /requests                        → 204
//	POST   /reset                           → 204
//	GET    /idle                            → 204 once every action due without delay has run
//	GET    /applied                         → 204 once every accepted (202) action has been applied, however late
//	GET    /truth                           → 200 Truth: every live session, listed or not; call-ids; ended
//	GET    /config/chaos                    → 200 the Chaos in force (shape below)
//	PUT    /config/chaos                    {"seed", every Chaos knob; absent knobs are off; "enabled":false turns them all off} → 200 the Chaos in force
//	DELETE /config/chaos                    → 204; every Chaos knob off
//	PUT    /config/adversarial              {"enabled":true,"seed":7,"fault_rate":0.2} → 200 the Chaos in force
//	DELETE /config/adversarial              → 204; the same as {"enabled":false}: every Chaos knob off
//	GET    /config/guesses                  → 200 the Guesses in force (shape below)
//	PUT    /config/guesses                  {every Guesses field; absent ones take their default} → 200 the Guesses in force
//	DELETE /config/guesses                  → 204; the Guesses the simulator was started with
//
// The Chaos shape (durations are Go durations, rates fractions in [0, 1]; seed 0 in a PUT
// keeps the current random stream, and a GET reports the seed in use):
//
//	{"enabled":true,"seed":7,"action_jitter":"1s","listing_delay":"100ms","listing_jitter":"1.4s",
//	 "unlisted_calls":"notfound","duplicate_call_ids":true,"read_failure_rate":0.1,"read_drop_rate":0.05,
//	 "lost_response_rate":0.05,"fault_rate":0.2,"fault_latency":"500ms"}
//
// The Guesses shape (each field a Config field of the same name, whose comment says what it
// means; "" and 0 select the default):
//
//	{"term_info_field":"both","numeric_users":false,"transfer_with_term_user":"ignore",
//	 "wrong_hostname":"ignore","hostname_match":"original","unknown_destination":"ignore",
//	 "held_side":"remote","external_numbers":"pstn","join_keeps":"caller","read_other_leg":"found",
//	 "not_ringing_status":409,"duplicate_call_id_status":409,
//	 "list_page_size":0,"list_params":"honoured","empty_listing":"array",
//	 "subscription_names":"legacy","subscription_duplicate":false,"subscription_reorder":false,
//	 "subscription_shape":"array","subscription_post_url":"verbatim","join_hides_call_by":false}
//
// PUT /config/adversarial with "enabled":true installs AdversarialChaos(fault_rate), fault_rate
// defaulting to AdversarialFaultRate; "enabled":false turns every knob off.
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
	mux.HandleFunc("POST /users/{domain}/{user}/answer", s.ctlAnswer)
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
	mux.HandleFunc("GET /applied", func(w http.ResponseWriter, r *http.Request) {
		if err := s.WaitApplied(r.Context()); err != nil {
			return // the client is gone
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /truth", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Truth())
	})
	mux.HandleFunc("GET /config/chaos", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.chaosState())
	})
	mux.HandleFunc("PUT /config/chaos", s.ctlSetChaos)
	mux.HandleFunc("PUT /config/adversarial", s.ctlAdversarial)
	chaosOff := func(w http.ResponseWriter, r *http.Request) {
		if err := s.SetChaos(Chaos{}, 0); err != nil {
			writeControlError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
	mux.HandleFunc("DELETE /config/chaos", chaosOff)
	mux.HandleFunc("DELETE /config/adversarial", chaosOff)
	mux.HandleFunc("GET /config/guesses", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Guesses())
	})
	mux.HandleFunc("PUT /config/guesses", s.ctlSetGuesses)
	mux.HandleFunc("DELETE /config/guesses", func(w http.ResponseWriter, r *http.Request) {
		s.ResetGuesses()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeControlError(w, fmt.Errorf("%w: no control route %s %s", ErrNotFound, r.Method, r.URL.Path))
	})
	return withLeadingSlash(mux)
}

// answerWait bounds how long POST /users/{domain}/{user}/answer waits for accepted actions
// to be applied before it finds nothing ringing.
const answerWait = 10 * time.Second

// ctlAnswer answers the legs ringing to a user. A consult the API accepted (202) rings only
// once the PBX applies it (ActionDelay, 200 ms in demo mode): a script that answers as soon
// as transferd reports the transfer consulting would find nothing ringing yet. So when
// nothing rings, it waits (up to answerWait) for the accepted actions, and what they start
// at once, to be applied, and looks again; with nothing pending that is at once.
func (s *Sim) ctlAnswer(w http.ResponseWriter, r *http.Request) {
	domain, user := r.PathValue("domain"), r.PathValue("user")
	err := s.Answer(domain, user)
	if errors.Is(err, ErrNotRinging) {
		ctx, cancel := context.WithTimeout(r.Context(), answerWait)
		if s.WaitApplied(ctx) == nil && s.WaitIdle(ctx) == nil {
			err = s.Answer(domain, user)
		}
		cancel()
	}
	if err != nil {
		writeControlError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
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
		return fmt.Errorf("%w: body: %s", ErrInvalid, controlDecodeError(err))
	}
	return nil
}

// controlDecodeError says what is wrong with a control body in the body's own terms
// (simjson.TypeError).
func controlDecodeError(err error) string {
	if msg, ok := simjson.TypeError(err); ok {
		return msg
	}
	return err.Error()
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
	// Body, when given (even ""), is Fault.Body.
	Body *string `json:"body,omitempty"`
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
		Latency: latency, Drop: in.Drop, Apply: in.Apply, RetryAfter: in.RetryAfter, Body: in.Body,
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
			Latency: latency, Drop: f.Drop, Apply: f.Apply, RetryAfter: f.RetryAfter, Body: f.Body,
		})
	}
	writeJSON(w, http.StatusOK, out)
}

// chaosJSON is Chaos on the control surface.
type chaosJSON struct {
	Seed             uint64  `json:"seed"`
	ActionJitter     string  `json:"action_jitter"`
	ListingDelay     string  `json:"listing_delay"`
	ListingJitter    string  `json:"listing_jitter"`
	UnlistedCalls    string  `json:"unlisted_calls"`
	DuplicateCallIDs bool    `json:"duplicate_call_ids"`
	ReadFailureRate  float64 `json:"read_failure_rate"`
	ReadDropRate     float64 `json:"read_drop_rate"`
	LostResponseRate float64 `json:"lost_response_rate"`
	FaultRate        float64 `json:"fault_rate"`
	FaultLatency     string  `json:"fault_latency"`
	LaggingNodeRate  float64 `json:"lagging_node_rate"`
	LaggingNodeAge   string  `json:"lagging_node_age"`

	LaggingNodeWriteRate float64 `json:"lagging_node_write_rate"`
}

// chaosStateJSON is what the chaos routes answer: the settings and whether any is on.
type chaosStateJSON struct {
	Enabled bool `json:"enabled"`
	chaosJSON
}

func (s *Sim) chaosState() chaosStateJSON {
	s.mu.Lock()
	c, seed := s.chaos, s.chaosSeed
	s.mu.Unlock()
	return chaosStateJSON{Enabled: c.Enabled(), chaosJSON: chaosJSON{
		Seed:             seed,
		ActionJitter:     c.ActionJitter.String(),
		ListingDelay:     c.ListingDelay.String(),
		ListingJitter:    c.ListingJitter.String(),
		UnlistedCalls:    c.UnlistedCalls,
		DuplicateCallIDs: c.DuplicateCallIDs,
		ReadFailureRate:  c.ReadFailureRate,
		ReadDropRate:     c.ReadDropRate,
		LostResponseRate: c.LostResponseRate,
		FaultRate:        c.FaultRate,
		FaultLatency:     c.FaultLatency.String(),
		LaggingNodeRate:  c.LaggingNodeRate,
		LaggingNodeAge:   c.LaggingNodeAge.String(),

		LaggingNodeWriteRate: c.LaggingNodeWriteRate,
	}}
}

func (s *Sim) ctlSetChaos(w http.ResponseWriter, r *http.Request) {
	// "enabled" is taken, so that what GET answers can be put back, and
	// false turns every knob off, as on /config/adversarial. True turns
	// nothing on by itself: it must come with a knob that is on, as GET
	// shows it.
	var body struct {
		Enabled *bool `json:"enabled"`
		chaosJSON
	}
	if err := decodeControl(w, r, &body); err != nil {
		writeControlError(w, err)
		return
	}
	in := body.chaosJSON
	if body.Enabled != nil && !*body.Enabled {
		in = chaosJSON{Seed: in.Seed}
	}
	enabledAlone := body.Enabled != nil && *body.Enabled
	c := Chaos{
		UnlistedCalls:    in.UnlistedCalls,
		DuplicateCallIDs: in.DuplicateCallIDs,
		ReadFailureRate:  in.ReadFailureRate,
		ReadDropRate:     in.ReadDropRate,
		LostResponseRate: in.LostResponseRate,
		FaultRate:        in.FaultRate,
		LaggingNodeRate:  in.LaggingNodeRate,

		LaggingNodeWriteRate: in.LaggingNodeWriteRate,
	}
	var errs []error
	for _, d := range []struct {
		field string
		text  string
		to    *time.Duration
	}{
		{"action_jitter", in.ActionJitter, &c.ActionJitter},
		{"listing_delay", in.ListingDelay, &c.ListingDelay},
		{"listing_jitter", in.ListingJitter, &c.ListingJitter},
		{"fault_latency", in.FaultLatency, &c.FaultLatency},
		{"lagging_node_age", in.LaggingNodeAge, &c.LaggingNodeAge},
	} {
		v, err := parseDuration(d.field, d.text)
		errs = append(errs, err)
		*d.to = v
	}
	if err := errors.Join(errs...); err != nil {
		writeControlError(w, err)
		return
	}
	if err := invalid(c.check(true)); err != nil {
		writeControlError(w, err)
		return
	}
	if enabledAlone && !c.Enabled() {
		writeControlError(w, fmt.Errorf(`%w: "enabled": true turns nothing on by itself: set the knobs, or PUT /config/adversarial for the adversarial profile`, ErrInvalid))
		return
	}
	if err := s.SetChaos(c, in.Seed); err != nil {
		writeControlError(w, fmt.Errorf("%w: %v", ErrInvalid, err))
		return
	}
	writeJSON(w, http.StatusOK, s.chaosState())
}

func (s *Sim) ctlAdversarial(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Enabled   *bool    `json:"enabled"`
		Seed      uint64   `json:"seed"`
		FaultRate *float64 `json:"fault_rate"`
	}
	if err := decodeControl(w, r, &in); err != nil {
		writeControlError(w, err)
		return
	}
	if in.Enabled == nil {
		writeControlError(w, fmt.Errorf("%w: enabled is required", ErrInvalid))
		return
	}
	var c Chaos
	if *in.Enabled {
		rate := AdversarialFaultRate
		if in.FaultRate != nil {
			rate = *in.FaultRate
		}
		if !(rate >= 0 && rate <= 1) { // also refuses NaN
			writeControlError(w, fmt.Errorf("%w: fault_rate %v is not a fraction in [0, 1]", ErrInvalid, rate))
			return
		}
		c = AdversarialChaos(rate)
	}
	if err := invalid(c.check(true)); err != nil {
		writeControlError(w, err)
		return
	}
	if err := s.SetChaos(c, in.Seed); err != nil {
		writeControlError(w, fmt.Errorf("%w: %v", ErrInvalid, err))
		return
	}
	writeJSON(w, http.StatusOK, s.chaosState())
}
