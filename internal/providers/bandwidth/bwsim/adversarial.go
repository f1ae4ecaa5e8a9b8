package bwsim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"time"

	"github.com/transferd/transferd/internal/providers/simjson"
)

// This file is the adversarial profile (Config's adversarial fields): delayed and reordered
// actions, lagging listings, failing reads, vanishing legs, lost responses and random faults.
// truth.go holds the ground truth that invariant tests check against.

// Magnitudes of the Adversarial profile: delays up to about a second, listings up to about
// 1.5 s late, about 20 % provider faults.
const (
	AdversarialActionDelay      = 10 * time.Millisecond
	AdversarialActionJitter     = 990 * time.Millisecond
	AdversarialListingDelay     = 100 * time.Millisecond
	AdversarialListingJitter    = 1400 * time.Millisecond
	AdversarialReadFailureRate  = 0.1
	AdversarialLostResponseRate = 0.05
	AdversarialFaultRate        = 0.2
	DefaultMaxFaultLatency      = 500 * time.Millisecond
)

// Adversarial returns a Config with every adversarial behaviour on at the profile's
// magnitudes, seeded with seed. Set the other fields (credentials, numbers) on the result.
func Adversarial(seed uint64) Config {
	return Config{
		Seed:             seed,
		ActionDelay:      AdversarialActionDelay,
		ActionJitter:     AdversarialActionJitter,
		ListingDelay:     AdversarialListingDelay,
		ListingJitter:    AdversarialListingJitter,
		UnlistedNotFound: true,
		ReadFailureRate:  AdversarialReadFailureRate,
		VanishFailedLegs: true,
		LostResponseRate: AdversarialLostResponseRate,
		FaultRate:        AdversarialFaultRate,
		MaxFaultLatency:  DefaultMaxFaultLatency,
	}
}

// adversity is the adversarial part of a Config, which can change at run time.
type adversity struct {
	Seed                        uint64
	ActionDelay, ActionJitter   time.Duration
	ListingDelay, ListingJitter time.Duration
	UnlistedNotFound            bool
	ReadFailureRate             float64
	VanishFailedLegs            bool
	LostResponseRate            float64
	FaultRate                   float64
	MaxFaultLatency             time.Duration
}

func (c Config) adversity() adversity {
	return adversity{
		Seed:             c.Seed,
		ActionDelay:      c.ActionDelay,
		ActionJitter:     c.ActionJitter,
		ListingDelay:     c.ListingDelay,
		ListingJitter:    c.ListingJitter,
		UnlistedNotFound: c.UnlistedNotFound,
		ReadFailureRate:  c.ReadFailureRate,
		VanishFailedLegs: c.VanishFailedLegs,
		LostResponseRate: c.LostResponseRate,
		FaultRate:        c.FaultRate,
		MaxFaultLatency:  c.MaxFaultLatency,
	}
}

// config is a Config with only the adversarial fields set.
func (a adversity) config() Config {
	return Config{
		Seed:             a.Seed,
		ActionDelay:      a.ActionDelay,
		ActionJitter:     a.ActionJitter,
		ListingDelay:     a.ListingDelay,
		ListingJitter:    a.ListingJitter,
		UnlistedNotFound: a.UnlistedNotFound,
		ReadFailureRate:  a.ReadFailureRate,
		VanishFailedLegs: a.VanishFailedLegs,
		LostResponseRate: a.LostResponseRate,
		FaultRate:        a.FaultRate,
		MaxFaultLatency:  a.MaxFaultLatency,
	}
}

// enabled reports whether any adversarial behaviour is on (the seed alone does nothing).
func (a adversity) enabled() bool {
	a.Seed = 0
	return a != adversity{}
}

func (a adversity) validate() error { return errors.Join(a.check(false)...) }

// check reports every behaviour of a that holds a value the simulator does not know, with
// the values it accepts: named by its Config field (validate, for Go callers) or by its JSON
// name on the control surface (jsonNames).
func (a adversity) check(jsonNames bool) []error {
	var errs []error
	name := func(field string) string {
		if !jsonNames {
			return field
		}
		return simjson.FieldName[adversityJSON](field)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ActionDelay", a.ActionDelay}, {"ActionJitter", a.ActionJitter}, {"ListingDelay", a.ListingDelay},
		{"ListingJitter", a.ListingJitter}, {"MaxFaultLatency", a.MaxFaultLatency}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v: must not be negative", name(d.name), d.v))
		}
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"ReadFailureRate", a.ReadFailureRate}, {"LostResponseRate", a.LostResponseRate}, {"FaultRate", a.FaultRate}} {
		if !(r.v >= 0 && r.v <= 1) { // also refuses NaN
			errs = append(errs, fmt.Errorf("%s %v: want 0 to 1", name(r.name), r.v))
		}
	}
	return errs
}

