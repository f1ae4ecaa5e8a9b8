package nssim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
)

// Errors of the Go control API. The control surface maps them to 404, 409 and 400.
var (
	ErrNotFound   = errors.New("nssim: not found")
	ErrNotRinging = errors.New("nssim: nothing is ringing")
	ErrInvalid    = errors.New("nssim: invalid argument")
)

// Behaviour modes: how a user's device reacts when it rings.
const (
	ModeAnswer = "answer" // answers at once (the default)
	ModeAfter  = "after"  // answers after Behaviour.Delay, or Config.AnswerDelay
	ModeNever  = "never"  // rings until RingTimeout, then the session ends with EndNoAnswer
	ModeBusy   = "busy"   // the leg fails at once; the session ends with EndBusy
	ModeReject = "reject" // the leg is declined at once; the session ends with EndRejected
	ModeManual = "manual" // rings until Sim.Answer or PATCH .../answer (or RingTimeout)
)

// Behaviour is how a user's device reacts when it rings. The zero value answers at once.
type Behaviour struct {
	Mode  string
	Delay time.Duration // for ModeAfter; 0 uses Config.AnswerDelay
}

func validMode(m string) bool {
	switch m {
	case "", ModeAnswer, ModeAfter, ModeNever, ModeBusy, ModeReject, ModeManual:
		return true
	}
	return false
}

// InboundCall is a call from outside the PBX routed to a user.
type InboundCall struct {
	Domain string // default "TEST"
	User   string // required: the user the call is routed to
	From   string // the caller's number; default "15555555555"
	To     string // the dialled number; default "11111111111"
	// Ring makes the user's device ring per its Behaviour instead of the call arriving
	// answered, so clients can exercise answer and reject on inbound calls.
	Ring bool
}

// Sim is a stateful NetSapiens NS API v2 live-calls simulator. All methods are safe for
// concurrent use.
type Sim struct {
	cfg    Config
	render renderOptions
	// initial are the Guesses of the Config New was given, which ResetGuesses puts back.
	initial Guesses

	// chaos is the Chaos in force (cfg.Chaos is only the initial one); chaosRng draws its
	// random choices.
	chaos     Chaos
	chaosRng  *rand.Rand
	chaosSeed uint64

	mu         sync.Mutex
	rng        *rand.Rand
	idSeq      uint64
	sessionSeq uint64
	nextCore   int
	sessions   map[string]*session   // by call-session-id
	byCallID   map[string][]*session // by every live leg Call-ID; several with DuplicateCallIDs
	// inDomain holds, per lower-cased domain, every live session that has been visible in it
	// (a superset: a replaced leg may have taken the session out of a domain), so that a
	// domain's listing costs its own calls, not every call on the PBX.
	inDomain map[string]map[*session]struct{}
	// creating holds the call-ids of accepted CallRequests whose session does not exist yet,
	// so a duplicate is refused in that window too.
	creating map[string]bool
	ended    []EndedSession
	// callIDs counts the sessions created with each CallRequest call-id, for Truth; order
	// keeps first-seen order so the history can be bounded like the others.
	callIDs     map[string]*callIDStats
	callIDOrder []string
	// callIDTrimAt is the length of callIDOrder at which it is trimmed next (at least twice
	// HistoryLimit).
	callIDTrimAt int
	behaviours   map[string]Behaviour
	faults       []*faultState
	requests     []*Request

	timers    map[uint64]*simTimer
	timerSeq  uint64
	immediate int             // timers due without delay that have not run yet
	pending   int             // accepted (202) actions not applied yet, however late
	actions   []*queuedAction // the pending actions, by due time then acceptance order
	actionSeq uint64
	changed   chan struct{} // closed and replaced on every state change
	closed    bool

	// Event subscriptions (subscriptions.go), in creation order; posting says the delivery
	// loop runs, stopPoster ends it.
	subs       map[string]*subscription
	subOrder   []string
	posting    bool
	stopPoster func()
	// subWrites are the subscription writes answered and not applied yet
	// (Config.SubscriptionWriteDelay), in the order they were answered.
	subWrites []*queuedAction
}

