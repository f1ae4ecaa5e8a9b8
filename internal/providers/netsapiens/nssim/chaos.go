package nssim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/transferd/transferd/internal/providers/simjson"
)

// Values of Chaos.UnlistedCalls.
const (
	// UnlistedNotFound answers 404 to an action addressed to a call that is not listed yet,
	// as if the API resolved {call_id} through the same table the listings read [G].
	UnlistedNotFound = "notfound"
	// UnlistedFound lets actions reach a call the listings do not show yet, as if the API
	// asked the switch directly [G].
	UnlistedFound = "found"
)

// Chaos makes the simulated PBX less cooperative than a convenient simulator: the ways in
// which a real one may be, so that a client can prove it converges on the provider's real
// state anyway. None of it is documented behaviour of NetSapiens: every field is a guess [G]
// about what a real cluster (a switch, an API node reading a replicated database, proxies
// in front of it) does under load. The zero value is cooperative. Adversarial and
// AdversarialChaos turn everything on; Sim.SetChaos and the control surface change it at
// run time.
type Chaos struct {
	// ActionJitter delays every accepted (202) action, a CallRequest included, by a random
	// extra amount in [0, ActionJitter] on top of ActionDelay, so two actions on one call
	// are sometimes applied in the opposite order to the one they were accepted in [G: a 202
	// only says the command was queued; nothing promises a queue per call].
	ActionJitter time.Duration

	// ListingDelay and ListingJitter hide a call created by an asynchronous CallRequest from
	// every GET (domain and user listings, counts, the single call) for a random time in
	// [ListingDelay, ListingDelay+ListingJitter] after the switch created it: its legs ring
	// and connect meanwhile [G: the synchronous flag is implemented as a read-back poll of up
	// to 2 s (notes §2), which suggests the API reads a table that lags the switch]. A
	// synchronous CallRequest is listed at once, because the real controller has waited
	// until it could read it back. A consult whose target is busy or rejects (the leg fails
	// at once) ends before it is ever listed: it never appears in a listing.
	ListingDelay  time.Duration
	ListingJitter time.Duration

	// UnlistedCalls is what an action (answer, hold, unhold, transfer, transferPeer, reject,
	// disconnect) addressed to a call that is not listed yet does: UnlistedNotFound (default,
	// 404 "Call not found") or UnlistedFound (it is performed). Reads never see such a call,
	// and an attended transfer to a session that is not listed follows UnlistedCalls too.
	UnlistedCalls string

	// DuplicateCallIDs accepts a CallRequest whose call-id belongs to a live call (or to one
	// being created) as a new call: a second session whose call-orig-call-id and
	// call-by-call-id are the same call-id, instead of DuplicateCallIDStatus [G: nothing in
	// the spec says the server checks]. An action addressed to a call-id that several live
	// sessions carry reaches the oldest one the route may address, so hanging up "every call
	// with our call-id" means DELETE until 404.
	DuplicateCallIDs bool

	// ReadFailureRate is the fraction of GETs answered with a 5xx (500, 502, 503 or 504 at
	// random) while writes keep working [G: the spec declares no 5xx at all, but an API node
	// whose database replica is unavailable would answer exactly so].
	ReadFailureRate float64

	// ReadDropRate is the fraction of GETs whose connection is closed without a response.
	// Go's http.Transport silently retries a GET dropped on a reused connection, so a client
	// sees some of these as a second, independent attempt.
	ReadDropRate float64

	// LostResponseRate is the fraction of writes (POST, PATCH, DELETE) that are performed
	// and whose connection is then closed without a response: the action happened, and the
	// client cannot know it. Fault with Drop and Apply is the one-shot version.
	LostResponseRate float64

	// FaultRate is the fraction of API requests hit by a random provider fault of any kind,
	// drawn uniformly: a 5xx before anything happened, a 429 with Retry-After: 1, latency of
	// up to FaultLatency before the normal response, a dropped connection before anything
	// happened, a dropped connection after the request was performed, or a 5xx after it was
	// performed. It is drawn before, and independently of, the read and write rates above.
	FaultRate float64

	// FaultLatency bounds the latency FaultRate injects; 0 leaves latency out of the kinds
	// drawn.
	FaultLatency time.Duration

	// LaggingNodeRate is the fraction of GETs served by an API node lagging LaggingNodeAge
	// behind the switch [G: a cluster of API nodes behind a load balancer, each reading a
	// replica]: a call younger than LaggingNodeAge (by Config.Now, since its session started)
	// is unknown to it, so its listings and counts leave the call out and a read of it by id
	// answers 404, however another node has already shown it. Both 0 by default (off).
	LaggingNodeRate float64
	LaggingNodeAge  time.Duration
	// LaggingNodeWriteRate is the fraction of writes addressed to a call (answer, hold,
	// unhold, transfer, disconnect, reject; not a create) that such a node serves [G on top of
	// the guess above: the notes say nothing of writes]. One addressed to a call it does not
	// know is answered as a call that does not exist is, 404, and does nothing; an attended
	// transfer to a destination session it does not know does what Config.UnknownDestination
	// says. 0 by default: only reads lag. A rate of its own, so that a test can make writes lag
	// while reads do not.
	LaggingNodeWriteRate float64
}