// SetAdversity switches the adversarial behaviours to those of c (its Seed, ActionDelay,
// ..., MaxFaultLatency; the other fields are ignored) and re-seeds: SetAdversity(Adversarial(7))
// turns the profile on, SetAdversity(Config{}) turns everything off. Actions already accepted
// and calls already waiting to be listed keep their delays.
func (s *Sim) SetAdversity(c Config) error {
	a := c.adversity()
	if err := a.validate(); err != nil {
		return fmt.Errorf("bwsim: set adversity: %w: %w", ErrInvalid, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setAdversityLocked(a)
	s.notifyLocked()
	return nil
}

// Adversity returns the adversarial behaviours in force, as a Config with only those fields
// set.
func (s *Sim) Adversity() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adv.config()
}

func (s *Sim) setAdversityLocked(a adversity) {
	if a.FaultRate > 0 && a.MaxFaultLatency == 0 {
		a.MaxFaultLatency = DefaultMaxFaultLatency
	}
	s.adv = a
	// The second PCG word is a fixed odd constant so seed 0 is as good as any other.
	s.rng = rand.New(rand.NewPCG(a.Seed, 0x9e3779b97f4a7c15))
}

// spanLocked draws a duration in [base, base+jitter].
func (s *Sim) spanLocked(base, jitter time.Duration) time.Duration {
	if jitter <= 0 {
		return base
	}
	return base + time.Duration(s.rng.Int64N(int64(jitter)+1))
}

// chanceLocked reports true with probability p. It draws only when p > 0, so a behaviour
// that is off does not shift the random sequence of the others.
func (s *Sim) chanceLocked(p float64) bool {
	return p > 0 && s.rng.Float64() < p
}

// Values of Request.Fault: which adversarial fault met the request.
const (
	faultReadStatus      = "read-failure"      // ReadFailureRate: 500 or 503
	faultReadDrop        = "read-drop"         // ReadFailureRate: dropped
	faultStatus          = "status"            // FaultRate: 500 or 503 before applying
	faultRateLimited     = "rate-limited"      // FaultRate: 429 with X-RateLimit-Reset
	faultLatency         = "latency"           // FaultRate: delayed, then handled
	faultDrop            = "drop"              // FaultRate: dropped before applying
	faultDropAfterApply  = "drop-after-apply"  // FaultRate: applied, then dropped
	faultErrorAfterApply = "error-after-apply" // FaultRate: applied, then 500
	faultLostResponse    = "lost-response"     // LostResponseRate: applied, then dropped
	faultInjected        = "injected"          // a Fault from InjectFault
)

const (
	faultKinds        = 7                       // the FaultRate kinds above
	minRateLimitReset = 100 * time.Millisecond  // bounds of a random 429's reset
	maxRateLimitReset = 1000 * time.Millisecond // (the documented window is 1 s)
)

// randomFaultLocked draws the adversarial fault, if any, that meets an API request: first a
// read failure (GET only), then a random provider fault, then a lost response (writes only).
func (s *Sim) randomFaultLocked(method string) (Fault, string, bool) {
	a := s.adv
	read := method == http.MethodGet
	if read && s.chanceLocked(a.ReadFailureRate) {
		switch s.rng.IntN(4) {
		case 0:
			return Fault{Drop: true}, faultReadDrop, true
		case 1:
			return Fault{Status: http.StatusInternalServerError}, faultReadStatus, true
		default:
			return Fault{Status: http.StatusServiceUnavailable}, faultReadStatus, true
		}
	}
	if s.chanceLocked(a.FaultRate) {
		switch s.rng.IntN(faultKinds) {
		case 0:
			return Fault{Status: http.StatusInternalServerError}, faultStatus, true
		case 1:
			return Fault{Status: http.StatusServiceUnavailable}, faultStatus, true
		case 2:
			reset := s.spanLocked(minRateLimitReset, maxRateLimitReset-minRateLimitReset)
			return Fault{Status: http.StatusTooManyRequests, RateLimitReset: reset}, faultRateLimited, true
		case 3:
			return Fault{Latency: s.spanLocked(time.Millisecond, a.MaxFaultLatency-time.Millisecond)}, faultLatency, true
		case 4:
			return Fault{Drop: true}, faultDrop, true
		case 5:
			return Fault{Drop: true, Apply: true}, faultDropAfterApply, true
		default:
			return Fault{Status: http.StatusInternalServerError, Apply: true}, faultErrorAfterApply, true
		}
	}
	if !read && s.chanceLocked(a.LostResponseRate) {
		return Fault{Drop: true, Apply: true}, faultLostResponse, true
	}
	return Fault{}, "", false
}

// Outcomes of an Action.
const (
	ActionPending = "pending" // accepted, waiting for its delay
	ActionApplied = "applied"
	ActionDropped = "dropped" // no longer valid when its turn came
)

// Action is one accepted action (a call update other than a transfer, or a bridge update)
// and what became of it. With ActionDelay and ActionJitter off it is applied before the
// response is written.
type Action struct {
	// Seq is the acceptance order, from 1; Order the order in which actions were applied or
	// dropped (0 while pending). Order differing from Seq is an action applied out of order.
	Seq   uint64 `json:"seq"`
	Order uint64 `json:"order,omitempty"`
	// Operation is OpUpdateCall or OpUpdateBridge; Target the call or bridge id.
	Operation string `json:"operation"`
	Target    string `json:"target"`
	Body      string `json:"body"`
	// Delay is the drawn delay between acceptance and application.
	Delay    time.Duration `json:"delay_ns"`
	Accepted time.Time     `json:"accepted"`
	Done     time.Time     `json:"done,omitzero"`
	Outcome  string        `json:"outcome"`
	// Reason says why a dropped action was no longer valid.
	Reason string `json:"reason,omitempty"`
}

type action struct {
	Action
	// apply re-checks the action against the state of its turn and applies it, or returns
	// why it is no longer valid.
	apply func() string
	// due is when its timer fires (real clock), the order Settle applies pending actions in.
	due time.Time
	tok *timerTok
}

// actLocked accepts an action that was checked against the current state: it is applied now,
// or after a random delay when ActionDelay or ActionJitter is set.
func (s *Sim) actLocked(op, target string, body []byte, apply func() string) {
	s.actionSeq++
	a := &action{
		Action: Action{Seq: s.actionSeq, Operation: op, Target: target, Body: string(body), Accepted: s.now(), Outcome: ActionPending},
		apply:  apply,
	}
	s.actions = appendCapped(s.actions, a, s.cfg.MaxRecords)
	if s.adv.ActionDelay <= 0 && s.adv.ActionJitter <= 0 {
		s.finishActionLocked(a)
		return
	}
	a.Delay = s.spanLocked(s.adv.ActionDelay, s.adv.ActionJitter)
	a.due = time.Now().Add(a.Delay)
	s.delayed[a] = struct{}{}
	a.tok = s.afterLocked(a.Delay, func() { s.finishActionLocked(a) })
}

// finishActionLocked applies a pending action, or drops it if it is no longer valid.
func (s *Sim) finishActionLocked(a *action) {
	if a.Outcome != ActionPending {
		return // Settle got there first
	}
	delete(s.delayed, a)
	s.stopTimerLocked(a.tok)
	if reason := a.apply(); reason != "" {
		a.Outcome, a.Reason = ActionDropped, reason
	} else {
		a.Outcome = ActionApplied
	}
	s.actionDone++
	a.Order = s.actionDone
	a.Done = s.now()
}

// Actions returns every accepted action, in acceptance order (bounded by MaxRecords).
func (s *Sim) Actions() []Action {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Action, 0, len(s.actions))
	for _, a := range s.actions {
		out = append(out, a.Action)
	}
	return out
}

