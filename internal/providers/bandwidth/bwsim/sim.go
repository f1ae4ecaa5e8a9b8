package bwsim

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Sim is a stateful simulator of Bandwidth's Catapult v1 voice API: calls, transfers, bridges
// and callbacks. All its methods are safe for concurrent use.
type Sim struct {
	// cfg is the configuration; its Guesses fields change under mu (SetGuesses), and are
	// read under mu.
	cfg   Config
	owned map[string]bool
	// initial are the Guesses of the Config New was given, which ResetGuesses puts back.
	initial Guesses

	// wg counts every goroutine the simulator started (async steps, timers that may still
	// fire, callback workers) so Close can wait for them.
	wg sync.WaitGroup

	mu       sync.Mutex
	baseURL  string // SetBaseURL or Config.BaseURL
	seenBase string // derived from the latest API request, for callbacks' callUri
	gen      uint64 // bumped by Reset so stale async work does nothing
	closed   bool
	seq      uint64
	calls    map[string]*call
	bridges  map[string]*bridge
	// behaviours maps a dialled number to how it reacts.
	behaviours map[string]Behaviour
	faults     []*faultSlot
	requests   []Request
	callbacks  []Callback
	// callStamps and reqStamps are the accepted requests of the last second, oldest first.
	callStamps, reqStamps []time.Time
	timers                map[*timerTok]struct{}
	// pending counts zero-delay async steps and queued or in-flight callbacks: WaitIdle's
	// condition.
	pending int
	queues  map[string]*cbQueue // callback queues by call id, so a call's events stay ordered
	changed chan struct{}       // closed and replaced on every state change
	ctx     context.Context     // cancelled by Reset and Close to abort callback deliveries
	cancel  context.CancelFunc

	// adv is the adversarial profile in force (Config's adversarial fields, or what
	// SetAdversity set since) and rng its seeded source of randomness; both under mu.
	adv adversity
	rng *mrand.Rand
	// actions logs accepted actions; delayed holds those not applied yet, unlisted the
	// created calls that listings do not show yet, each with its timer.
	actions    []*action
	actionSeq  uint64 // acceptance order of actions
	actionDone uint64 // order in which actions were applied or dropped
	delayed    map[*action]struct{}
	unlisted   map[string]*timerTok
}

type call struct {
	Call
	seq uint64
	// peer is the other leg of a transfer whose B-leg answered: the two hear each other.
	peer   string
	timers []*timerTok
	events []callEvent
	// tags is every tag the call ever carried, for the ground truth: an engine may re-tag.
	tags []string
	// vanished hides the call from every API request (Config.VanishFailedLegs).
	vanished bool
}

func (c *call) live() bool { return c.State == StateActive || c.State == StateTransferring }

type bridge struct {
	Bridge
	seq      uint64
	hadCalls bool
}

type callEvent struct {
	ID   string `json:"id"`
	Time string `json:"time"`
	Name string `json:"name"`
	Data string `json:"data,omitempty"`
}

type timerTok struct{ t *time.Timer }

// New returns a simulator. It panics if cfg.Validate fails: a bad Config is a programming
// error (callers that build it from input call Validate first).
func New(cfg Config) *Sim {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	s := &Sim{
		cfg:     cfg,
		owned:   make(map[string]bool, len(cfg.OwnedNumbers)),
		initial: cfg.guesses(),
		baseURL: cfg.BaseURL,
		changed: make(chan struct{}),
	}
	for _, n := range cfg.OwnedNumbers {
		s.owned[n] = true
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.setAdversityLocked(cfg.adversity())
	s.clearLocked()
	return s
}

// clearLocked empties every piece of state (not the configuration).
func (s *Sim) clearLocked() {
	s.calls = make(map[string]*call)
	s.bridges = make(map[string]*bridge)
	s.behaviours = make(map[string]Behaviour)
	s.faults = nil
	s.requests = nil
	s.callbacks = nil
	s.callStamps, s.reqStamps = nil, nil
	s.timers = make(map[*timerTok]struct{})
	s.queues = make(map[string]*cbQueue)
	// The timers of delayed actions and listings are in s.timers and were stopped with them.
	s.actions = nil
	s.actionSeq, s.actionDone = 0, 0
	s.delayed = make(map[*action]struct{})
	s.unlisted = make(map[string]*timerTok)
}

// Handler serves the v1 API under "/v1/" and the control surface under "/sim/": the layout
// of demo mode and of a standalone simulator.
func (s *Sim) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/", http.StripPrefix("/v1", s.APIHandler()))
	mux.Handle("/sim/", http.StripPrefix("/sim", s.ControlHandler()))
	return mux
}