// AdversarialFaultRate is the FaultRate of Adversarial: about one request in five fails.
const AdversarialFaultRate = 0.2

// AdversarialChaos is every Chaos behaviour at once with sensible magnitudes: actions applied
// up to 1 s late, calls listed 0.1 to 1.5 s after they exist, duplicate call-ids accepted,
// unlisted calls not found, and random faults scaled by faultRate: FaultRate = faultRate,
// ReadFailureRate = faultRate/2, ReadDropRate and LostResponseRate = faultRate/4, latency up
// to 500 ms. A faultRate of 0 keeps the delays and duplicates and fails nothing.
func AdversarialChaos(faultRate float64) Chaos {
	return Chaos{
		ActionJitter:     time.Second,
		ListingDelay:     100 * time.Millisecond,
		ListingJitter:    1400 * time.Millisecond,
		UnlistedCalls:    UnlistedNotFound,
		DuplicateCallIDs: true,
		ReadFailureRate:  faultRate / 2,
		ReadDropRate:     faultRate / 4,
		LostResponseRate: faultRate / 4,
		FaultRate:        faultRate,
		FaultLatency:     500 * time.Millisecond,
	}
}

// Adversarial is a Config for the adversarial profile: AdversarialChaos(AdversarialFaultRate)
// with seed as Config.Seed, so that a failing storm can be replayed (as far as the order of
// concurrent requests allows). Everything else has its default.
func Adversarial(seed uint64) Config {
	return Config{Seed: seed, Chaos: AdversarialChaos(AdversarialFaultRate)}
}

// Enabled reports whether any behaviour of c is on.
func (c Chaos) Enabled() bool {
	c.UnlistedCalls = "" // a choice, not a behaviour: it matters only with a listing delay
	return c != Chaos{}
}

func (c Chaos) withDefaults() Chaos {
	if c.UnlistedCalls == "" {
		c.UnlistedCalls = UnlistedNotFound
	}
	return c
}

// Validate reports every field of c that holds a value the simulator cannot use.
func (c Chaos) Validate() error { return errors.Join(c.check(false)...) }

// check reports every knob of c that holds a value the simulator does not know, with the
// values it accepts: named by its Go field (Validate, for Go callers) or by its JSON name on
// the control surface (jsonNames).
func (c Chaos) check(jsonNames bool) []error {
	var errs []error
	name := func(field string) string {
		if !jsonNames {
			return "nssim: " + field
		}
		// ErrInvalid, which the control surface wraps these in, says nssim.
		return simjson.FieldName[chaosJSON](field)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ActionJitter", c.ActionJitter}, {"ListingDelay", c.ListingDelay}, {"ListingJitter", c.ListingJitter}, {"FaultLatency", c.FaultLatency},
		{"LaggingNodeAge", c.LaggingNodeAge}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", name(d.name), d.v))
		}
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"ReadFailureRate", c.ReadFailureRate}, {"ReadDropRate", c.ReadDropRate}, {"LostResponseRate", c.LostResponseRate}, {"FaultRate", c.FaultRate},
		{"LaggingNodeRate", c.LaggingNodeRate}, {"LaggingNodeWriteRate", c.LaggingNodeWriteRate}} {
		// The negated form also rejects NaN.
		if !(r.v >= 0 && r.v <= 1) {
			errs = append(errs, fmt.Errorf("%s %v is not a fraction in [0, 1]", name(r.name), r.v))
		}
	}
	switch c.UnlistedCalls {
	case "", UnlistedNotFound, UnlistedFound:
	default:
		errs = append(errs, fmt.Errorf("%s %q is not one of %s", name("UnlistedCalls"), c.UnlistedCalls, simjson.OrList([]string{UnlistedNotFound, UnlistedFound})))
	}
	return errs
}

