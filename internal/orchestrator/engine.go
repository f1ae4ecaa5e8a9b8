package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Config tunes the engine. Zero values take the defaults below.
type Config struct {
	// ConsultTimeout applies to requests that do not name their own.
	ConsultTimeout time.Duration
	// MaxConsultTimeout bounds what a request may ask for.
	MaxConsultTimeout time.Duration
	// PollInterval is the first wait between observations of the provider;
	// it doubles up to PollMaxInterval.
	PollInterval    time.Duration
	PollMaxInterval time.Duration
	// StepTimeout bounds one provider step.
	StepTimeout time.Duration
	// VerifyTimeout bounds the wait for a join to show at the provider.
	VerifyTimeout time.Duration
	// CompensationTimeout bounds all undos of one transfer; undos run on a
	// context detached from shutdown so that a caller is never left held.
	CompensationTimeout time.Duration

	// Owner names this process among replicas sharing a store. A process
	// restarted with the same Owner reclaims its transfers at once; others
	// are taken over when their lease expires. Default "local".
	Owner string
	// LeaseTTL bounds how long a stopped replica's transfers wait to be
	// taken over: a lease runs LeaseTTL/2 past its last renewal, and
	// replicas renew theirs and look for expired ones every LeaseTTL/4
	// (see Open), so takeover comes at most 3/4 LeaseTTL after a replica
	// stops, and a live owner has two chances to renew before expiry.
	LeaseTTL time.Duration
	// Retention keeps terminal transfers this long before Purge (Open's
	// maintenance loop, every PurgeInterval).
	Retention     time.Duration
	PurgeInterval time.Duration
	// CrashPoint, when set, is called at every step boundary with a name
	// such as "hold:intent", "hold:effect", "hold:result" or
	// "state:consulting". The crash tests kill the process there; it is
	// nil in production.
	CrashPoint func(t *Transfer, point string)
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ConsultTimeout, 30*time.Second)
	def(&c.MaxConsultTimeout, 10*time.Minute)
	def(&c.PollInterval, 250*time.Millisecond)
	def(&c.PollMaxInterval, 2*time.Second)
	def(&c.StepTimeout, 15*time.Second)
	def(&c.VerifyTimeout, 15*time.Second)
	def(&c.CompensationTimeout, 30*time.Second)
	def(&c.LeaseTTL, 15*time.Second)
	def(&c.Retention, 7*24*time.Hour)
	def(&c.PurgeInterval, time.Hour)
	if c.Owner == "" {
		c.Owner = "local"
	}
}

// Engine runs transfers: it validates and creates them, drives each one
// through the state machine in its own goroutine, and applies client
// signals. It is the only writer of the transfers it runs.
type Engine struct {
	cfg       Config
	store     Store
	providers map[string]Provider
	log       zerolog.Logger
	m         *metrics
	now       func() time.Time

	// hard is cancelled only when shutdown runs out of time; provider calls
	// use it so that a graceful shutdown lets steps finish.
	hard       context.Context
	cancelHard context.CancelFunc
	stop       chan struct{} // closed when shutdown starts
	wg         sync.WaitGroup

	mu       sync.Mutex
	stopping bool
	runs     map[string]*run
	watch    map[string]*watcher
}

// watcher is the channel closed on a transfer's next saved change, shared
// by every Wait on that transfer.
type watcher struct {
	ch chan struct{}
	n  int // waiters holding ch
}

// New returns an engine. Providers are addressed by their Name().
func New(cfg Config, store Store, providers []Provider, log zerolog.Logger, reg prometheus.Registerer) (*Engine, error) {
	cfg.setDefaults()
	if cfg.ConsultTimeout > cfg.MaxConsultTimeout {
		return nil, fmt.Errorf("orchestrator: consult timeout %s exceeds the maximum %s", cfg.ConsultTimeout, cfg.MaxConsultTimeout)
	}
	byName := make(map[string]Provider, len(providers))
	for _, p := range providers {
		if _, dup := byName[p.Name()]; dup {
			return nil, fmt.Errorf("orchestrator: provider %q registered twice", p.Name())
		}
		byName[p.Name()] = p
	}
	hard, cancel := context.WithCancel(context.Background())
	return &Engine{
		cfg: cfg, store: store, providers: byName, log: log, m: newMetrics(reg),
		now:  func() time.Time { return time.Now().UTC() },
		hard: hard, cancelHard: cancel, stop: make(chan struct{}),
		runs: map[string]*run{}, watch: map[string]*watcher{},
	}, nil
}