// queuedAction is an accepted action waiting for its time.
type queuedAction struct {
	due time.Time
	seq uint64
	fn  func()
}

type simTimer struct {
	t         *time.Timer
	immediate bool
}

// New returns a simulator. It panics if cfg.Validate fails; validate first when cfg comes
// from outside input.
func New(cfg Config) *Sim {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &Sim{
		cfg:     cfg,
		render:  renderOptions{termInfoField: cfg.TermInfoField, numericUsers: cfg.NumericUsers, heldInfo: cfg.HeldInfo},
		initial: cfg.guesses(),
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		timers:  make(map[uint64]*simTimer),
		changed: make(chan struct{}),
		chaos:   cfg.Chaos,
	}
	s.seedChaosLocked(seed)
	s.clearLocked()
	return s
}

func (s *Sim) clearLocked() {
	s.sessions = make(map[string]*session)
	s.subs = make(map[string]*subscription)
	s.subOrder = nil
	s.byCallID = make(map[string][]*session)
	s.inDomain = make(map[string]map[*session]struct{})
	s.callIDs = make(map[string]*callIDStats)
	s.callIDOrder = nil
	s.callIDTrimAt = 0
	s.creating = make(map[string]bool)
	s.ended = nil
	s.behaviours = make(map[string]Behaviour)
	s.faults = nil
	s.requests = nil
	s.nextCore = 0
}

// Close stops every pending timer; actions accepted afterwards never take effect. It is safe
// to call more than once.
func (s *Sim) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.stopTimersLocked()
	if s.stopPoster != nil {
		s.stopPoster()
	}
}

// Reset forgets all calls, ended sessions, behaviours, faults and recorded requests, and
// stops pending timers. Generated ids keep counting so ids are never reused.
func (s *Sim) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopTimersLocked()
	s.clearLocked()
	s.notifyLocked()
}

// WaitIdle blocks until every action that is due without delay has been applied: 202 actions
// when ActionDelay is 0, and the devices that answer, are busy or reject at once. Actions
// with a delay (ActionDelay, ModeAfter, RingTimeout) are not waited for; use Wait with a
// condition for those.
func (s *Sim) WaitIdle(ctx context.Context) error {
	return s.waitFor(ctx, func() bool { return s.immediate == 0 })
}

// Wait blocks until cond returns true, re-checking it after every change of the simulator's
// state (calls, timers, recorded requests). cond runs without the simulator's lock, so it
// may call any method of Sim.
func (s *Sim) Wait(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		// Taking the channel before checking means a change between the check and the
		// select still wakes us.
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("nssim: wait: %w", ctx.Err())
		}
	}
}

// waitFor is Wait for a condition on state that must be read under the lock.
func (s *Sim) waitFor(ctx context.Context, condLocked func() bool) error {
	for {
		s.mu.Lock()
		ok, ch := condLocked(), s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("nssim: wait: %w", ctx.Err())
		}
	}
}

// notifyLocked wakes every waiter.
func (s *Sim) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// afterLocked runs fn under the lock after d and returns a handle for cancelLocked. Nothing
// is scheduled once the simulator is closed.
func (s *Sim) afterLocked(d time.Duration, fn func()) uint64 {
	if s.closed {
		return 0
	}
	s.timerSeq++
	id := s.timerSeq
	t := &simTimer{immediate: d <= 0}
	if t.immediate {
		s.immediate++
	}
	s.timers[id] = t
	t.t = time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		// A timer stopped by Reset or Close may already have fired and be waiting for the
		// lock; its absence from the map is what cancels it.
		if _, ok := s.timers[id]; !ok {
			return
		}
		delete(s.timers, id)
		fn()
		// Decrement only after fn, so follow-up actions fn schedules keep WaitIdle waiting.
		if t.immediate {
			s.immediate--
		}
		s.notifyLocked()
	})
	return id
}

func (s *Sim) cancelLocked(id uint64) {
	t, ok := s.timers[id]
	if !ok {
		return
	}
	t.t.Stop()
	delete(s.timers, id)
	if t.immediate {
		s.immediate--
	}
	s.notifyLocked()
}

