package nssim

import (
	"fmt"
	"net/http"
)

// Guesses are the fields of Config that say how the PBX reacts where the reference notes
// could only guess [G]: a client has to be right whichever way the real server goes, so a
// randomized test wants every side of each from one simulator. Sim.SetGuesses switches them
// at run time; an empty field selects Config's default. The JSON names are the control
// surface's (/config/guesses).
type Guesses struct {
	TermInfoField         string `json:"term_info_field"`
	NumericUsers          bool   `json:"numeric_users"`
	TransferWithTermUser  string `json:"transfer_with_term_user"`
	WrongHostname         string `json:"wrong_hostname"`
	HostnameMatch         string `json:"hostname_match"`
	UnknownDestination    string `json:"unknown_destination"`
	HeldSide              string `json:"held_side"`
	ExternalNumbers       string `json:"external_numbers"`
	JoinKeeps             string `json:"join_keeps"`
	HeldInfo              string `json:"held_info"`
	RingingDisconnect     string `json:"ringing_disconnect"`
	NotRingingStatus      int    `json:"not_ringing_status"`
	DuplicateCallIDStatus int    `json:"duplicate_call_id_status"`
	// The event subscriptions' posts: SubscriptionNames, and SubscriptionChaos's two
	// behaviours.
	SubscriptionNames     string `json:"subscription_names"`
	SubscriptionDuplicate bool   `json:"subscription_duplicate"`
	SubscriptionReorder   bool   `json:"subscription_reorder"`
}

// guesses are c's Guesses.
func (c Config) guesses() Guesses {
	return Guesses{
		TermInfoField: c.TermInfoField, NumericUsers: c.NumericUsers, TransferWithTermUser: c.TransferWithTermUser,
		WrongHostname: c.WrongHostname, HostnameMatch: c.HostnameMatch, UnknownDestination: c.UnknownDestination,
		HeldSide: c.HeldSide, ExternalNumbers: c.ExternalNumbers, JoinKeeps: c.JoinKeeps, HeldInfo: c.HeldInfo,
		RingingDisconnect: c.RingingDisconnect,
		NotRingingStatus:  c.NotRingingStatus, DuplicateCallIDStatus: c.DuplicateCallIDStatus,
		SubscriptionNames: c.SubscriptionNames, SubscriptionDuplicate: c.SubscriptionChaos.Duplicate,
		SubscriptionReorder: c.SubscriptionChaos.Reorder,
	}
}

// setGuesses writes g's fields into c, and no other field.
func (c *Config) setGuesses(g Guesses) {
	c.TermInfoField, c.NumericUsers, c.TransferWithTermUser = g.TermInfoField, g.NumericUsers, g.TransferWithTermUser
	c.WrongHostname, c.HostnameMatch, c.UnknownDestination = g.WrongHostname, g.HostnameMatch, g.UnknownDestination
	c.HeldSide, c.ExternalNumbers, c.JoinKeeps, c.HeldInfo = g.HeldSide, g.ExternalNumbers, g.JoinKeeps, g.HeldInfo
	c.RingingDisconnect = g.RingingDisconnect
	c.NotRingingStatus, c.DuplicateCallIDStatus = g.NotRingingStatus, g.DuplicateCallIDStatus
	c.SubscriptionNames = g.SubscriptionNames
	c.SubscriptionChaos = SubscriptionChaos{Duplicate: g.SubscriptionDuplicate, Reorder: g.SubscriptionReorder}
}

// Guesses returns the guesses in force, defaults filled in.
func (s *Sim) Guesses() Guesses {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.guesses()
}

// SetGuesses replaces the guesses in force; an empty field selects the default. It applies
// to what happens from now on: an action already accepted is applied as the guesses say when
// its turn comes. An invalid value changes nothing and is reported with ErrInvalid.
func (s *Sim) SetGuesses(g Guesses) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := s.cfg
	cfg.setGuesses(g)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	s.useLocked(cfg.withDefaults().guesses())
	return nil
}

// ResetGuesses puts back the guesses the simulator was made with.
func (s *Sim) ResetGuesses() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.useLocked(s.initial)
}

// useLocked makes g, valid and with its defaults filled in, the guesses in
// force. It writes those fields alone: the others (credentials, the clock)
// are read without mu.
func (s *Sim) useLocked(g Guesses) {
	s.cfg.setGuesses(g)
	s.render = renderOptions{termInfoField: g.TermInfoField, numericUsers: g.NumericUsers, heldInfo: g.HeldInfo}
	s.notifyLocked()
}

func (s *Sim) ctlSetGuesses(w http.ResponseWriter, r *http.Request) {
	var g Guesses
	if err := decodeControl(w, r, &g); err != nil {
		writeControlError(w, err)
		return
	}
	if err := s.SetGuesses(g); err != nil {
		writeControlError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.Guesses())
}