// Chaos returns the behaviours in force now.
func (s *Sim) Chaos() Chaos {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chaos
}

// ChaosSeed returns the seed of the random stream that drives Chaos.
func (s *Sim) ChaosSeed() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chaosSeed
}

// SetChaos replaces the behaviours in force; Chaos{} makes the simulator cooperative again.
// A seed other than 0 restarts the random stream that drives them from that seed. What is
// already scheduled keeps its course: an action accepted with a delay is applied late, a call
// waiting to be listed is listed when its time comes.
func (s *Sim) SetChaos(c Chaos, seed uint64) error {
	if err := c.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chaos = c.withDefaults()
	if seed != 0 {
		s.seedChaosLocked(seed)
	}
	s.notifyLocked()
	return nil
}

// seedChaosLocked starts the random stream of Chaos. It is separate from the one of generated
// ids, so that turning chaos on or off does not change the ids a replayed run sees.
func (s *Sim) seedChaosLocked(seed uint64) {
	s.chaosSeed = seed
	s.chaosRng = rand.New(rand.NewPCG(seed^0x6a09e667f3bcc909, seed+0xbb67ae8584caa73b))
}

// chanceLocked draws whether an event of probability rate happens.
func (s *Sim) chanceLocked(rate float64) bool {
	return rate > 0 && (rate >= 1 || s.chaosRng.Float64() < rate)
}

// jitterLocked draws a duration in [0, limit].
func (s *Sim) jitterLocked(limit time.Duration) time.Duration {
	if limit <= 0 {
		return 0
	}
	return time.Duration(s.chaosRng.Int64N(int64(limit) + 1))
}

// laggingLocked draws whether a request is served by a lagging API node
// (a GET by Chaos.LaggingNodeRate, a write by LaggingNodeWriteRate), and returns the time
// before which a session must have started for that node to know it: the zero time when the
// node is not lagging.
func (s *Sim) laggingLocked(rate float64) time.Time {
	c := s.chaos
	if c.LaggingNodeAge <= 0 || !s.chanceLocked(rate) {
		return time.Time{}
	}
	return s.cfg.Now().Add(-c.LaggingNodeAge)
}

// serverErrors are the statuses a failing API node or the proxy in front of it answers.
var serverErrors = []int{
	http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout,
}

// randomFault draws the fault Chaos inflicts on a request of op, if any. Unknown routes are
// left alone so their 404 stays recognisable.
func (s *Sim) randomFault(method, op string) (Fault, bool) {
	if op == "" {
		return Fault{}, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chaos
	read := method == http.MethodGet
	if s.chanceLocked(c.FaultRate) {
		return s.anyFaultLocked(), true
	}
	if read {
		if s.chanceLocked(c.ReadFailureRate) {
			return Fault{Status: serverErrors[s.chaosRng.IntN(len(serverErrors))]}, true
		}
		if s.chanceLocked(c.ReadDropRate) {
			return Fault{Drop: true}, true
		}
		return Fault{}, false
	}
	if s.chanceLocked(c.LostResponseRate) {
		return Fault{Drop: true, Apply: true}, true
	}
	return Fault{}, false
}

// anyFaultLocked draws one fault of every kind FaultRate covers.
func (s *Sim) anyFaultLocked() Fault {
	kinds := 5
	if s.chaos.FaultLatency > 0 {
		kinds = 6
	}
	status := serverErrors[s.chaosRng.IntN(len(serverErrors))]
	switch s.chaosRng.IntN(kinds) {
	case 0:
		return Fault{Status: status}
	case 1:
		return Fault{Status: http.StatusTooManyRequests, RetryAfter: "1"}
	case 2:
		return Fault{Drop: true}
	case 3:
		return Fault{Drop: true, Apply: true}
	case 4:
		return Fault{Status: status, Apply: true}
	default:
		// At least 1 ns, so the request is recorded as delayed.
		return Fault{Latency: 1 + s.jitterLocked(s.chaos.FaultLatency-1)}
	}
}