func (s *Sim) stopTimersLocked() {
	for id, t := range s.timers {
		t.t.Stop()
		delete(s.timers, id)
	}
	s.immediate = 0
	s.pending = 0
	s.actions = nil
	s.subWrites = nil
	s.notifyLocked()
}

// actionLocked applies an accepted (202) action after ActionDelay, plus a random extra of up
// to Chaos.ActionJitter.
//
// Actions are applied in the order of their due times, and in acceptance order when those
// are equal, whichever timer fires first: each timer applies every action that is due. So
// without jitter two actions on one call are applied in the order they were accepted (the Go
// runtime gives no order between timers that expire together), and with it they are
// reordered exactly when their drawn delays say so.
func (s *Sim) actionLocked(fn func()) {
	if s.closed {
		return
	}
	d := s.cfg.ActionDelay + s.jitterLocked(s.chaos.ActionJitter)
	s.actionSeq++
	a := &queuedAction{due: time.Now().Add(d), seq: s.actionSeq, fn: fn}
	i, _ := slices.BinarySearchFunc(s.actions, a, func(x, y *queuedAction) int {
		if c := x.due.Compare(y.due); c != 0 {
			return c
		}
		return cmp.Compare(x.seq, y.seq)
	})
	s.actions = slices.Insert(s.actions, i, a)
	s.pending++
	s.afterLocked(d, s.applyDueActionsLocked)
}

// applyDueActionsLocked applies, in order, every queued action whose time has come.
func (s *Sim) applyDueActionsLocked() {
	now := time.Now()
	for len(s.actions) > 0 && !s.actions[0].due.After(now) {
		a := s.actions[0]
		s.actions[0] = nil
		s.actions = s.actions[1:]
		s.pending--
		a.fn()
	}
}

// WaitApplied blocks until every accepted (202) action has been applied, however late
// (ActionDelay, Chaos.ActionJitter), and every subscription write (SubscriptionWriteDelay).
// Ringing, ring timeouts and listing delays are not actions and are not waited for.
func (s *Sim) WaitApplied(ctx context.Context) error {
	return s.waitFor(ctx, func() bool { return s.pending == 0 && len(s.subWrites) == 0 })
}

// --- ids -------------------------------------------------------------------------------------

// newIDLocked returns a 20-digit id shaped like NetSapiens' (a timestamp and a counter), e.g.
// 20220119004825004744.
func (s *Sim) newIDLocked() string {
	s.idSeq++
	return s.cfg.Now().UTC().Format("20060102150405") + fmt.Sprintf("%06d", s.idSeq%1_000_000)
}

// newLegIDLocked returns a NetSapiens-generated leg Call-ID: <20 digits>-<32 hex>.
func (s *Sim) newLegIDLocked() string {
	return fmt.Sprintf("%s-%016x%016x", s.newIDLocked(), s.rng.Uint64(), s.rng.Uint64())
}

// newDeviceCallIDLocked returns a Call-ID as a SIP device or gateway sends it.
func (s *Sim) newDeviceCallIDLocked() string {
	return fmt.Sprintf("0_%010d@%s", s.rng.Uint32(), gatewayIP)
}

// gatewayIP is where simulated PSTN calls come from (TEST-NET-1, never routable).
const gatewayIP = "192.0.2.10"

func (s *Sim) nextCoreLocked() string {
	c := s.cfg.CoreServers[s.nextCore%len(s.cfg.CoreServers)]
	s.nextCore++
	return c
}

// --- session bookkeeping ----------------------------------------------------------------------

func (s *Sim) addSessionLocked(sess *session) {
	s.sessionSeq++
	sess.seq = s.sessionSeq
	s.sessions[sess.id] = sess
	s.indexDomainLocked(sess, sess.domain)
	s.indexDomainLocked(sess, sess.byDomain)
	for _, l := range sess.legs {
		s.indexLegLocked(sess, l)
	}
	s.notifyLocked()
}

// indexDomainLocked files sess under domain in inDomain and remembers it, so that endLocked
// can take it out of every domain it was filed under.
func (s *Sim) indexDomainLocked(sess *session, domain string) {
	if domain == "" {
		return
	}
	d := strings.ToLower(domain)
	if slices.Contains(sess.domains, d) {
		return
	}
	sess.domains = append(sess.domains, d)
	set := s.inDomain[d]
	if set == nil {
		set = make(map[*session]struct{})
		s.inDomain[d] = set
	}
	set[sess] = struct{}{}
}

