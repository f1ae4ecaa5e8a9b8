package bwsim

import (
	"fmt"
	"net/http"
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
}

func (c Config) guesses() Guesses {
	return Guesses{TransferFailure: c.TransferFailure, TransferredALegState: c.TransferredALegState,
		ALegTransferFields: c.ALegTransferFields, TimeoutHangupCause: c.TimeoutHangupCause,
		TransferLegCallback: c.TransferLegCallback, ForbiddenCategory: c.ForbiddenCategory, TransferLegFrom: c.TransferLegFrom}
}

// setGuesses writes g's fields into c, and no other field.
func (c *Config) setGuesses(g Guesses) {
	c.TransferFailure, c.TransferredALegState, c.ALegTransferFields = g.TransferFailure, g.TransferredALegState, g.ALegTransferFields
	c.TimeoutHangupCause, c.TransferLegCallback, c.ForbiddenCategory = g.TimeoutHangupCause, g.TransferLegCallback, g.ForbiddenCategory
	c.TransferLegFrom = g.TransferLegFrom
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
func (s *Sim) SetGuesses(g Guesses) error {
	var cfg Config
	cfg.setGuesses(g)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("bwsim: set guesses: %w: %w", ErrInvalid, err)
	}
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
