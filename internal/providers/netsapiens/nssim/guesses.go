package nssim

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/transferd/transferd/internal/providers/simjson"
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
	ReadOtherLeg          string `json:"read_other_leg"`
	NotRingingStatus      int    `json:"not_ringing_status"`
	DuplicateCallIDStatus int    `json:"duplicate_call_id_status"`
	ListPageSize          int    `json:"list_page_size"`
	ListParams            string `json:"list_params"`
	EmptyListing          string `json:"empty_listing"`
	// The event subscriptions' posts: SubscriptionNames, and SubscriptionChaos's two
	// behaviours.
	SubscriptionNames     string `json:"subscription_names"`
	SubscriptionDuplicate bool   `json:"subscription_duplicate"`
	SubscriptionReorder   bool   `json:"subscription_reorder"`
	SubscriptionShape     string `json:"subscription_shape"`
	SubscriptionPostURL   string `json:"subscription_post_url"`
	JoinHidesCallBy       bool   `json:"join_hides_call_by"`
}

// guesses are c's Guesses.
func (c Config) guesses() Guesses {
	return Guesses{
		TermInfoField: c.TermInfoField, NumericUsers: c.NumericUsers, TransferWithTermUser: c.TransferWithTermUser,
		WrongHostname: c.WrongHostname, HostnameMatch: c.HostnameMatch, UnknownDestination: c.UnknownDestination,
		HeldSide: c.HeldSide, ExternalNumbers: c.ExternalNumbers, JoinKeeps: c.JoinKeeps, HeldInfo: c.HeldInfo,
		RingingDisconnect: c.RingingDisconnect, ReadOtherLeg: c.ReadOtherLeg,
		NotRingingStatus: c.NotRingingStatus, DuplicateCallIDStatus: c.DuplicateCallIDStatus,
		ListPageSize: c.ListPageSize, ListParams: c.ListParams, EmptyListing: c.EmptyListing,
		SubscriptionNames: c.SubscriptionNames, SubscriptionDuplicate: c.SubscriptionChaos.Duplicate,
		SubscriptionReorder: c.SubscriptionChaos.Reorder, SubscriptionShape: c.SubscriptionShape,
		SubscriptionPostURL: c.SubscriptionPostURL, JoinHidesCallBy: c.JoinHidesCallBy,
	}
}

// setGuesses writes g's fields into c, and no other field.
func (c *Config) setGuesses(g Guesses) {
	c.TermInfoField, c.NumericUsers, c.TransferWithTermUser = g.TermInfoField, g.NumericUsers, g.TransferWithTermUser
	c.WrongHostname, c.HostnameMatch, c.UnknownDestination = g.WrongHostname, g.HostnameMatch, g.UnknownDestination
	c.HeldSide, c.ExternalNumbers, c.JoinKeeps, c.HeldInfo = g.HeldSide, g.ExternalNumbers, g.JoinKeeps, g.HeldInfo
	c.RingingDisconnect, c.ReadOtherLeg = g.RingingDisconnect, g.ReadOtherLeg
	c.NotRingingStatus, c.DuplicateCallIDStatus = g.NotRingingStatus, g.DuplicateCallIDStatus
	c.ListPageSize, c.ListParams, c.EmptyListing = g.ListPageSize, g.ListParams, g.EmptyListing
	c.SubscriptionNames, c.SubscriptionShape = g.SubscriptionNames, g.SubscriptionShape
	c.SubscriptionPostURL, c.JoinHidesCallBy = g.SubscriptionPostURL, g.JoinHidesCallBy
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
// its turn comes. An invalid value changes nothing and is reported with ErrInvalid, naming
// each field refused by its JSON name (the control surface's) with the values it accepts.
func (s *Sim) SetGuesses(g Guesses) error {
	if err := invalid(g.check(true)); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := s.cfg
	cfg.setGuesses(g)
	s.useLocked(cfg.withDefaults().guesses())
	return nil
}

// check reports every guess of g that holds a value the simulator does not know, with the
// values it accepts. A guess is named by its JSON name (jsonNames: what a client of the
// control surface sent) or by its Config field (Config.Validate). Empty values are valid:
// they select the defaults.
func (g Guesses) check(jsonNames bool) []error {
	var errs []error
	name := func(field string) string {
		if !jsonNames {
			return "nssim: " + field
		}
		// ErrInvalid, which SetGuesses wraps these in, says nssim.
		return simjson.FieldName[Guesses](field)
	}
	oneOf := func(field, v string, allowed ...string) {
		if v == "" || slices.Contains(allowed, v) {
			return
		}
		errs = append(errs, fmt.Errorf("%s %q is not one of %s", name(field), v, simjson.OrList(allowed)))
	}
	oneOf("TermInfoField", g.TermInfoField, TermInfoCall, TermInfoSpec, TermInfoBoth)
	oneOf("TransferWithTermUser", g.TransferWithTermUser, TermUserIgnore, TermUserBlind)
	oneOf("WrongHostname", g.WrongHostname, HostnameIgnore, HostnameReject)
	oneOf("HostnameMatch", g.HostnameMatch, HostnameOfOriginal, HostnameOfDestination, HostnameOfEither)
	oneOf("UnknownDestination", g.UnknownDestination, DestinationIgnore, DestinationNotFound)
	oneOf("HeldSide", g.HeldSide, HeldRemote, HeldBoth)
	oneOf("ExternalNumbers", g.ExternalNumbers, NumbersPSTN, NumbersAsUsers)
	oneOf("JoinKeeps", g.JoinKeeps, JoinKeepsCaller, JoinKeepsConsult)
	oneOf("SubscriptionNames", g.SubscriptionNames, NamesLegacy, NamesHyphenated)
	oneOf("SubscriptionShape", g.SubscriptionShape, ShapeArray, ShapeObject)
	oneOf("SubscriptionPostURL", g.SubscriptionPostURL, PostURLVerbatim, PostURLCanonical)
	oneOf("RingingDisconnect", g.RingingDisconnect, RingingEnds, RingingIgnored, RingingRefused)
	oneOf("ReadOtherLeg", g.ReadOtherLeg, OtherLegFound, OtherLegNotFound)
	oneOf("ListParams", g.ListParams, ListParamsHonoured, ListParamsStartOnly, ListParamsLimitOnly, ListParamsIgnored)
	oneOf("EmptyListing", g.EmptyListing, EmptyListingArray, EmptyListingNull, EmptyListingNone)
	if g.ListPageSize < 0 {
		errs = append(errs, fmt.Errorf("%s %d is negative: a page size, or 0 for no paging", name("ListPageSize"), g.ListPageSize))
	}
	if g.HeldInfo == InfoActive || g.HeldInfo == InfoAlerting {
		errs = append(errs, fmt.Errorf("%s %q is another state's value: any word but %s (default %q)",
			name("HeldInfo"), g.HeldInfo, simjson.OrList([]string{InfoActive, InfoAlerting}), InfoHeld))
	}
	for _, code := range []struct {
		field string
		v     int
	}{{"NotRingingStatus", g.NotRingingStatus}, {"DuplicateCallIDStatus", g.DuplicateCallIDStatus}} {
		if code.v != 0 && (code.v < 400 || code.v > 499) {
			errs = append(errs, fmt.Errorf("%s %d is not a 4xx status: one of 400 to 499 (default 409)", name(code.field), code.v))
		}
	}
	return errs
}

// invalid is errs as one ErrInvalid, or nil when there are none.
func invalid(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(msgs, "; "))
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