func (s *Sim) indexLegLocked(sess *session, l *leg) {
	s.indexDomainLocked(sess, l.domain)
	if l.callID != "" && !slices.Contains(s.byCallID[l.callID], sess) {
		s.byCallID[l.callID] = append(s.byCallID[l.callID], sess)
	}
}

func (s *Sim) unindexLegLocked(sess *session, l *leg) {
	s.unindexCallIDLocked(sess, l.callID)
	s.cancelLocked(l.ringTimer)
	l.ringTimer = 0
}

func (s *Sim) unindexCallIDLocked(sess *session, id string) {
	if id == "" {
		return
	}
	list := slices.DeleteFunc(s.byCallID[id], func(o *session) bool { return o == sess })
	if len(list) == 0 {
		delete(s.byCallID, id)
	} else {
		s.byCallID[id] = list
	}
}

// aliasLocked makes id address sess although no leg of it carries id.
func (s *Sim) aliasLocked(sess *session, id string) {
	sess.aliases = append(sess.aliases, id)
	if !slices.Contains(s.byCallID[id], sess) {
		s.byCallID[id] = append(s.byCallID[id], sess)
	}
}

// setLegLocked replaces one end of a session.
func (s *Sim) setLegLocked(sess *session, sd side, l *leg) {
	s.unindexLegLocked(sess, sess.legs[sd])
	sess.legs[sd] = l
	s.indexLegLocked(sess, l)
}

func (s *Sim) liveLocked(sess *session) bool {
	return sess != nil && s.sessions[sess.id] == sess
}

// endLocked removes a session and records why.
func (s *Sim) endLocked(sess *session, reason EndReason, detail string) {
	if !s.liveLocked(sess) {
		return
	}
	for _, l := range sess.legs {
		s.unindexLegLocked(sess, l)
	}
	for _, id := range sess.aliases {
		s.unindexCallIDLocked(sess, id)
	}
	s.cancelLocked(sess.listTimer)
	sess.listTimer = 0
	delete(s.sessions, sess.id)
	for _, d := range sess.domains {
		if set := s.inDomain[d]; set != nil {
			delete(set, sess)
			if len(set) == 0 {
				delete(s.inDomain, d)
			}
		}
	}
	s.ended = appendBounded(s.ended, EndedSession{
		Call: sess.record(s.render), Reason: reason, Detail: detail, Time: s.cfg.Now(), Listed: sess.listed,
	}, s.cfg.HistoryLimit)
	s.notifyLocked()
}

// appendBounded appends v and drops the oldest entries beyond limit (0 = unbounded).
func appendBounded[T any](list []T, v T, limit int) []T {
	list = append(list, v)
	// Trim only once the list holds twice the limit, so that dropping the
	// oldest entries costs O(1) per append instead of a copy of the list
	// every time (which dominated long load tests).
	if limit > 0 && len(list) >= 2*limit {
		list = slices.Clone(list[len(list)-limit:])
	}
	return list
}

// newest returns the last limit entries of a list kept by appendBounded
// (all of them when limit is 0).
func newest[T any](list []T, limit int) []T {
	if limit > 0 && len(list) > limit {
		return list[len(list)-limit:]
	}
	return list
}

// sortedLocked returns the live sessions that pass keep, oldest first. keep must pass only
// sessions visible in domain ("" or "*" = every domain), which then narrows the search.
func (s *Sim) sortedLocked(domain string, keep func(*session) bool) []*session {
	var out []*session
	if domain == "" || domain == "*" {
		for _, sess := range s.sessions {
			if keep(sess) {
				out = append(out, sess)
			}
		}
	} else {
		for sess := range s.inDomain[strings.ToLower(domain)] {
			if keep(sess) {
				out = append(out, sess)
			}
		}
	}
	slices.SortFunc(out, func(a, b *session) int { return cmp.Compare(a.seq, b.seq) })
	return out
}

