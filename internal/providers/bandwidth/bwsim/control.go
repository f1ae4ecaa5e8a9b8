package bwsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/transferd/transferd/internal/providers/simjson"
)

// ControlHandler serves the simulator's JSON control surface (snake_case; errors are
// {"error": "..."}; 204 unless data is returned):
//
//	POST   /calls                       place an inbound call {"from","to","agent","callback_url","unanswered"}
//	                                    → 201 {"call":{...},"agent_call":{...},"bridge":{...}}
//	GET    /calls                       every call
//	GET    /calls/{id}                  one call
//	GET    /calls/{id}/connections      {"held":bool,"connected_to":[ids]}
//	POST   /calls/{id}/hangup           the remote party hangs up
//	POST   /calls/{id}/timeout          a ringing outbound leg times out now
//	GET    /bridges, /bridges/{id}      bridges
//	GET    /callbacks                   attempted callback deliveries
//	GET    /requests                    recorded API requests; DELETE forgets them
//	PUT    /numbers/{number}/behaviour  {"mode":"after","delay":"2s"}
//	POST   /numbers/{number}/answer     answer the legs ringing there now; 409 when nothing rings
//	POST   /faults                      {"operation","status","code","category","message","count",
//	                                    "latency":"50ms","drop","apply","rate_limit_reset":"2s"}
//	GET    /faults, DELETE /faults      list or clear faults
//	GET    /idle?timeout=5s             204 once no zero-delay work is pending, else 504
//	GET    /settled?timeout=5s          204 once nothing is in flight (WaitSettled), else 504
//	POST   /settle                      apply pending actions and list pending calls now
//	GET    /truth                       the ground truth (Truth): every call, bridge and tag
//	GET    /actions                     accepted actions and what became of them (Action)
//	GET    /config/adversarial          the adversarial behaviours in force (shape below)
//	PUT    /config/adversarial          switch them → 200 with the result
//	DELETE /config/adversarial          turn them all off
//	GET    /config/guesses              the Guesses in force (shape below)
//	PUT    /config/guesses              replace them (absent fields take their default) → 200 with the result
//	DELETE /config/guesses              put back the Guesses the simulator was started with
//	POST   /reset                       forget everything
//
// The adversarial configuration, on PUT and in answers (durations as Go duration strings):
//
//	{"enabled":true, "seed":7, "fault_rate":0.2,
//	 "action_delay":"10ms", "action_jitter":"990ms", "listing_delay":"100ms",
//	 "listing_jitter":"1.4s", "unlisted_not_found":true, "read_failure_rate":0.1,
//	 "vanish_failed_legs":true, "lost_response_rate":0.05, "max_fault_latency":"500ms"}
//
// The Guesses, each a Config field of the same name whose comment says what it means:
//
//	{"transfer_failure":"hangup", "transferred_a_leg_state":"transferring",
//	 "a_leg_transfer_fields":"always", "timeout_hangup_cause":"NO_ANSWER",
//	 "transfer_leg_callback":"a-leg", "forbidden_category":"forbidden",
//	 "transfer_leg_from":"as-given", "callback_retries":0}
//
// On PUT, "enabled" picks the base, the Adversarial profile (true) or everything off
// (false), and every other field given overrides the base, so {"enabled":true,"seed":7} is
// the profile and {"enabled":false,"read_failure_rate":0.3} only failing reads. Answers have
// every field, with "enabled" true when any behaviour is on.
func (s *Sim) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /calls", s.ctlPlaceCall)
	mux.HandleFunc("GET /calls", func(w http.ResponseWriter, r *http.Request) { ctlJSON(w, http.StatusOK, s.Calls()) })
	mux.HandleFunc("GET /calls/{id}", s.ctlGetCall)
	mux.HandleFunc("GET /calls/{id}/connections", s.ctlConnections)
	mux.HandleFunc("POST /calls/{id}/hangup", func(w http.ResponseWriter, r *http.Request) {
		ctlResult(w, s.Hangup(r.PathValue("id")))
	})
	mux.HandleFunc("POST /calls/{id}/timeout", func(w http.ResponseWriter, r *http.Request) {
		ctlResult(w, s.Timeout(r.PathValue("id")))
	})
	mux.HandleFunc("GET /bridges", func(w http.ResponseWriter, r *http.Request) { ctlJSON(w, http.StatusOK, s.Bridges()) })
	mux.HandleFunc("GET /bridges/{id}", func(w http.ResponseWriter, r *http.Request) {
		b, ok := s.Bridge(r.PathValue("id"))
		if !ok {
			ctlError(w, http.StatusNotFound, "no bridge "+r.PathValue("id"))
			return
		}
		ctlJSON(w, http.StatusOK, b)
	})
	// Empty lists are [], as every other list here: nil would encode as null.
	mux.HandleFunc("GET /callbacks", func(w http.ResponseWriter, r *http.Request) {
		ctlJSON(w, http.StatusOK, append([]Callback{}, s.Callbacks()...))
	})
	mux.HandleFunc("GET /requests", func(w http.ResponseWriter, r *http.Request) {
		ctlJSON(w, http.StatusOK, append([]Request{}, s.Requests()...))
	})
	mux.HandleFunc("DELETE /requests", func(w http.ResponseWriter, r *http.Request) {
		s.ResetRequests()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /numbers/{number}/behaviour", s.ctlSetBehaviour)
	mux.HandleFunc("POST /numbers/{number}/answer", func(w http.ResponseWriter, r *http.Request) {
		ctlResult(w, s.Answer(r.PathValue("number")))
	})
	mux.HandleFunc("POST /faults", s.ctlInjectFault)
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, r *http.Request) {
		out := []faultJSON{}
		for _, f := range s.Faults() {
			out = append(out, toFaultJSON(f))
		}
		ctlJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("DELETE /faults", func(w http.ResponseWriter, r *http.Request) {
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /idle", func(w http.ResponseWriter, r *http.Request) { ctlWait(w, r, s.WaitIdle) })
	mux.HandleFunc("GET /settled", func(w http.ResponseWriter, r *http.Request) { ctlWait(w, r, s.WaitSettled) })
	mux.HandleFunc("POST /settle", func(w http.ResponseWriter, r *http.Request) {
		s.Settle()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /truth", func(w http.ResponseWriter, r *http.Request) { ctlJSON(w, http.StatusOK, s.Truth()) })
	mux.HandleFunc("GET /actions", func(w http.ResponseWriter, r *http.Request) { ctlJSON(w, http.StatusOK, s.Actions()) })
	mux.HandleFunc("GET /config/adversarial", func(w http.ResponseWriter, r *http.Request) {
		ctlJSON(w, http.StatusOK, toAdversityJSON(s.Adversity()))
	})
	mux.HandleFunc("PUT /config/adversarial", s.ctlSetAdversity)
	mux.HandleFunc("DELETE /config/adversarial", func(w http.ResponseWriter, r *http.Request) {
		ctlResult(w, s.SetAdversity(Config{}))
	})
	mux.HandleFunc("GET /config/guesses", func(w http.ResponseWriter, r *http.Request) { ctlJSON(w, http.StatusOK, s.Guesses()) })
	mux.HandleFunc("PUT /config/guesses", s.ctlSetGuesses)
	mux.HandleFunc("DELETE /config/guesses", func(w http.ResponseWriter, r *http.Request) {
		s.ResetGuesses()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern == "" {
			// Let the mux decide between 404 and 405 (with Allow), then answer in JSON.
			rec := &bufferedWriter{header: make(http.Header)}
			mux.ServeHTTP(rec, r)
			if allow := rec.header.Get("Allow"); allow != "" {
				w.Header().Set("Allow", allow)
			}
			ctlError(w, rec.statusCode(), fmt.Sprintf("no control endpoint %s %s", r.Method, r.URL.Path))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// placeCallRequest is the body of POST /calls.
type placeCallRequest struct {
	From        string `json:"from"`
	To          string `json:"to"`
	Agent       string `json:"agent"`
	CallbackURL string `json:"callback_url"`
	Unanswered  bool   `json:"unanswered"`
}

// PlaceCallResult is the answer of the control surface's POST /calls.
type PlaceCallResult struct {
	Call      Call    `json:"call"`
	AgentCall *Call   `json:"agent_call,omitempty"`
	Bridge    *Bridge `json:"bridge,omitempty"`
}

func (s *Sim) ctlPlaceCall(w http.ResponseWriter, r *http.Request) {
	var in placeCallRequest
	if err := ctlDecode(w, r, &in); err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	a, g, b, err := s.PlaceCallWithAgent(InboundCall(in))
	if err != nil {
		ctlResult(w, err)
		return
	}
	out := PlaceCallResult{Call: a}
	if g.ID != "" {
		out.AgentCall, out.Bridge = &g, &b
	}
	ctlJSON(w, http.StatusCreated, out)
}

func (s *Sim) ctlGetCall(w http.ResponseWriter, r *http.Request) {
	c, ok := s.Call(r.PathValue("id"))
	if !ok {
		ctlError(w, http.StatusNotFound, "no call "+r.PathValue("id"))
		return
	}
	ctlJSON(w, http.StatusOK, c)
}

// Connections says what a call hears, for people watching a demo.
type Connections struct {
	Held        bool     `json:"held"`
	ConnectedTo []string `json:"connected_to"`
}

func (s *Sim) ctlConnections(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, ok := s.Call(id); !ok {
		ctlError(w, http.StatusNotFound, "no call "+id)
		return
	}
	out := Connections{Held: s.Held(id), ConnectedTo: []string{}}
	for _, c := range s.Calls() {
		if s.Connected(id, c.ID) {
			out.ConnectedTo = append(out.ConnectedTo, c.ID)
		}
	}
	ctlJSON(w, http.StatusOK, out)
}

type behaviourJSON struct {
	Mode  string       `json:"mode"`
	Delay jsonDuration `json:"delay"`
}

func (s *Sim) ctlSetBehaviour(w http.ResponseWriter, r *http.Request) {
	var in behaviourJSON
	if err := ctlDecode(w, r, &in); err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !validMode(in.Mode) {
		ctlError(w, http.StatusBadRequest, fmt.Sprintf("mode %q: want one of %v", in.Mode, modes()))
		return
	}
	s.SetBehaviour(r.PathValue("number"), Behaviour{Mode: in.Mode, Delay: time.Duration(in.Delay)})
	w.WriteHeader(http.StatusNoContent)
}

// faultJSON is a Fault on the control surface.
type faultJSON struct {
	Operation      string       `json:"operation"`
	Status         int          `json:"status,omitempty"`
	Code           string       `json:"code,omitempty"`
	Category       string       `json:"category,omitempty"`
	Message        string       `json:"message,omitempty"`
	Count          int          `json:"count,omitempty"`
	Latency        jsonDuration `json:"latency,omitempty"`
	Drop           bool         `json:"drop,omitempty"`
	Apply          bool         `json:"apply,omitempty"`
	RateLimitReset jsonDuration `json:"rate_limit_reset,omitempty"`
}

func toFaultJSON(f Fault) faultJSON {
	return faultJSON{Operation: f.Operation, Status: f.Status, Code: f.Code, Category: f.Category,
		Message: f.Message, Count: f.Count, Latency: jsonDuration(f.Latency), Drop: f.Drop,
		Apply: f.Apply, RateLimitReset: jsonDuration(f.RateLimitReset)}
}

func (s *Sim) ctlInjectFault(w http.ResponseWriter, r *http.Request) {
	var in faultJSON
	if err := ctlDecode(w, r, &in); err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	var problems []error
	if !slices.Contains(Operations(), in.Operation) {
		problems = append(problems, fmt.Errorf("operation %q: want one of %v", in.Operation, Operations()))
	}
	if in.Status != 0 && (in.Status < 400 || in.Status > 599) {
		problems = append(problems, fmt.Errorf("status %d: want 400 to 599", in.Status))
	}
	if in.Count < 0 {
		problems = append(problems, errors.New("count must not be negative"))
	}
	if in.Status == 0 && !in.Drop && in.Latency == 0 {
		problems = append(problems, errors.New("a fault needs a status, drop or latency"))
	}
	if err := errors.Join(problems...); err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.InjectFault(Fault{Operation: in.Operation, Status: in.Status, Code: in.Code, Category: in.Category,
		Message: in.Message, Count: in.Count, Latency: time.Duration(in.Latency), Drop: in.Drop,
		Apply: in.Apply, RateLimitReset: time.Duration(in.RateLimitReset)})
	w.WriteHeader(http.StatusNoContent)
}

// ctlWait answers 204 once wait returns, or 504 after the timeout query parameter (5s).
func ctlWait(w http.ResponseWriter, r *http.Request, wait func(context.Context) error) {
	timeout := 5 * time.Second
	if v := r.URL.Query().Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			ctlError(w, http.StatusBadRequest, fmt.Sprintf("timeout %q: want a duration such as 5s", v))
			return
		}
		timeout = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	if err := wait(ctx); err != nil {
		ctlError(w, http.StatusGatewayTimeout, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// jsonDuration is a duration written as a Go duration string ("2s", "150ms").
type jsonDuration time.Duration

func (d jsonDuration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return errors.New(`want a duration string such as "2s"`)
	}
	if v == "" {
		*d = 0
		return nil
	}
	p, err := time.ParseDuration(v)
	if err != nil || p < 0 {
		return fmt.Errorf("duration %q: want a non-negative duration such as \"2s\"", v)
	}
	*d = jsonDuration(p)
	return nil
}

// ctlDecode reads one JSON object, rejecting unknown fields and trailing data.
func ctlDecode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if msg, ok := simjson.TypeError(err); ok {
			// encoding/json names the Go struct and type ("Go struct field
			// Guesses.transfer_failure of type string"): say it in the body's terms.
			return errors.New("invalid JSON body: " + msg)
		}
		return fmt.Errorf("invalid JSON body: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("invalid JSON body: trailing data")
	}
	return nil
}

// ctlResult answers 204, or the error mapped to a status.
func ctlResult(w http.ResponseWriter, err error) {
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, ErrNotFound):
		ctlError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, ErrInvalidState):
		ctlError(w, http.StatusConflict, err.Error())
	default:
		ctlError(w, http.StatusBadRequest, err.Error())
	}
}

func ctlJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // a client that left is not our concern
}

func ctlError(w http.ResponseWriter, status int, msg string) {
	ctlJSON(w, status, map[string]string{"error": msg})
}

// adversityJSON is the adversarial configuration on the control surface; nil fields of a PUT
// keep the base that "enabled" picks.
type adversityJSON struct {
	Enabled          bool          `json:"enabled"`
	Seed             uint64        `json:"seed"`
	FaultRate        *float64      `json:"fault_rate,omitempty"`
	ActionDelay      *jsonDuration `json:"action_delay,omitempty"`
	ActionJitter     *jsonDuration `json:"action_jitter,omitempty"`
	ListingDelay     *jsonDuration `json:"listing_delay,omitempty"`
	ListingJitter    *jsonDuration `json:"listing_jitter,omitempty"`
	UnlistedNotFound *bool         `json:"unlisted_not_found,omitempty"`
	ReadFailureRate  *float64      `json:"read_failure_rate,omitempty"`
	VanishFailedLegs *bool         `json:"vanish_failed_legs,omitempty"`
	LostResponseRate *float64      `json:"lost_response_rate,omitempty"`
	MaxFaultLatency  *jsonDuration `json:"max_fault_latency,omitempty"`
}

func toAdversityJSON(c Config) adversityJSON {
	d := func(v time.Duration) *jsonDuration { j := jsonDuration(v); return &j }
	return adversityJSON{
		Enabled:          c.adversity().enabled(),
		Seed:             c.Seed,
		FaultRate:        &c.FaultRate,
		ActionDelay:      d(c.ActionDelay),
		ActionJitter:     d(c.ActionJitter),
		ListingDelay:     d(c.ListingDelay),
		ListingJitter:    d(c.ListingJitter),
		UnlistedNotFound: &c.UnlistedNotFound,
		ReadFailureRate:  &c.ReadFailureRate,
		VanishFailedLegs: &c.VanishFailedLegs,
		LostResponseRate: &c.LostResponseRate,
		MaxFaultLatency:  d(c.MaxFaultLatency),
	}
}

// config is the Config the PUT asks for.
func (in adversityJSON) config() Config {
	c := Config{Seed: in.Seed}
	if in.Enabled {
		c = Adversarial(in.Seed)
	}
	setIf(&c.FaultRate, in.FaultRate)
	setIf(&c.UnlistedNotFound, in.UnlistedNotFound)
	setIf(&c.ReadFailureRate, in.ReadFailureRate)
	setIf(&c.VanishFailedLegs, in.VanishFailedLegs)
	setIf(&c.LostResponseRate, in.LostResponseRate)
	for _, f := range []struct {
		dst *time.Duration
		v   *jsonDuration
	}{{&c.ActionDelay, in.ActionDelay}, {&c.ActionJitter, in.ActionJitter}, {&c.ListingDelay, in.ListingDelay},
		{&c.ListingJitter, in.ListingJitter}, {&c.MaxFaultLatency, in.MaxFaultLatency}} {
		if f.v != nil {
			*f.dst = time.Duration(*f.v)
		}
	}
	return c
}

func setIf[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func (s *Sim) ctlSetAdversity(w http.ResponseWriter, r *http.Request) {
	var in adversityJSON
	if err := ctlDecode(w, r, &in); err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	c := in.config()
	if err := joinErrors(c.adversity().check(true)); err != nil {
		ctlError(w, http.StatusBadRequest, "bwsim: set adversity: "+err.Error())
		return
	}
	if err := s.SetAdversity(c); err != nil {
		ctlResult(w, err)
		return
	}
	ctlJSON(w, http.StatusOK, toAdversityJSON(s.Adversity()))
}