// hideUntilListedLocked keeps a call created through the API out of listings for a random
// delay, when ListingDelay or ListingJitter is set.
func (s *Sim) hideUntilListedLocked(c *call) {
	if c.vanished || (s.adv.ListingDelay <= 0 && s.adv.ListingJitter <= 0) {
		return
	}
	id := c.ID
	s.unlisted[id] = s.afterLocked(s.spanLocked(s.adv.ListingDelay, s.adv.ListingJitter), func() { delete(s.unlisted, id) })
}

// listedLocked reports whether GET calls shows the call.
func (s *Sim) listedLocked(c *call) bool {
	_, hidden := s.unlisted[c.ID]
	return !c.vanished && !hidden
}

// apiCallLocked is the call an API write addresses: nil when unknown or vanished.
func (s *Sim) apiCallLocked(id string) *call {
	if c := s.calls[id]; c != nil && !c.vanished {
		return c
	}
	return nil
}

// readableCallLocked is the call a GET of one call shows: also nil while it is not listed,
// with UnlistedNotFound.
func (s *Sim) readableCallLocked(id string) *call {
	c := s.apiCallLocked(id)
	if c != nil && s.adv.UnlistedNotFound && !s.listedLocked(c) {
		return nil
	}
	return c
}

// vanishes reports whether a leg dialled to a number with behaviour b ends at once, never
// seen by any read (Config.VanishFailedLegs).
func (s *Sim) vanishes(b Behaviour) bool {
	return s.adv.VanishFailedLegs && (b.Mode == ModeBusy || b.Mode == ModeReject)
}

// Settle applies every pending action now, in the order their timers would have applied
// them, and lists every call waiting to be listed: the end of a storm without waiting.
func (s *Sim) Settle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	pending := slices.Collect(maps.Keys(s.delayed))
	slices.SortFunc(pending, func(a, b *action) int {
		return cmp.Or(a.due.Compare(b.due), cmp.Compare(a.Seq, b.Seq))
	})
	for _, a := range pending {
		s.finishActionLocked(a)
	}
	for id, tok := range s.unlisted {
		s.stopTimerLocked(tok)
		delete(s.unlisted, id)
	}
	s.notifyLocked()
}

// WaitSettled returns when nothing is in flight: no zero-delay work (WaitIdle), no accepted
// action waiting for its delay, no created call waiting to be listed. Ring and answer timers
// are not waited for.
func (s *Sim) WaitSettled(ctx context.Context) error {
	return s.WaitFor(ctx, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.pending == 0 && len(s.delayed) == 0 && len(s.unlisted) == 0
	})
}