func (s *Sim) recordsLocked(list []*session) []ActiveCall {
	out := make([]ActiveCall, 0, len(list))
	for _, sess := range list {
		out = append(out, sess.record(s.render))
	}
	return out
}

func behaviourKey(domain, user string) string {
	return strings.ToLower(domain) + "\x00" + user
}

func (s *Sim) behaviourLocked(domain, user string) Behaviour {
	if b, ok := s.behaviours[behaviourKey(domain, user)]; ok {
		return b
	}
	return s.cfg.DefaultBehaviour
}

// --- Go control API -----------------------------------------------------------------------------

// PlaceCall delivers an inbound call from a PSTN number to a user. By default the user has
// answered it: the session has both legs active. With in.Ring the user's leg rings per the
// user's Behaviour instead.
func (s *Sim) PlaceCall(in InboundCall) (ActiveCall, error) {
	if in.User == "" {
		return ActiveCall{}, fmt.Errorf("%w: inbound call needs a user", ErrInvalid)
	}
	if in.Domain == "" {
		in.Domain = "TEST"
	}
	if in.From == "" {
		in.From = "15555555555"
	}
	if in.To == "" {
		in.To = "11111111111"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	// A PSTN caller has no user or domain of its own [C-doc spec example: orig_user "",
	// orig_domain ""]; the gateway is what it matched.
	orig := &leg{
		callID: s.newDeviceCallIDLocked(),
		uri:    "sip:" + in.From + "@" + gatewayIP,
		match:  "sip:*@" + gatewayIP,
		name:   in.From,
		info:   InfoActive,
		number: in.From,
	}
	term := userLeg(in.User, in.Domain)
	term.callID = s.newLegIDLocked()
	term.info = InfoActive
	sess := &session{
		id:       s.newIDLocked(),
		core:     s.nextCoreLocked(),
		domain:   in.Domain,
		legs:     [2]*leg{orig, term},
		callerID: in.From,
		dialed:   in.To,
		start:    now,
		codec:    "PCMU",
		listed:   true,
	}
	if in.Ring {
		term.info = InfoAlerting
	} else {
		sess.answered = now
	}
	s.addSessionLocked(sess)
	if in.Ring {
		s.ringLocked(sess, termSide)
	}
	return sess.record(s.render), nil
}

// SetBehaviour sets how user@domain's device reacts when it rings from now on. Legs already
// ringing keep their course. An unknown mode behaves as ModeAnswer.
func (s *Sim) SetBehaviour(domain, user string, b Behaviour) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.behaviours[behaviourKey(domain, user)] = b
}

// Answer answers every leg of user@domain that is ringing now.
func (s *Sim) Answer(domain, user string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	type ringing struct {
		sess *session
		sd   side
	}
	var found []ringing
	for _, sess := range s.sessions {
		for _, sd := range []side{origSide, termSide} {
			if l := sess.leg(sd); l.info == InfoAlerting && l.is(domain, user) {
				found = append(found, ringing{sess, sd})
			}
		}
	}
	if len(found) == 0 {
		return fmt.Errorf("%w: no leg of %s@%s", ErrNotRinging, user, domain)
	}
	for _, r := range found {
		s.answerLegLocked(r.sess, r.sd)
	}
	return nil
}

// Hangup makes a party of a session hang up ("orig" or "term"); the session ends with
// EndHangup.
func (s *Sim) Hangup(sessionID string, party string) error {
	if party != "orig" && party != "term" {
		return fmt.Errorf("%w: party %q is neither orig nor term", ErrInvalid, party)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[sessionID]
	if !ok {
		return fmt.Errorf("%w: session %s", ErrNotFound, sessionID)
	}
	s.endLocked(sess, EndHangup, party+" party hung up")
	return nil
}

// Sessions returns the live sessions of domain ("" = every domain), oldest first, including
// those the API does not list yet (Chaos.ListingDelay): it is the PBX's own view.
func (s *Sim) Sessions(domain string) []ActiveCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recordsLocked(s.sortedLocked(domain, func(sess *session) bool { return sess.visibleIn(domain) }))
}

// Ended returns the sessions that have ended, oldest first.
func (s *Sim) Ended() []EndedSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]EndedSession{}, newest(s.ended, s.cfg.HistoryLimit)...)
}