// Providers returns the configured provider names, sorted.
func (e *Engine) Providers() []string {
	names := make([]string, 0, len(e.providers))
	for n := range e.providers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Config returns the effective configuration.
func (e *Engine) Config() Config { return e.cfg }

// Validate applies defaults to r and checks everything that does not need
// I/O. The error has kind KindInvalid or KindUnsupported and names every
// bad field.
func (e *Engine) Validate(r *Request) error {
	bad := map[string]string{}
	unsupported := map[string]string{}
	if r.Completion == "" {
		r.Completion = CompletionAuto
	}
	if r.Mode == "" {
		r.Mode = ModeAttended
	}
	if r.ConsultTimeout == 0 {
		r.ConsultTimeout = e.cfg.ConsultTimeout
	}
	p, ok := e.providers[r.Provider]
	switch {
	case r.Provider == "":
		bad["provider"] = "is required; one of " + fmt.Sprint(e.Providers())
	case !ok:
		bad["provider"] = fmt.Sprintf("unknown provider %q; configured: %v", r.Provider, e.Providers())
	}
	if r.Target == "" {
		bad["target"] = "is required"
	}
	if r.Completion != CompletionAuto && r.Completion != CompletionManual {
		bad["completion"] = `must be "auto" or "manual"`
	}
	if r.Mode != ModeAttended && r.Mode != ModeAnnounced {
		bad["mode"] = `must be "attended" or "announced"`
	}
	if r.ConsultTimeout < time.Second || r.ConsultTimeout > e.cfg.MaxConsultTimeout {
		bad["consult_timeout"] = fmt.Sprintf("must be between 1s and %s", e.cfg.MaxConsultTimeout)
	}
	if ok {
		caps := p.Capabilities()
		need := func(field string, asked, can bool) {
			if asked && !can {
				unsupported[field] = fmt.Sprintf("is not supported by provider %s in mode %s", p.Name(), r.Mode)
			}
		}
		need("mode", r.Mode == ModeAnnounced, caps.Announced)
		need("mode", r.Mode == ModeAttended, caps.Attended)
		if mc, ok := p.(ModeCapabilities); ok {
			caps = mc.CapabilitiesFor(r.Mode)
		}
		need("caller_id", r.CallerID != "", caps.CallerID)
		need("whisper", r.Whisper != nil, caps.Whisper)
		need("diversion", r.Diversion != nil, caps.Diversion)
		need("recording", r.Recording != nil, caps.Recording)
		if r.Mode == ModeAnnounced && r.Completion == CompletionManual {
			bad["completion"] = `an announced transfer has no consult phase; use "auto"`
		}
		if len(unsupported) == 0 {
			for f, msg := range p.Validate(r) {
				bad[f] = msg
			}
		}
	}
	if len(unsupported) > 0 {
		return &Error{Op: "orchestrator.Validate", Kind: KindUnsupported, Fields: unsupported,
			Err: errors.New("the provider cannot honour an option of the request")}
	}
	if len(bad) > 0 {
		return &Error{Op: "orchestrator.Validate", Kind: KindInvalid, Fields: bad,
			Err: errors.New("the request is invalid")}
	}
	return nil
}

// Start validates r, saves a new transfer and starts driving it.
func (e *Engine) Start(ctx context.Context, r Request) (*Transfer, error) {
	if err := e.Validate(&r); err != nil {
		return nil, err
	}
	if !e.reserve() {
		return nil, E("orchestrator.Start", KindUnavailable, errors.New("transferd is shutting down"))
	}
	now := e.now()
	t := &Transfer{ID: NewID(now), Request: r, State: StatePending, CreatedAt: now, UpdatedAt: now,
		Owner: e.cfg.Owner, LeaseExpires: now.Add(e.lease())}
	if err := e.store.Create(ctx, t); err != nil {
		e.wg.Done()
		return nil, err
	}
	e.m.started.WithLabelValues(r.Provider).Inc()
	snapshot := t.Clone()
	e.launch(t)
	return snapshot, nil
}

// Get returns the saved transfer.
func (e *Engine) Get(ctx context.Context, id string) (*Transfer, error) {
	if !ValidID(id) {
		return nil, E("orchestrator.Get", KindNotFound, nil)
	}
	return e.store.Get(ctx, id)
}

// List returns saved transfers, newest first.
func (e *Engine) List(ctx context.Context, f ListFilter) ([]*Transfer, bool, error) {
	return e.store.List(ctx, f)
}

// Ready reports whether the engine can take transfers.
func (e *Engine) Ready(ctx context.Context) error {
	if e.isStopping() {
		return errors.New("shutting down")
	}
	return e.store.Ping(ctx)
}

// Complete asks a manual transfer in consulting, whose target answered, to
// join caller and target.
func (e *Engine) Complete(ctx context.Context, id string) (*Transfer, error) {
	return e.signal(ctx, id, SignalComplete)
}

// Cancel abandons a transfer that has not started completing: the consult
// leg is hung up and the caller taken off hold.
func (e *Engine) Cancel(ctx context.Context, id string) (*Transfer, error) {
	return e.signal(ctx, id, SignalCancel)
}

func (e *Engine) signal(ctx context.Context, id string, s Signal) (*Transfer, error) {
	op := "orchestrator." + string(s)
	t, err := e.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	switch s {
	case SignalComplete:
		switch {
		case t.State != StateConsulting:
			return t, &Error{Op: op, Kind: KindConflict, Err: fmt.Errorf("transfer is %s; only a transfer in consulting can be completed", t.State)}
		case t.Request.Completion != CompletionManual:
			return t, &Error{Op: op, Kind: KindConflict, Err: errors.New("transfer completes automatically; complete applies to completion \"manual\"")}
		case !t.Answered:
			return t, &Error{Op: op, Kind: KindConflict, Err: errors.New("the target has not answered yet")}
		}
	case SignalCancel:
		if t.State.Terminal() || t.State == StateCompleting || t.State == StateRecovering {
			return t, &Error{Op: op, Kind: KindConflict, Err: fmt.Errorf("transfer is %s and can no longer be cancelled", t.State)}
		}
	}
	// The signal goes through the store, so that it reaches the replica
	// that owns the transfer; a local runner is woken at once, a remote
	// one reads it on its next poll.
	if err := e.store.PutSignal(ctx, id, s); err != nil {
		if KindOf(err) == KindConflict {
			return t, &Error{Op: op, Kind: KindConflict, Err: errors.New("another signal is already pending")}
		}
		return t, err
	}
	e.Notify(id)
	return t, nil
}

// Notify wakes the runner of a transfer so that it observes the provider
// now; adapters' event receivers call it when a callback arrives.
func (e *Engine) Notify(id string) {
	e.mu.Lock()
	r := e.runs[id]
	e.mu.Unlock()
	if r != nil {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// Wait returns the transfer once until reports true, it is terminal, or
// ctx is done (then the latest record and no error).
func (e *Engine) Wait(ctx context.Context, id string, until func(*Transfer) bool) (*Transfer, error) {
	for {
		w := e.watchOn(id)
		t, err := e.current(ctx, id)
		if err != nil {
			e.unwatch(id, w)
			return nil, err
		}
		if t.State.Terminal() || until(t) {
			e.unwatch(id, w)
			return t, nil
		}
		// A transfer driven by another replica publishes nothing here:
		// read the store again now and then.
		var poll <-chan time.Time
		var timer *time.Timer
		if !e.local(id) {
			timer = time.NewTimer(e.cfg.PollMaxInterval / 4)
			poll = timer.C
		}
		select {
		case <-w.ch: // publish closed and dropped w
		case <-poll:
			e.unwatch(id, w)
		case <-ctx.Done():
			e.unwatch(id, w)
			if timer != nil {
				timer.Stop()
			}
			return t, nil
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// current returns the latest saved record: from the runner when this
// process drives the transfer (it saved it a moment ago, and reading it
// back from a durable store on every change is what a long poll would
// otherwise cost), else from the store.
func (e *Engine) current(ctx context.Context, id string) (*Transfer, error) {
	e.mu.Lock()
	r := e.runs[id]
	e.mu.Unlock()
	if r != nil {
		if t := r.latest.Load(); t != nil {
			return t.Clone(), nil
		}
	}
	return e.Get(ctx, id)
}

func (e *Engine) isStopping() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stopping
}

func (e *Engine) local(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.runs[id] != nil
}

// lease is how long a claim or renewal lasts.
func (e *Engine) lease() time.Duration { return e.cfg.LeaseTTL / 2 }

// crash calls the configured crash point, if any.
func (e *Engine) crash(t *Transfer, point string) {
	if e.cfg.CrashPoint != nil {
		e.cfg.CrashPoint(t, point)
	}
}

// watchOn returns the transfer's current watcher, counting the caller as
// one more waiter on it.
func (e *Engine) watchOn(id string) *watcher {
	e.mu.Lock()
	defer e.mu.Unlock()
	w := e.watch[id]
	if w == nil {
		w = &watcher{ch: make(chan struct{})}
		e.watch[id] = w
	}
	w.n++
	return w
}

// unwatch is called by a waiter that stops waiting without having been
// woken. The watcher is dropped only when no other waiter still holds it:
// they are woken by the next publish.
func (e *Engine) unwatch(id string, w *watcher) {
	e.mu.Lock()
	defer e.mu.Unlock()
	w.n--
	if w.n == 0 && e.watch[id] == w {
		delete(e.watch, id)
	}
}

func (e *Engine) publish(id string) {
	e.mu.Lock()
	if w, ok := e.watch[id]; ok {
		close(w.ch)
		delete(e.watch, id)
	}
	e.mu.Unlock()
}

// Shutdown stops taking transfers and lets every running transfer finish
// or compensate: consulting transfers are abandoned with reason shutdown
// and their callers taken off hold; a transfer already completing is
// finished. If ctx ends first, provider calls in progress are cancelled
// and the error says how many transfers were still running.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	if !e.stopping {
		e.stopping = true
		close(e.stop)
	}
	e.mu.Unlock()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		e.cancelHard()
		return nil
	case <-ctx.Done():
		e.mu.Lock()
		n := len(e.runs)
		e.mu.Unlock()
		e.cancelHard()
		<-done
		return fmt.Errorf("orchestrator: shutdown deadline passed with %d transfers still running", n)
	}
}

// Resume drives transfers that a previous process left unfinished. Each
// is first reconciled against the provider's real state.
func (e *Engine) Resume(ts []*Transfer) {
	for _, t := range ts {
		if t.State.Terminal() {
			continue
		}
		if _, ok := e.providers[t.Request.Provider]; !ok {
			e.log.Error().Str("transfer_id", t.ID).Str("provider", t.Request.Provider).
				Msg("cannot resume transfer: its provider is not configured")
			continue
		}
		if !e.reserve() {
			e.log.Warn().Str("transfer_id", t.ID).Msg("not resuming transfer: transferd is shutting down")
			continue
		}
		e.launch(t)
	}
}

// Running returns the ids of transfers driven by this process.
func (e *Engine) Running() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make([]string, 0, len(e.runs))
	for id := range e.runs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// reserve counts a transfer about to be launched, unless shutdown has
// begun. Checking and counting under one lock orders every launch before
// Shutdown's wait, so Shutdown never returns with a runner still to start.
func (e *Engine) reserve() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopping {
		return false
	}
	e.wg.Add(1)
	return true
}

// launch starts driving t; the caller has reserved it.
func (e *Engine) launch(t *Transfer) {
	p := e.providers[t.Request.Provider]
	ctx, cancel := context.WithCancel(e.hard)
	r := &run{
		e: e, t: t, p: p, flow: p.Flow(&t.Request),
		log:     e.log.With().Str("transfer_id", t.ID).Str("provider", p.Name()).Logger(),
		wake:    make(chan struct{}, 1),
		entered: e.now(),
		cancel:  cancel,
	}
	e.mu.Lock()
	e.runs[t.ID] = r
	e.mu.Unlock()
	e.m.inFlight.WithLabelValues(p.Name()).Inc()
	go func() {
		defer e.wg.Done()
		defer func() {
			e.mu.Lock()
			delete(e.runs, t.ID)
			e.mu.Unlock()
			e.m.inFlight.WithLabelValues(p.Name()).Dec()
		}()
		defer cancel()
		r.drive(ctx)
	}()
}