// SetBaseURL sets the external base of the API (as Config.BaseURL), for servers whose
// address is known only after the Sim was created, such as httptest servers.
func (s *Sim) SetBaseURL(base string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.baseURL = strings.TrimSuffix(base, "/")
}

// Close stops timers and callback deliveries and waits for the simulator's goroutines. The
// handlers keep answering afterwards, but nothing asynchronous happens any more.
func (s *Sim) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.cancel()
	s.stopAsyncLocked()
	s.notifyLocked()
	s.mu.Unlock()
	s.wg.Wait()
}

// Reset forgets every call, bridge, behaviour, fault, request, callback and action, and
// cancels pending timers and deliveries. The configuration, the adversarial profile in force
// and base URL stay; the profile's randomness is re-seeded, so a run after Reset replays.
func (s *Sim) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setAdversityLocked(s.adv)
	s.gen++
	s.stopAsyncLocked()
	if !s.closed {
		s.cancel()
		s.ctx, s.cancel = context.WithCancel(context.Background())
	}
	s.clearLocked()
	s.notifyLocked()
}

// stopAsyncLocked stops every timer and drops queued callbacks. Work already running finishes
// and sees the bumped generation or the closed flag.
func (s *Sim) stopAsyncLocked() {
	for tok := range s.timers {
		s.stopTimerLocked(tok)
	}
	for id, q := range s.queues {
		s.pending -= len(q.items)
		delete(s.queues, id)
	}
}

// notifyLocked wakes everyone waiting in WaitFor.
func (s *Sim) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Changed returns a channel that is closed at the next state change (a request handled, a
// timer fired, a callback attempted, ...). Take it before checking a condition, then wait on
// it, to never miss a change.
func (s *Sim) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// WaitFor returns when cond reports true, re-checking it after every state change, or with
// ctx's error. cond must not block; it may call the Sim's methods.
func (s *Sim) WaitFor(ctx context.Context, cond func() bool) error {
	for {
		ch := s.Changed()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("bwsim: wait: %w", ctx.Err())
		}
	}
}

// WaitIdle returns when no zero-delay asynchronous work is pending: legs that answer, are
// busy or reject at once have done so, and every queued callback has been attempted. Timers
// with a delay (Behaviour "after", ring timeouts) are not waited for; use WaitFor or
// WaitCallState for those.
func (s *Sim) WaitIdle(ctx context.Context) error {
	return s.WaitFor(ctx, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.pending == 0
	})
}

// WaitCallState waits until the call is in one of states and returns it.
func (s *Sim) WaitCallState(ctx context.Context, id string, states ...string) (Call, error) {
	var c Call
	err := s.WaitFor(ctx, func() bool {
		var ok bool
		c, ok = s.Call(id)
		return ok && slices.Contains(states, c.State)
	})
	if err != nil {
		return c, fmt.Errorf("bwsim: call %s in state %q, want %v: %w", id, c.State, states, err)
	}
	return c, nil
}

// soonLocked runs fn under s.mu on another goroutine as soon as possible, unless the
// simulator is reset or closed in between. It is what makes the legs' reactions asynchronous
// (the API answers 201 before a leg answers), and WaitIdle waits for it.
func (s *Sim) soonLocked(fn func()) {
	if s.closed {
		return
	}
	s.pending++
	s.wg.Add(1)
	gen := s.gen
	go func() {
		defer s.wg.Done()
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed && s.gen == gen {
			fn()
		}
		s.pending--
		s.notifyLocked()
	}()
}

// afterLocked runs fn under s.mu after d, unless the timer is stopped first. d <= 0 means
// soonLocked (and a nil token).
func (s *Sim) afterLocked(d time.Duration, fn func()) *timerTok {
	if s.closed {
		return nil
	}
	if d <= 0 {
		s.soonLocked(fn)
		return nil
	}
	tok := &timerTok{}
	s.timers[tok] = struct{}{}
	s.wg.Add(1)
	// tok.t is assigned under s.mu and the function reads it only under s.mu.
	tok.t = time.AfterFunc(d, func() {
		defer s.wg.Done()
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.timers[tok]; !ok {
			return // stopped while this function waited for the lock
		}
		delete(s.timers, tok)
		fn()
		s.notifyLocked()
	})
	return tok
}

func (s *Sim) stopTimerLocked(tok *timerTok) {
	if tok == nil {
		return
	}
	if _, ok := s.timers[tok]; !ok {
		return
	}
	delete(s.timers, tok)
	if tok.t.Stop() {
		s.wg.Done() // the function will never run to do it
	}
}

