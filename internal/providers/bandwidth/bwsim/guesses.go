package bwsim

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/transferd/transferd/internal/providers/simjson"
)

// Guesses are the fields of Config that say how the platform treats a transfer where the
// notes could only guess ([GUESS]): a client has to be right whichever way the real platform
// goes, so a randomized test wants every side of each from one simulator. Sim.SetGuesses
// switches them at run time; an empty field selects Config's default. The JSON names are the
// control surface's (/config/guesses).
type Guesses struct {
	TransferFailure      string `json:"transfer_failure"`
	TransferredALegState string `json:"transferred_a_leg_state"`
	ALegTransferFields   string `json:"a_leg_transfer_fields"`
	TimeoutHangupCause   string `json:"timeout_hangup_cause"`
	TransferLegCallback  string `json:"transfer_leg_callback"`
	ForbiddenCategory    string `json:"forbidden_category"`
	TransferLegFrom      string `json:"transfer_leg_from"`
	CallbackRetries      int    `json:"callback_retries"`
}

// maxCallbackRetries bounds CallbackRetries: each post may wait a whole callbackTimeout,
// and a call's later events wait for it.
const maxCallbackRetries = 5

func (c Config) guesses() Guesses {
	return Guesses{TransferFailure: c.TransferFailure, TransferredALegState: c.TransferredALegState,
		ALegTransferFields: c.ALegTransferFields, TimeoutHangupCause: c.TimeoutHangupCause,
		TransferLegCallback: c.TransferLegCallback, ForbiddenCategory: c.ForbiddenCategory, TransferLegFrom: c.TransferLegFrom,
		CallbackRetries: c.CallbackRetries}
}

// setGuesses writes g's fields into c, and no other field.
func (c *Config) setGuesses(g Guesses) {
	c.TransferFailure, c.TransferredALegState, c.ALegTransferFields = g.TransferFailure, g.TransferredALegState, g.ALegTransferFields
	c.TimeoutHangupCause, c.TransferLegCallback, c.ForbiddenCategory = g.TimeoutHangupCause, g.TransferLegCallback, g.ForbiddenCategory
	c.TransferLegFrom, c.CallbackRetries = g.TransferLegFrom, g.CallbackRetries
}

// check reports every guess of g that holds a value the simulator does not know, with the
// values it accepts. A guess is named by its JSON name (jsonNames: what a client of the
// control surface sent) or by its Config field (Config.Validate). Empty values are valid:
// they select the defaults; ForbiddenCategory takes any word.
func (g Guesses) check(jsonNames bool) []error {
	var errs []error
	name := func(field string) string {
		if !jsonNames {
			return field
		}
		return simjson.FieldName[Guesses](field)
	}
	oneOf := func(field, v string, allowed ...string) {
		if v == "" || slices.Contains(allowed, v) {
			return
		}
		errs = append(errs, fmt.Errorf("%s %q: want %s", name(field), v, simjson.OrList(allowed)))
	}
	oneOf("TransferFailure", g.TransferFailure, TransferFailureHangup, TransferFailureRestore)
	oneOf("TransferredALegState", g.TransferredALegState, StateTransferring, StateActive)
	oneOf("TransferLegCallback", g.TransferLegCallback, TransferLegCallbackALeg, TransferLegCallbackNone)
	oneOf("TransferLegFrom", g.TransferLegFrom, TransferLegFromAsGiven, TransferLegFromCalledNumber, TransferLegFromAnonymous)
	oneOf("ALegTransferFields", g.ALegTransferFields, ALegTransferFieldsAlways, ALegTransferFieldsWhileTransferring, ALegTransferFieldsNever)
	if v := g.TimeoutHangupCause; v != "" && v != TimeoutHangupNone && !hangupCauseRE.MatchString(v) {
		errs = append(errs, fmt.Errorf("%s %q: want a hangup cause such as %q (capitals and underscores), or %q",
			name("TimeoutHangupCause"), v, CauseNoAnswer, TimeoutHangupNone))
	}
	if g.CallbackRetries < 0 || g.CallbackRetries > maxCallbackRetries {
		errs = append(errs, fmt.Errorf("%s %d: want 0 to %d", name("CallbackRetries"), g.CallbackRetries, maxCallbackRetries))
	}
	return errs
}

// joinErrors is errs as one error whose message puts them on one line, or nil.
func joinErrors(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
}

// Guesses returns the guesses in force, defaults filled in.
func (s *Sim) Guesses() Guesses {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.guesses()
}

// SetGuesses replaces the guesses in force; an empty field selects the default. They apply to
// what happens from now on: a transfer leg that fails later meets the TransferFailure in force
// then. An invalid value changes nothing and is reported with ErrInvalid.
//
// Each field refused is named by its JSON name (the control surface's), with the values it
// accepts.
func (s *Sim) SetGuesses(g Guesses) error {
	if err := joinErrors(g.check(true)); err != nil {
		return fmt.Errorf("bwsim: set guesses: %w: %w", ErrInvalid, err)
	}
	var cfg Config
	cfg.setGuesses(g)
	g = cfg.withDefaults().guesses()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.useGuessesLocked(g)
	return nil
}

// ResetGuesses puts back the guesses the simulator was made with.
func (s *Sim) ResetGuesses() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.useGuessesLocked(s.initial)
}

// useGuessesLocked writes the guess fields of s.cfg alone: the others
// (credentials, the clock) are read without mu.
func (s *Sim) useGuessesLocked(g Guesses) {
	s.cfg.setGuesses(g)
	s.notifyLocked()
}

func (s *Sim) ctlSetGuesses(w http.ResponseWriter, r *http.Request) {
	var g Guesses
	if err := ctlDecode(w, r, &g); err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.SetGuesses(g); err != nil {
		ctlResult(w, err)
		return
	}
	ctlJSON(w, http.StatusOK, s.Guesses())
}