func (s *Sim) now() time.Time { return s.cfg.Now().UTC() }

func (s *Sim) nextSeq() uint64 {
	s.seq++
	return s.seq
}

// newID returns prefix + 20 lowercase base32 characters, like the documented "c-..." and
// "brg-..." ids.
func newID(prefix string) string {
	return prefix + strings.ToLower(rand.Text()[:20])
}

// owns reports whether the account owns the number (see Config.OwnedNumbers).
func (s *Sim) owns(number string) bool {
	if len(s.owned) == 0 {
		return isE164(number)
	}
	return s.owned[number]
}

// callbackBaseLocked is the absolute API base for URLs built outside a request.
func (s *Sim) callbackBaseLocked() string {
	switch {
	case s.baseURL != "":
		return s.baseURL
	case s.seenBase != "":
		return s.seenBase
	default:
		return "http://localhost/v1"
	}
}

// appendCapped appends v, dropping the older half when the log is full, so appends stay
// cheap in load tests.
func appendCapped[T any](log []T, v T, limit int) []T {
	if len(log) >= limit {
		keep := limit / 2
		log = append(log[:0], log[len(log)-keep:]...)
	}
	return append(log, v)
}

// Call returns a snapshot of the call.
func (s *Sim) Call(id string) (Call, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.calls[id]
	if !ok {
		return Call{}, false
	}
	return c.Call.clone(), true
}

// Calls returns snapshots of every call, oldest first.
func (s *Sim) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, 0, len(s.calls))
	for _, c := range s.sortedCallsLocked() {
		out = append(out, c.Call.clone())
	}
	return out
}

func (s *Sim) sortedCallsLocked() []*call {
	cs := make([]*call, 0, len(s.calls))
	for _, c := range s.calls {
		cs = append(cs, c)
	}
	slices.SortFunc(cs, func(a, b *call) int { return cmp.Compare(a.seq, b.seq) })
	return cs
}

// Bridge returns a snapshot of the bridge.
func (s *Sim) Bridge(id string) (Bridge, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.bridges[id]
	if !ok {
		return Bridge{}, false
	}
	return b.Bridge.clone(), true
}

// Bridges returns snapshots of every bridge, oldest first.
func (s *Sim) Bridges() []Bridge {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Bridge, 0, len(s.bridges))
	for _, b := range s.sortedBridgesLocked() {
		out = append(out, b.Bridge.clone())
	}
	return out
}

func (s *Sim) sortedBridgesLocked() []*bridge {
	bs := make([]*bridge, 0, len(s.bridges))
	for _, b := range s.bridges {
		bs = append(bs, b)
	}
	slices.SortFunc(bs, func(a, b *bridge) int { return cmp.Compare(a.seq, b.seq) })
	return bs
}

// Connected reports whether the two calls hear each other: both are up and they share a
// bridge with bridgeAudio true, or one was transferred to the other and the B-leg answered.
func (s *Sim) Connected(a, b string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connectedLocked(a, b)
}

func (s *Sim) connectedLocked(a, b string) bool {
	ca, cb := s.calls[a], s.calls[b]
	if ca == nil || cb == nil || a == b || !ca.live() || !cb.live() {
		return false
	}
	if ca.peer == b && cb.peer == a {
		return true
	}
	if ca.BridgeID == "" || ca.BridgeID != cb.BridgeID {
		return false
	}
	br := s.bridges[ca.BridgeID]
	return br != nil && br.BridgeAudio && br.State != BridgeCompleted
}

// Held reports whether the call is up and on hold: in a bridge with bridgeAudio false, or
// alone in a bridge.
func (s *Sim) Held(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.heldLocked(id)
}

func (s *Sim) heldLocked(id string) bool {
	c := s.calls[id]
	if c == nil || !c.live() || c.BridgeID == "" {
		return false
	}
	br := s.bridges[c.BridgeID]
	return br != nil && (!br.BridgeAudio || len(br.CallIDs) == 1)
}

// SetBehaviour sets how the number reacts when dialled. An unknown mode behaves as
// ModeAnswer (the control surface rejects it). Reset forgets every behaviour.
func (s *Sim) SetBehaviour(number string, b Behaviour) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.behaviours[number] = b
	s.notifyLocked()
}

// Requests returns every recorded API request, oldest first.
func (s *Sim) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// ResetRequests forgets the recorded API requests.
func (s *Sim) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
	s.notifyLocked()
}

// Callbacks returns every attempted callback delivery, in the order they finished.
func (s *Sim) Callbacks() []Callback {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.callbacks)
}
