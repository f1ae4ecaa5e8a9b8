package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// DefaultStepTimeout is Config.StepTimeout's default. An adapter that
// bounds a step a stopped process left unfinished (Transfer.StepEnd) uses
// it when not told the engine's.
const DefaultStepTimeout = 15 * time.Second

// Config tunes the engine. Zero values take the defaults below.
type Config struct {
	// ConsultTimeout applies to requests that do not name their own.
	ConsultTimeout time.Duration
	// MaxConsultTimeout bounds what a request may ask for.
	MaxConsultTimeout time.Duration
	// PollInterval is how often a provider view is read while a transfer
	// waits for something to happen soon (a ringing consult, a join or a
	// restore to show); PollMaxInterval otherwise (a manual consult in
	// conversation, a tombstone), and the longest back-off of a retried
	// step. Its default, 200 ms, keeps the time from a target answering
	// to the join under 300 ms at the 99th percentile (docs/benchmarks.md,
	// "Events and watchers").
	PollInterval    time.Duration
	PollMaxInterval time.Duration
	// StepTimeout bounds one provider request or reading, and how long a
	// step that changes nothing yet (locate, hold) keeps retrying a
	// provider that cannot be reached before the transfer gives up.
	StepTimeout time.Duration // default DefaultStepTimeout
	// VerifyTimeout is how long an accepted join may take to show before
	// it is taken as not applied, and how long a recovery waits for the
	// provider to show the caller back before it reports an unverified
	// outcome and leaves a cleanup obligation.
	VerifyTimeout time.Duration
	// VisibilityWindow is how long the provider may take to show the
	// effect of an accepted action or to list a new call. A consult not
	// seen within it counts as ended for an unknown reason (the caller is
	// taken back) and a hold not seen is taken as applied once it passed.
	VisibilityWindow time.Duration
	// TombstoneTTL is how long a consult that never appeared is watched
	// for after the dial, so that a late leg is hung up.
	TombstoneTTL time.Duration
	// Workers is how many transfers are reconciled at once.
	Workers int

	// Owner names this process among replicas sharing a store. A process
	// restarted with the same Owner reclaims its transfers at once; others
	// claim them once its heartbeat expired. Default "local".
	Owner string
	// LeaseTTL bounds how long a stopped replica's transfers wait to be
	// claimed: a heartbeat runs LeaseTTL/2 past its last renewal, and
	// replicas renew theirs and claim dead replicas' transfers every
	// LeaseTTL/4 (see Open), so a claim comes at most 3/4 LeaseTTL after
	// a replica stops, and a live replica has two chances to renew.
	LeaseTTL time.Duration
	// OpenPatience is how long Open keeps trying a step the store fails
	// before it gives up with the store's error. Default a minute.
	OpenPatience time.Duration
	// Retention keeps terminal transfers this long before Purge (Open's
	// maintenance loop, every PurgeInterval).
	Retention     time.Duration
	PurgeInterval time.Duration
	// OrphanInterval is how often the replica looks for the open
	// transfers it owns and drives none of (see adoptOrphans): a create
	// whose commit landed after findLater stopped looking, one claimed or
	// resumed while its tenant had no account of its provider here.
	// Default a minute.
	OrphanInterval time.Duration
	// HandoverPatience is how long a replica shutting down waits for its
	// peers to claim the transfers it handed over (see Shutdown) before
	// it takes back those nobody claimed and gives their callers back.
	// Default LeaseTTL/2: two of a peer's looks for transfers to claim.
	HandoverPatience time.Duration
	// Accounts, when set, gives each tenant its own provider accounts; the
	// providers passed to New serve tenants it does not know (and the
	// default tenant of a deployment without tenants).
	Accounts Accounts
	// CrashPoint, when set, is called at every step boundary with a name
	// such as "hold:intent", "hold:effect", "hold:result" or
	// "state:consulting". The crash tests kill the process there; it is
	// nil in production.
	CrashPoint func(t *Transfer, point string)
	// Clock is the wall clock the engine stamps and judges stored times
	// by; time.Now when nil. cmd/transferd gives it the PostgreSQL
	// store's Now, the database server's time, so that the replicas of
	// one database share one clock whatever their hosts' say.
	Clock func() time.Time
	// EventsSaved, when set, is called after each save that wrote events
	// (a create, a transition), with the tenant whose events they are, so
	// that what reads the outbox (the webhook dispatcher's Nudge, the
	// tenant's event streams) reads it now rather than at its next scan.
	// It must not block.
	EventsSaved func(tenant string)
	// NotesSaved, when set, is called with the transfer's id after each
	// save that took into the record provider notes it did not hold
	// (NoteKeeper), so that another replica waiting for them (the API's
	// answer to the callback that told them, which waits until the
	// record holds them) is told (HeardNotesSaved) and reads the record
	// now rather than at its next poll. It must not block.
	NotesSaved func(id string)
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ConsultTimeout, 30*time.Second)
	def(&c.MaxConsultTimeout, 10*time.Minute)
	def(&c.PollInterval, 200*time.Millisecond)
	def(&c.PollMaxInterval, 2*time.Second)
	def(&c.StepTimeout, DefaultStepTimeout)
	def(&c.VerifyTimeout, 15*time.Second)
	def(&c.VisibilityWindow, 5*time.Second)
	def(&c.TombstoneTTL, 2*time.Minute)
	def(&c.LeaseTTL, 15*time.Second)
	def(&c.Retention, 7*24*time.Hour)
	def(&c.PurgeInterval, time.Hour)
	def(&c.OrphanInterval, time.Minute)
	def(&c.HandoverPatience, c.LeaseTTL/2)
	def(&c.OpenPatience, time.Minute)
	if c.Workers <= 0 {
		c.Workers = 64
	}
	if c.Owner == "" {
		c.Owner = "local"
	}
}

// Engine runs transfers. It keeps an entry for every open transfer this
// replica owns and reconciles each on a work queue: a worker takes a
// transfer's id, compares what the provider shows (through a shared
// watcher) with the end state the transfer promises, takes the next
// action toward it, saves, and schedules the next wake-up. A waiting
// transfer costs its record, a timer and a watcher subscription, not a
// goroutine.
type Engine struct {
	cfg       Config
	store     Store
	providers map[string]Provider
	log       zerolog.Logger
	m         *metrics
	now       func() time.Time
	// token is this process's incarnation, stored with its heartbeat
	// (Store.Heartbeat): another process under the same Owner writes
	// another, and the heartbeat tells this one that it was superseded.
	token string
	// superseded is closed once a heartbeat found that another process
	// took Owner over (ErrSuperseded); see Superseded.
	superseded chan struct{}
	// tookOver is when Open took over a heartbeat another process had
	// left live, until the maintenance loop has looked for orphans once
	// that process can send nothing more (see Open); zero otherwise. Only
	// Open, before the loop starts, and the loop use it.
	tookOver time.Time
	// eventIDKey is the store's key for event ids, once read.
	eventIDKey atomic.Pointer[EventIDKey]

	// hard is cancelled when shutdown has run out of time (or is done):
	// provider calls and readings use it, so that a graceful shutdown
	// lets them finish.
	hard       context.Context
	cancelHard context.CancelFunc
	stop       chan struct{} // closed when shutdown starts
	q          *queue
	startOnce  sync.Once
	workers    sync.WaitGroup
	bg         sync.WaitGroup // watchers and the maintenance loop
	lookups    atomic.Int32   // the creates findLater looks for
	// adopting counts the adoptions between their look-up of the
	// account and their entry (adopt), for DrivesWith.
	adopting atomic.Int32
	// published counts the records saves publish as entry.cur
	// (entry.published): a watcher notes it before it loads the records
	// it reads for, so a reading tells whether it was read for a record
	// older than the one a transfer has now.
	published atomic.Uint64
	// undriven.others: the providers, none of whose accounts is known
	// here any more, that the last look for orphans counted undriven
	// transfers of (see setUndriven).
	undriven struct {
		sync.Mutex
		others map[string]bool
	}
	// orphaned: a claim failed in a way that leaves open whether it was
	// saved: this replica may own transfers it drives none of (see
	// adoptOrphans).
	orphaned atomic.Bool

	mu       sync.Mutex
	stopping bool
	// handover: Shutdown found a peer, so the transfers it interrupts are
	// saved with no owner for a peer to claim and go on with, instead of
	// given back (handOver). handed holds those, until a peer has claimed
	// them or this replica takes them back (awaitHandover).
	handover bool
	handed   map[string]struct{}
	// creating counts, by id, the Starts (and findLater's adoptions) past
	// their stopping check that have not adopted their transfer yet: saved,
	// perhaps, and this replica's, but with no entry yet. Shutdown waits
	// for them (unfinished); adoptOrphans leaves them alone. A count, not a
	// set: findLater may begin adopting an id before the Start that made it
	// has ended.
	creating map[string]int
	entries  map[string]*entry
	waiters  map[string]*waiter
	// finished holds the final records of the last transfers this replica
	// finished (ring of finishedKept ids), for the long polls that wake as
	// they finish: a closed transfer never changes again, and reading it
	// back from the store cost each finished transfer a query and a decode.
	finished    map[string]*Transfer
	finishedIDs [finishedKept]string
	finishedAt  int
	// settled is closed and replaced whenever an entry is dropped or
	// becomes terminal, for Shutdown.
	settled chan struct{}

	watchMu  sync.Mutex
	watchers map[watchKey]*watcher

	// saveErr and beatErr are the last failures to save a transfer and to
	// renew the heartbeat; each is nil once the same kind of write
	// succeeded again. Ready reports them: one kind succeeding says
	// nothing of the other (a heartbeat row may still be writable while
	// transfer saves fail).
	saveErr, beatErr atomic.Pointer[error]
	// failingSaves counts the entries whose last save failed
	// (entry.saveFailing): once the last of them is let go unsaved (another
	// replica took it over), no save is failing any more.
	failingSaves atomic.Int64

	// takeovers: a lapse of the heartbeat was found, and the transfers
	// other replicas may have claimed meanwhile are still to be looked
	// for (lookForTakeovers). Only the heartbeat's loop uses it.
	takeovers atomic.Bool

	// lease is this replica's own view of its heartbeat; see leaseHeld.
	lease struct {
		sync.Mutex
		on     bool      // Open ran: the replica heartbeats
		until  time.Time // when it stops sending provider requests
		lapses int64     // times it was found lapsed (or expired)
		// superseded: another process took Owner over (ErrSuperseded);
		// the lease has ended for good, and is never renewed again.
		superseded bool
		// ctx is cancelled when the heartbeat itself runs out (timer),
		// from when other replicas may claim this one's transfers, so
		// that a step in flight sends no more (an adapter's retries); a
		// renewal after that starts a new one. Steps start only until
		// `until`, leaseMargin before that, so a late renewal pauses new
		// steps without cutting short those in flight.
		expires time.Time
		ctx     context.Context
		cancel  context.CancelFunc
		timer   leaseTimer
	}
	// afterFunc starts the lease's timer: time.AfterFunc, which the tests
	// replace to fire it at a moment of their choosing.
	afterFunc func(d time.Duration, f func()) leaseTimer
}

// leaseTimer is what the engine uses of the lease's timer (*time.Timer).
type leaseTimer interface {
	Reset(d time.Duration) bool
	Stop() bool
}

// waiter is the channel closed on a transfer's next change, shared by
// every Wait on that transfer.
type waiter struct {
	ch chan struct{}
	n  int // waiters holding ch
}

// StartOptions carry what the API knows about a create besides the
// request itself.
type StartOptions struct {
	// IdempotencyScope and IdempotencyKey link the transfer to the
	// Idempotency-Key reservation of its create, the one created at
	// IdempotencyReservedAt (see Store.Create).
	IdempotencyScope      string
	IdempotencyKey        string
	IdempotencyReservedAt time.Time
	// RequestID is the id of the HTTP request that created the transfer;
	// it appears on every log line of the transfer.
	RequestID string
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
	m := newMetrics(reg)
	hard, cancel := context.WithCancel(context.Background())
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	e := &Engine{
		cfg: cfg, store: store, providers: byName, log: log, m: m,
		// Config.Clock: time.Now, not time.Now().UTC(), which drops the monotonic
		// reading: the engine compares the times it takes (a reading's
		// against its last request's, a deadline, its lease) within the
		// process, and a wall clock that is stepped (NTP, a VM restored
		// from a snapshot) would make readings look older than the request
		// before them, or a consult time out as it starts. Times read back
		// from the store have no monotonic reading and compare by the
		// wall clock, as they must. The binary runs in UTC (main), so
		// what it shows and stores is UTC.
		now: cfg.Clock, token: NewToken(), superseded: make(chan struct{}),
		hard: hard, cancelHard: cancel, stop: make(chan struct{}), q: newQueue(),
		entries: map[string]*entry{}, handed: map[string]struct{}{}, creating: map[string]int{}, waiters: map[string]*waiter{}, settled: make(chan struct{}),
		finished:  make(map[string]*Transfer, finishedKept),
		watchers:  map[watchKey]*watcher{},
		afterFunc: func(d time.Duration, f func()) leaseTimer { return time.AfterFunc(d, f) },
	}
	e.exportWatched()
	return e, nil
}

// providerNames returns, sorted, the name of every provider a transfer
// here may use: the default accounts' and, when the tenants' Accounts can
// list them (TenantLister), each tenant's.
func (e *Engine) providerNames() []string {
	names := e.Providers()
	if tl, ok := e.cfg.Accounts.(TenantLister); ok {
		for _, tenant := range tl.Tenants() {
			names = append(names, e.cfg.Accounts.Names(tenant)...)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// exportWatched makes the series that alerts watch exist, at 0, for every
// provider name a transfer here may use (New, and AccountsChanged for the
// names a reload brings), without touching a value already there. An
// alert's expression then never sees "no data" on a healthy replica, and
// a counter's first increment is an increase: Prometheus' increase()
// counts none on a series whose first sample is already 1, so the first
// unverified outcome of a replica serving only tenants' accounts never
// warned, and a dashboard's rate of transfers started missed each
// provider's first transfer after a start. The ends
// (transferd_transfers_total) exist for every outcome a transfer can
// reach, for the same reason: a dashboard's rate of failures by reason
// missed the first failure of each reason after a start.
func (e *Engine) exportWatched() {
	for _, name := range e.providerNames() {
		e.m.started.WithLabelValues(name)
		for _, r := range Reasons {
			e.m.finished.WithLabelValues(name, string(outcomeOf(r)), string(r))
		}
		e.m.cleanups.WithLabelValues(name)
		e.m.unverified.WithLabelValues(name)
		e.m.onHold.WithLabelValues(name)
		e.m.inFlight.WithLabelValues(name)
		e.m.undriven.WithLabelValues(name)
	}
}

// outcomeOf is the terminal state an end for reason r reaches: a
// transfer completes only transferred, and is cancelled only for a
// cancel (finalState); every other reason is a failure.
func outcomeOf(r Reason) State {
	switch r {
	case ReasonTransferred:
		return StateCompleted
	case ReasonCancelled:
		return StateCancelled
	}
	return StateFailed
}

// Providers returns the provider names of the default accounts, sorted.
func (e *Engine) Providers() []string {
	names := make([]string, 0, len(e.providers))
	for n := range e.providers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ProvidersOf returns the provider names the tenant of ctx may use,
// sorted: the names a create accepts.
func (e *Engine) ProvidersOf(ctx context.Context) []string {
	return e.providersFor(TenantOf(ctx))
}

// providersFor returns the provider names tenant may use, sorted.
func (e *Engine) providersFor(tenant string) []string {
	if e.cfg.Accounts != nil {
		if names := e.cfg.Accounts.Names(tenant); len(names) > 0 {
			return names
		}
	}
	return e.Providers()
}

// provider returns the account tenant uses for the provider called name.
func (e *Engine) provider(tenant, name string) (Provider, bool) {
	if e.cfg.Accounts != nil {
		if p, ok := e.cfg.Accounts.Provider(tenant, name); ok {
			return p, true
		}
		if len(e.cfg.Accounts.Names(tenant)) > 0 {
			return nil, false // the tenant has accounts, not this one
		}
	}
	p, ok := e.providers[name]
	return p, ok
}

// Config returns the effective configuration.
func (e *Engine) Config() Config { return e.cfg }

// Validate applies defaults to r and checks everything that does not need
// I/O, for the tenant of ctx. The error has kind KindInvalid or
// KindUnsupported and names every bad field.
func (e *Engine) Validate(ctx context.Context, r *Request) error {
	tenant := TenantOf(ctx)
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
	p, ok := e.provider(tenant, r.Provider)
	switch {
	case r.Provider == "":
		bad["provider"] = "is required; one of " + fmt.Sprint(e.providersFor(tenant))
	case !ok:
		bad["provider"] = fmt.Sprintf("%q is not a configured provider; one of %v", r.Provider, e.providersFor(tenant))
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
		// The mode's own complaint names the mode, not "mode … in mode announced".
		if r.Mode == ModeAnnounced && !caps.Announced || r.Mode == ModeAttended && !caps.Attended {
			unsupported["mode"] = fmt.Sprintf("%q is not supported by provider %s", r.Mode, p.Name())
		}
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

// Now is the time on the engine's wall clock (Config.Clock), which the
// times it stores are read by: a record made beside the engine's (an
// Idempotency-Key's reservation) takes its time from here.
func (e *Engine) Now() time.Time { return e.now() }

// Start validates r, saves a new transfer and starts driving it.
func (e *Engine) Start(ctx context.Context, r Request, o StartOptions) (*Transfer, error) {
	if err := e.Validate(ctx, &r); err != nil {
		return nil, err
	}
	now := e.now()
	id := NewID(now)
	if e.isSuperseded() {
		// Saved, it would be this name's, and driven by nobody until the
		// process that took the name over looked for orphans.
		return nil, E("orchestrator.Start", KindUnavailable, ErrSuperseded)
	}
	// Counted in creating until the transfer is adopted, so that a
	// Shutdown that begins meanwhile waits for it and drives it to its end
	// instead of leaving a saved transfer nobody drives, and so that a
	// look for orphans does not take it for one.
	if !e.beginCreate(id) {
		return nil, E("orchestrator.Start", KindUnavailable, errors.New("transferd is shutting down"))
	}
	defer e.endCreate(id)
	// CreatedAt to the microsecond (CreatedResolution): what PostgreSQL
	// keeps of it, so that the created_at a client reads is the time the
	// list's bounds are compared with, on every store.
	t := &Transfer{ID: id, Tenant: TenantOf(ctx), Request: r, State: StatePending, CreatedAt: now.Truncate(CreatedResolution), UpdatedAt: now,
		Owner: e.cfg.Owner, IdempotencyScope: o.IdempotencyScope, IdempotencyKey: o.IdempotencyKey,
		IdempotencyReservedAt: o.IdempotencyReservedAt, RequestID: o.RequestID}
	emit(t, EventCreated, now, "", StatePending)
	t.Token = e.token
	if err := e.store.Create(ctx, t); err != nil {
		if errors.Is(err, ErrSuperseded) {
			// Another process took the name over since the look above:
			// nothing was saved, and this one stops.
			e.supersede()
			return nil, E("orchestrator.Start", KindUnavailable, ErrSuperseded)
		}
		if !Uncertain(err) {
			return nil, err
		}
		got, gerr := e.readBack(ctx, t.ID)
		if gerr != nil {
			// It may have been saved all the same: looked for again.
			e.findLater(t.ID)
			return nil, E("orchestrator.Start", KindUnavailable, fmt.Errorf("%w: %w", ErrSaveUnknown, err))
		}
		e.log.Warn().Err(err).Str("transfer_id", t.ID).Msg("the store's answer to a create was lost, but the transfer was saved")
		// Saved with its events, which the record read back no longer
		// carries in its Outbox.
		e.eventsSaved(t)
		if !e.mine(got) {
			// Another replica claimed it meanwhile and drives it.
			e.m.started.WithLabelValues(r.Provider).Inc()
			return got, nil
		}
		t = got
	} else if len(t.Outbox) > 0 {
		e.eventsSaved(t)
	}
	t.Outbox, t.IdempotencyReservedAt = nil, time.Time{}
	e.m.started.WithLabelValues(r.Provider).Inc()
	snapshot := t.Clone()
	e.adopt(t, false)
	return snapshot, nil
}

// A store may lose its answer to a create whose commit happened (a
// connection that drops between the two). The transfer then holds its
// call and, not adopted, would be driven by nobody until this replica
// restarted; so the engine reads it back, at once and, if that fails, in
// the background for as long as a commit may still land.

// Uncertain reports whether a store's error leaves open that the write
// was made all the same (a create's, a signal's, a claim's; the webhook
// dispatcher's results): a commit whose answer was lost. A refusal of a
// kind (conflict, not found, invalid, unavailable: ErrNotSaved) is the
// store's own verdict that nothing was written.
func Uncertain(err error) bool {
	switch KindOf(err) {
	case KindConflict, KindNotFound, KindInvalid, KindUnavailable:
		return false
	}
	return true
}

// readBack reads a transfer whose create's answer was lost.
func (e *Engine) readBack(ctx context.Context, id string) (*Transfer, error) {
	// The create's own deadline may be what ended it.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readBackTimeout)
	defer cancel()
	return e.store.Get(rctx, id)
}

// mine reports whether a transfer read back is as this replica's create
// saved it: another replica may have claimed it since (this one's
// heartbeat lapsing while the store could not be reached), and then its
// record is that replica's to drive.
func (e *Engine) mine(t *Transfer) bool {
	return t.Version == 1 && t.Owner == e.cfg.Owner
}

// findLater looks for a transfer whose create's answer and read-back both
// failed, until it is found (and driven, if still as created), shown not
// saved for readBackPatience, or shutdown begins: a transfer whose commit
// lands after that is driven by the replica's next look for orphans
// (adoptOrphans, every OrphanInterval), resumed when it restarts, or
// claimed once its heartbeat lapses. At most maxLookups are looked for at
// once: they happen when the store cannot be reached, and each adds reads
// to it.
func (e *Engine) findLater(id string) {
	if e.lookups.Add(1) > maxLookups {
		e.lookups.Add(-1)
		e.log.Error().Str("transfer_id", id).
			Msg("a create whose answer was lost is not looked for (too many are): should it have been saved, the next look for orphans drives it")
		return
	}
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		defer e.lookups.Add(-1)
		wait := min(e.cfg.PollMaxInterval, time.Second)
		deadline := time.Now().Add(readBackPatience)
		for time.Now().Before(deadline) {
			select {
			case <-e.stop:
				return // a transfer saved is resumed by whoever owns it next
			case <-time.After(wait):
			}
			wait = min(2*wait, 5*time.Second)
			// Cut short by a Shutdown out of time (e.hard), unlike Start's.
			ctx, cancel := context.WithTimeout(e.hard, readBackTimeout)
			got, err := e.store.Get(ctx, id)
			cancel()
			switch {
			case err != nil:
				continue // not saved, its commit not landed yet, or unreadable
			case !e.mine(got):
				// Another replica claimed it and drives it: saved all the
				// same, and counted so.
				e.m.started.WithLabelValues(got.Request.Provider).Inc()
				return
			}
			// Adopted as Start adopts: not once shutdown has begun (whoever
			// owns it next resumes it), and counted until it is.
			if !e.beginCreate(id) {
				return
			}
			e.log.Warn().Str("transfer_id", id).Msg("a create whose answer was lost was saved: driving it")
			e.m.started.WithLabelValues(got.Request.Provider).Inc()
			e.adopt(got, false)
			e.endCreate(id)
			return
		}
		e.log.Error().Str("transfer_id", id).Dur("looked_for_ms", readBackPatience).
			Msg("a create whose answer was lost was not found; should it land later, a look for orphans drives it")
	}()
}

// readBackTimeout bounds one read of a create's record; readBackPatience
// how long findLater looks: longer than a store takes to settle a commit
// whose answer was lost (PostgreSQL's commit timeout is a minute);
// maxLookups how many it looks for at once.
const (
	readBackTimeout  = 5 * time.Second
	readBackPatience = 2 * time.Minute
	maxLookups       = 64
)

// Get returns the saved transfer, if it belongs to the tenant of ctx:
// another tenant's transfer is not found, exactly like one that does not
// exist.
func (e *Engine) Get(ctx context.Context, id string) (*Transfer, error) {
	if !ValidID(id) {
		return nil, E("orchestrator.Get", KindNotFound, nil)
	}
	t, err := e.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if tenantOf(t) != TenantOf(ctx) {
		return nil, E("orchestrator.Get", KindNotFound, nil)
	}
	return t, nil
}

// List returns the saved transfers of the tenant of ctx, newest first.
func (e *Engine) List(ctx context.Context, f ListFilter) ([]*Transfer, bool, error) {
	f.Tenant = TenantOf(ctx)
	return e.store.List(ctx, f)
}

// Events returns the tenant's events after f.After (see Store.Events).
func (e *Engine) Events(ctx context.Context, f EventFilter) ([]Event, error) {
	f.Tenant = TenantOf(ctx)
	es, ok := e.store.(EventStore)
	if !ok {
		return nil, E("orchestrator.Events", KindUnsupported, errors.New("the store keeps no events"))
	}
	return es.Events(ctx, f)
}

// LastEventPos returns the position of the newest event of the context's
// tenant, of one transfer when transferID is set, or 0.
func (e *Engine) LastEventPos(ctx context.Context, transferID string) (int64, error) {
	es, ok := e.store.(EventStore)
	if !ok {
		return 0, E("orchestrator.LastEventPos", KindUnsupported, errors.New("the store keeps no events"))
	}
	return es.LastEventPos(ctx, EventFilter{Tenant: TenantOf(ctx), TransferID: transferID})
}

// EventIDKey returns the store's key for the event stream's ids (see
// orchestrator.EventIDKey), read once.
func (e *Engine) EventIDKey(ctx context.Context) (EventIDKey, error) {
	if k := e.eventIDKey.Load(); k != nil {
		return *k, nil
	}
	es, ok := e.store.(EventStore)
	if !ok {
		return EventIDKey{}, E("orchestrator.EventIDKey", KindUnsupported, errors.New("the store keeps no events"))
	}
	k, err := es.EventIDKey(ctx)
	if err != nil {
		return EventIDKey{}, err
	}
	e.eventIDKey.Store(&k)
	return k, nil
}

// Ready reports whether the engine can take transfers: it is not
// shutting down, the store answers, and its last save (or heartbeat)
// did not fail. A store that reads but cannot write (a full disk) is not
// ready: transfers could not record their steps.
func (e *Engine) Ready(ctx context.Context) error {
	if e.isStopping() {
		return &NotReadyError{Reason: "shutting down"}
	}
	if e.isSuperseded() {
		return &NotReadyError{Reason: "another process took this replica's name over", Err: ErrSuperseded}
	}
	if p := e.saveErr.Load(); p != nil {
		return &NotReadyError{Reason: "the store cannot save transfers", Err: *p}
	}
	if p := e.beatErr.Load(); p != nil {
		return &NotReadyError{Reason: "the store cannot renew this replica's heartbeat", Err: *p}
	}
	if err := e.store.Ping(ctx); err != nil {
		return &NotReadyError{Reason: "the store does not answer", Err: err}
	}
	return nil
}

// NotReadyError is why Ready fails. Reason is fit for anyone who can reach
// the probe; Err, the store's own error, is for the logs: it may name a
// transfer (a save that failed), a file or a database host.
type NotReadyError struct {
	Reason string
	Err    error
}

func (e *NotReadyError) Error() string {
	if e.Err == nil {
		return e.Reason
	}
	return e.Reason + ": " + e.Err.Error()
}

func (e *NotReadyError) Unwrap() error { return e.Err }

// storeFailed records a failed write for Ready; storeOK clears it. Each
// kind of write (saves, heartbeats) has its own slot.
func (e *Engine) storeFailed(slot *atomic.Pointer[error], err error) {
	e.m.saveFailures.Inc()
	slot.Store(&err)
}

func (e *Engine) storeOK(slot *atomic.Pointer[error]) {
	if slot.Load() != nil {
		slot.Store(nil)
	}
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
	// A transfer this replica drives is checked and signalled under its
	// gate, so that the worker never moves past the record checked here
	// without seeing the signal (see entry.gate).
	e.mu.Lock()
	en := e.entries[id]
	e.mu.Unlock()
	if en != nil && tenantOf(en.cur.Load()) != TenantOf(ctx) {
		// Another tenant's transfer: its gate is not this request's to
		// wait for (latest answers it as a missing one).
		en = nil
	}
	if en != nil {
		select {
		case en.gate <- struct{}{}:
			defer func() { <-en.gate }()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	// A transfer this replica does not drive is read from the store, not
	// from the final records kept for long polls (finished): one the
	// retention purge deleted was answered from there, a 409 naming its
	// end where the store, and every other route, say 404.
	var t *Transfer
	var err error
	if en != nil {
		t, err = e.current(ctx, id)
	} else {
		t, err = e.Get(ctx, id)
	}
	for try := 1; ; try++ {
		if err != nil {
			return nil, notRecorded(ctx, s, err)
		}
		err = e.signalChecked(ctx, t, s)
		if !errors.Is(err, ErrStale) || try == maxSignalTries {
			return t, err
		}
		// Saved since the record checked (by this replica's worker, whose
		// record is published a moment after its save, or by the owner
		// elsewhere): checked again against the store's.
		t, err = e.Get(ctx, id)
	}
}

// notRecorded returns the error of a signal whose transfer could not be
// read: a read that failed for no kind (the store's connection ended: a
// restart or failover of the database) recorded nothing, which the
// client is told (ErrSignalNotRecorded, KindUnavailable) so that it
// tries the action again. As an internal error it was a 500 whose
// client, told nothing of a retry, could leave the action undone: a
// complete sent during a failover to a replica that does not drive the
// transfer then never reached its owner, and the consult ran out.
func notRecorded(ctx context.Context, s Signal, err error) error {
	if KindOf(err) != KindInternal || ctx.Err() != nil {
		return err
	}
	return &Error{Op: "orchestrator." + string(s), Kind: KindUnavailable, Err: fmt.Errorf("%w: %w", ErrSignalNotRecorded, err)}
}

// maxSignalTries bounds how often a signal is checked again against a
// transfer saved meanwhile; past it the client is asked to read the
// transfer and decide again (a 409).
const maxSignalTries = 4

// signalChecked puts s for t if t's state accepts it, only while t is
// still the stored version: a decision the owner saves after this check
// makes the put fail with ErrStale (the signal is then checked again), and
// one it saved before the put finds the signal pending when it next looks
// (the join's last look, every consulting pass).
func (e *Engine) signalChecked(ctx context.Context, t *Transfer, s Signal) error {
	op := "orchestrator." + string(s)
	switch s {
	case SignalComplete:
		switch {
		case t.State != StateConsulting:
			return &Error{Op: op, Kind: KindConflict, Err: fmt.Errorf("transfer is %s; only a transfer in consulting can be completed", t.State)}
		case t.Request.Completion != CompletionManual:
			return &Error{Op: op, Kind: KindConflict, Err: errors.New("transfer completes automatically; complete applies to completion \"manual\"")}
		case !t.Answered:
			return &Error{Op: op, Kind: KindConflict, Err: errors.New("the target has not answered yet")}
		}
	case SignalCancel:
		if t.State.Terminal() || t.State == StateCompleting || t.State == StateRecovering {
			return &Error{Op: op, Kind: KindConflict, Err: fmt.Errorf("transfer is %s and can no longer be cancelled", t.State)}
		}
	}
	// The signal goes through the store, so that it reaches the replica
	// that owns the transfer; a local entry is woken at once, a remote
	// owner finds it with its next Signalled query.
	if err := e.store.PutSignal(ctx, t.ID, s, t.Version); err != nil {
		switch {
		case errors.Is(err, ErrStale):
			return &Error{Op: op, Kind: KindConflict, Err: fmt.Errorf("%w: read it and decide again", ErrStale)}
		case KindOf(err) == KindConflict:
			// The same action already pending is this one made again
			// (a retry whose first answer was lost, a second click): it
			// is accepted, as the first was. Another is a conflict.
			if cur, perr := e.store.PeekSignal(ctx, t.ID); perr == nil && cur == s {
				e.wake(t.ID, true)
				return nil
			}
			return &Error{Op: op, Kind: KindConflict, Err: errors.New("another action is already pending")}
		case Uncertain(err):
			return &Error{Op: op, Kind: KindUnavailable, Err: fmt.Errorf("%w: %w", ErrSignalUnknown, err)}
		}
		return err
	}
	e.wake(t.ID, true)
	return nil
}

// Notify wakes a transfer so that its watcher reads the provider now;
// adapters' event receivers call it when a callback arrives.
func (e *Engine) Notify(id string) {
	e.mu.Lock()
	en := e.entries[id]
	e.mu.Unlock()
	if en == nil {
		return
	}
	// en.w belongs to the worker reconciling en: the watcher is found
	// through the shared map, by the record as last reconciled.
	if t := en.cur.Load(); t != nil {
		e.watchMu.Lock()
		w := e.watchers[watchKey{en.p, en.p.WatchKey(t)}]
		e.watchMu.Unlock()
		if w != nil {
			w.poke()
		}
	}
	e.q.Add(id)
}

// wake queues a local transfer, telling it a signal may be pending.
func (e *Engine) wake(id string, signalled bool) {
	e.mu.Lock()
	en := e.entries[id]
	e.mu.Unlock()
	if en == nil {
		return
	}
	if signalled {
		en.signal.Store(true)
	}
	e.q.Add(id)
}

// Wait returns the transfer once until reports true, it is terminal, or
// ctx is done (then the latest record and no error). until is shown
// records this replica shares with other readers: it must not modify
// them. Only the record returned is copied (a long poll used to copy
// every version it was woken for: a sixth of what the engine allocated
// per transfer).
func (e *Engine) Wait(ctx context.Context, id string, until func(*Transfer) bool) (*Transfer, error) {
	var last *Transfer // the last record read, and whether it is shared
	var lastShared bool
	for {
		w := e.waitOn(id)
		t, shared, err := e.latest(ctx, id)
		if err != nil && last != nil && KindOf(err) == KindInternal && ctx.Err() == nil {
			// A read of another replica's transfer that failed for no
			// kind (the store's connections ended: a database restarting
			// or failing over) is tried again at the next poll, the wait
			// answering the last record read should it end meanwhile. It
			// ended the wait with the error: a long poll answered a 500
			// for a transfer it had read, while its owner drove it on.
			t, shared, err = last, lastShared, nil
		}
		if err != nil {
			e.unwait(id, w)
			return nil, err
		}
		last, lastShared = t, shared
		if t.State.Terminal() || until(t) {
			e.unwait(id, w)
			return own(t, shared), nil
		}
		// A transfer driven by another replica publishes nothing here
		// but the word of its saved notes (HeardNotesSaved): read the
		// store again now and then.
		var poll <-chan time.Time
		var timer *time.Timer
		if !e.local(id) {
			timer = time.NewTimer(e.cfg.PollMaxInterval / 4)
			poll = timer.C
		}
		select {
		case <-w.ch: // publish closed and dropped w
		case <-poll:
			e.unwait(id, w)
		case <-ctx.Done():
			e.unwait(id, w)
			if timer != nil {
				timer.Stop()
			}
			return own(t, shared), nil
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// HeardNotesSaved tells the waits on transfer id (Wait) that another
// replica saved notes into its record (its Config.NotesSaved, carried by
// the store's notifications): they read the store again now. A wait on
// another replica's transfer read it every quarter of PollMaxInterval
// only, and a callback's answer waiting for its note held its request
// about that long, for a save made milliseconds after the callback. The
// poll stays: a word lost (a listener reconnecting, a pooler that
// delivers none) costs that wait its poll, as before. The waits on a
// transfer this replica drives are woken by its own saves.
func (e *Engine) HeardNotesSaved(id string) {
	if !e.local(id) {
		e.publish(id)
	}
}

// current returns the latest record (latest), the caller's own to keep.
func (e *Engine) current(ctx context.Context, id string) (*Transfer, error) {
	t, shared, err := e.latest(ctx, id)
	if err != nil {
		return nil, err
	}
	return own(t, shared), nil
}

// latest returns the latest record: this replica's own when it drives
// the transfer (it saved it a moment ago, and reading it back from a
// durable store on every change is what a long poll would otherwise
// cost), else the store's. A record of this replica's is shared (the
// worker never modifies one it has published, and other readers may hold
// it): the caller must not modify it.
func (e *Engine) latest(ctx context.Context, id string) (t *Transfer, shared bool, err error) {
	e.mu.Lock()
	en := e.entries[id]
	t = e.finished[id]
	e.mu.Unlock()
	if en != nil {
		if shown := en.shown.Load(); shown != nil {
			t = shown
		}
	}
	if t == nil {
		t, err = e.Get(ctx, id)
		return t, false, err
	}
	if tenantOf(t) != TenantOf(ctx) {
		// Another tenant's transfer is answered as a missing one is, and
		// after the same read of the store: answered from memory, its
		// speed told that the id is in flight on this replica.
		if _, err = e.Get(ctx, id); err == nil {
			err = E("orchestrator.Get", KindNotFound, nil)
		}
		return nil, false, err
	}
	return t, true, nil
}

// own returns a record the caller may keep and modify: a copy of a shared
// one.
func own(t *Transfer, shared bool) *Transfer {
	if shared {
		return t.Clone()
	}
	return t
}

// finishedKept is how many finished transfers' final records current
// keeps: enough for every long poll in flight to find the one it waits on.
const finishedKept = 256

// keepFinished remembers the final record of a transfer that is closed
// (terminal, no obligation left) and saved.
func (e *Engine) keepFinished(t *Transfer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if old := e.finishedIDs[e.finishedAt]; old != "" {
		delete(e.finished, old)
	}
	e.finishedIDs[e.finishedAt] = t.ID
	e.finished[t.ID] = t
	e.finishedAt = (e.finishedAt + 1) % finishedKept
}

func (e *Engine) isStopping() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stopping
}

func (e *Engine) local(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.entries[id] != nil
}

// Drives reports whether this replica drives the transfer id or is
// about to: it has an entry, or Start or findLater is adopting it. False
// for another replica's transfer, for one this replica no longer runs,
// and for one no replica runs yet.
func (e *Engine) Drives(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.creating[id] > 0 || e.entries[id] != nil
}

// DrivenBy returns the account this replica drives transfer id with, when
// it drives it and the transfer is tenant's at the provider called name.
// It is the account the transfer was adopted with, which a reload of the
// tenants file does not change (a rotated secret or a changed budget
// builds a new adapter for new transfers; a removed account has none):
// what a callback about the transfer tells belongs to it, not to the
// account in force.
func (e *Engine) DrivenBy(id, tenant, name string) (Provider, bool) {
	e.mu.Lock()
	en := e.entries[id]
	e.mu.Unlock()
	if en == nil || en.p.Name() != name {
		return nil, false
	}
	if t := en.cur.Load(); t == nil || tenantOf(t) != tenant {
		return nil, false
	}
	return en.p, true
}

// DrivesWith reports whether p, an account a reload of the tenants file
// replaced or removed, may still be used here: a transfer this replica
// drives is driven with it, or an adoption is between its look-up of the
// account and its entry. False, it never will
// be again (the accounts hand out another), and it may be released (a
// NetSapiens client's subscriptions and their goroutines).
func (e *Engine) DrivesWith(p Provider) bool {
	// Read before the entries: an adoption that begins after this read
	// looks up the accounts in force, which no longer hand out p; one
	// that began before is counted, or its entry is already in place.
	if e.adopting.Load() > 0 {
		return true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, en := range e.entries {
		if en.p == p {
			return true
		}
	}
	// A watcher of p's may outlive its last subscriber by a poll: its
	// readings wake nobody, and a released adapter still reads (a
	// NetSapiens client's Close ends its subscriptions only).
	return false
}

// beginCreate counts id among the transfers about to be adopted (see
// creating), unless shutdown has begun; endCreate ends that count.
func (e *Engine) beginCreate(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopping {
		return false
	}
	e.creating[id]++
	return true
}

func (e *Engine) endCreate(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.creating[id]--; e.creating[id] <= 0 {
		delete(e.creating, id)
	}
	e.settledLocked()
}

// heartbeatTTL is how long one heartbeat keeps this replica's transfers.
func (e *Engine) heartbeatTTL() time.Duration { return e.cfg.LeaseTTL / 2 }

// leaseMargin is how long before its heartbeat runs out, as other
// replicas will judge it, this replica stops sending provider requests:
// room for an error in its reckoning of the server's clock (Config.Clock)
// and for a request it sent to arrive. It is half the time between renewals, so one renewal
// that comes late pauses nothing.
func (e *Engine) leaseMargin() time.Duration { return e.cfg.LeaseTTL / 8 }

// renewLease records a heartbeat written with the time `at`, and reports
// whether it counted a lapse. A lease that had run out before it, or a
// heartbeat the store found expired, counts as a lapse: other replicas
// may have claimed this one's transfers meanwhile, so each transfer must
// be saved again (which a claim would make fail) before it sends a
// request whose intent it cannot save.
func (e *Engine) renewLease(at time.Time, expired bool) bool {
	e.lease.Lock()
	defer e.lease.Unlock()
	if e.lease.superseded {
		return false
	}
	lapsed := expired || !at.Before(e.lease.until)
	if lapsed {
		e.lease.lapses++
	}
	e.lease.on = true
	e.lease.until = at.Add(e.heartbeatTTL() - e.leaseMargin())
	e.lease.expires = at.Add(e.heartbeatTTL())
	if e.lease.ctx == nil || e.lease.ctx.Err() != nil {
		e.lease.ctx, e.lease.cancel = context.WithCancel(context.Background())
	}
	if e.lease.timer == nil {
		e.lease.timer = e.afterFunc(e.lease.expires.Sub(e.now()), e.leaseRanOut)
	} else {
		e.lease.timer.Reset(e.lease.expires.Sub(e.now()))
	}
	return lapsed
}

// supersede ends this process's lease for good: another process took
// Owner over (Store.Heartbeat's ErrSuperseded), claimed or will claim the
// transfers this one drives, and drives them. No step sends anything from
// here on (leaseHeld; a request in flight is cancelled with the lease's
// context), as if the heartbeat had run out and never came back; the
// saves of the transfers the other process claimed already fail on their
// versions. Superseded tells whoever runs the engine to stop the process.
func (e *Engine) supersede() {
	e.lease.Lock()
	if e.lease.superseded {
		e.lease.Unlock()
		return
	}
	e.lease.superseded = true
	e.lease.until, e.lease.expires = time.Time{}, time.Time{}
	if e.lease.cancel != nil {
		e.lease.cancel()
	}
	if e.lease.timer != nil {
		e.lease.timer.Stop()
	}
	e.lease.Unlock()
	e.log.Error().Str("owner", e.cfg.Owner).
		Msg("another process took this replica's name over while this one ran: two processes share one name, or this one was stopped while another started in its place; " +
			"this one sends nothing more and stops")
	close(e.superseded)
}

// Superseded is closed once a heartbeat has found that another process
// took this replica's name (Config.Owner) over while this one ran: it
// drives the name's transfers now, and this process must stop. The
// engine sends no provider request from then on; Shutdown then lets go
// of what it still held without compensating anything (nothing can be
// sent), leaving it to that process.
func (e *Engine) Superseded() <-chan struct{} { return e.superseded }

func (e *Engine) isSuperseded() bool {
	select {
	case <-e.superseded:
		return true
	default:
		return false
	}
}

// leaseRanOut cancels the lease's context once the heartbeat has expired
// without a renewal (one may have come while the timer fired). The timer
// runs on a duration, the heartbeat's end on the engine's clock: fired
// while that clock says the heartbeat still runs (a new reading of the
// server's clock moved it back since the timer was set), it is set again
// for what is left. Left alone, it never fired again unless a renewal
// came, which a replica cut off from its store does not get, and a
// request in flight ran on past the moment others may claim the transfer.
func (e *Engine) leaseRanOut() {
	e.lease.Lock()
	defer e.lease.Unlock()
	if left := e.lease.expires.Sub(e.now()); left > 0 && !e.lease.superseded {
		e.lease.timer.Reset(left)
		return
	}
	e.lease.cancel()
}

// leaseContext returns a context that ends when this replica's heartbeat
// expires: provider requests run under it.
func (e *Engine) leaseContext() context.Context {
	e.lease.Lock()
	defer e.lease.Unlock()
	if e.lease.ctx == nil {
		return context.Background()
	}
	return e.lease.ctx
}

// leaseHeld reports whether this replica may send provider requests: its
// last heartbeat still runs, with leaseMargin to spare. A replica cut off
// from the store cannot learn that another claimed its transfers (only a
// save's version conflict tells), so it must stop acting before the
// others may claim them, or it could undo what the new owner did. An
// engine that was never opened (tests, tools) has no heartbeat to lose.
// It also returns the lapse count, for lapsedSince.
func (e *Engine) leaseHeld() (bool, int64) {
	e.lease.Lock()
	defer e.lease.Unlock()
	return !e.lease.on || e.now().Before(e.lease.until), e.lease.lapses
}

// crash calls the configured crash point, if any.
func (e *Engine) crash(t *Transfer, point string) {
	if e.cfg.CrashPoint != nil {
		e.cfg.CrashPoint(t, point)
	}
}

// waitOn returns the transfer's current waiter, counting the caller as
// one more on it.
func (e *Engine) waitOn(id string) *waiter {
	e.mu.Lock()
	defer e.mu.Unlock()
	w := e.waiters[id]
	if w == nil {
		w = &waiter{ch: make(chan struct{})}
		e.waiters[id] = w
	}
	w.n++
	return w
}

// unwait is called by a waiter that stops waiting without having been
// woken. The waiter is dropped only when no other still holds it: they
// are woken by the next publish.
func (e *Engine) unwait(id string, w *waiter) {
	e.mu.Lock()
	defer e.mu.Unlock()
	w.n--
	if w.n == 0 && e.waiters[id] == w {
		delete(e.waiters, id)
	}
}

// eventsSaved tells Config.EventsSaved that a save of t wrote events.
func (e *Engine) eventsSaved(t *Transfer) {
	if e.cfg.EventsSaved != nil {
		e.cfg.EventsSaved(tenantOf(t))
	}
}

func (e *Engine) publish(id string) {
	e.mu.Lock()
	if w, ok := e.waiters[id]; ok {
		close(w.ch)
		delete(e.waiters, id)
	}
	e.mu.Unlock()
}

// Running returns the ids of the open transfers this replica owns.
func (e *Engine) Running() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make([]string, 0, len(e.entries))
	for id := range e.entries {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// adopt makes this replica drive t (a new transfer, or one it claimed)
// and queues it. resumed says that another process drove it before.
func (e *Engine) adopt(t *Transfer, resumed bool) {
	// Counted from before the look-up until the entry holds the account
	// (DrivesWith): an account a reload just replaced is not released
	// under an adoption that took it.
	e.adopting.Add(1)
	defer e.adopting.Add(-1)
	p, ok := e.provider(tenantOf(t), t.Request.Provider)
	if !ok {
		e.log.Error().Str("transfer_id", t.ID).Str("tenant", tenantOf(t)).Str("provider", t.Request.Provider).
			Msg("cannot drive the transfer: its tenant has no account of its provider")
		// Counted (transferd_transfers_undriven) by the look for orphans
		// this asks for, which drives it once a reload brings the account.
		e.orphaned.Store(true)
		return
	}
	e.startWorkers()
	// t is the engine's from now on: it is the record readers see until
	// the first reconcile stores its own working copy.
	en := &entry{id: t.ID, p: p, flow: p.Flow(&t.Request), log: &e.log, entered: e.now(), resumed: resumed, gate: make(chan struct{}, 1)}
	if resumed {
		en.adoptedAt = en.entered
		if t.Unowned {
			// Claimed with no owner: handed over at a shutdown, whose save
			// recorded all the replica before sent (handOver saves only
			// between steps, and never while saves fail), so no hang-up
			// it sent unrecorded can still land, and its join goes out at
			// once. That replica may itself have resumed the transfer
			// from one that died, and handed it over before that one's
			// hang-ups could all land: the wait runs from the adoption
			// its hand-over names (its own, or the one it claimed a
			// hand-over with), from its resumption where the note names
			// none, and not at all where it says that nothing was sent
			// unrecorded.
			en.adoptedAt = unrecordedUntil(t)
			// The replica before may have seen the consult live once
			// such a hang-up had landed, by this replica's window: its
			// end is then not in doubt (whoEnded). The reading and the
			// adoption may be two replicas' reckonings of the server's
			// clock (Config.Clock), a few tenths of a second apart at
			// most: within the lease's margin, by which the last request
			// of the replica that died went out before the takeover.
			if s := seenLiveAt(t); !en.adoptedAt.IsZero() && !s.IsZero() {
				en.liveAt = s
				en.outlived.Store(!s.Before(en.adoptedAt.Add(e.cfg.VisibilityWindow)))
			}
		}
	}
	t.Unowned = false            // what the claim found; the engine's record says nothing of it
	_, en.lapses = e.leaseHeld() // just created or claimed: this replica's
	en.cur.Store(t)
	en.shown.Store(t)
	en.signal.Store(resumed) // a signal may have been put while nobody drove it
	e.mu.Lock()
	if _, dup := e.entries[t.ID]; dup {
		e.mu.Unlock()
		return
	}
	e.entries[t.ID] = en
	// Counted before the entry's worker can run (it is not queued yet),
	// and marked, so that drop takes it off.
	en.setPending(e, awaitsCleanup(t))
	e.mu.Unlock()
	e.m.inFlight.WithLabelValues(p.Name()).Inc()
	e.q.Add(t.ID)
}

// transferLog is the logger of t's lines, built for a reconcile and
// dropped after it.
func (e *Engine) transferLog(t *Transfer, p Provider) *zerolog.Logger {
	lc := e.log.With().Str("transfer_id", t.ID).Str("tenant", tenantOf(t)).Str("provider", p.Name())
	if t.RequestID != "" {
		lc = lc.Str("request_id", t.RequestID)
	}
	l := lc.Logger()
	return &l
}

// reclaim hands a transfer this replica just claimed to the entry it
// still has for it, if any, and reports whether there was one. A replica
// cut off from the store keeps its entries; another may claim them, and
// this one may claim them back once that one stops. The entry then goes
// on from the claimed record: left alone, its next save would conflict
// with the claims, and it would let the transfer go while the store says
// this replica drives it, so that no replica would.
func (e *Engine) reclaim(t *Transfer) bool {
	e.mu.Lock()
	en := e.entries[t.ID]
	if en != nil {
		// Waits from now, whatever the claim found: this entry is stale.
		t.Unowned = false
		en.claimed.Store(t)
	}
	e.mu.Unlock()
	if en != nil {
		e.log.Info().Str("transfer_id", t.ID).Int64("version", t.Version).
			Msg("claimed back a transfer this replica still held: going on from the claimed record")
		e.q.Add(t.ID)
	}
	return en != nil
}

// drop forgets an entry: terminal without obligation, or owned by another
// replica now.
func (e *Engine) drop(en *entry) {
	e.unsubscribe(en)
	e.q.Forget(en.id)
	en.setHeld(e, false)
	e.mu.Lock()
	if en.claimed.Load() != nil {
		// Claimed back meanwhile (reclaim): it goes on from that record.
		// Checked under e.mu, as reclaim stores it, so that a claim comes
		// either before this check or after the entry is gone.
		e.mu.Unlock()
		e.q.Add(en.id)
		return
	}
	gone := e.entries[en.id] == en
	if gone {
		delete(e.entries, en.id)
		e.m.inFlight.WithLabelValues(en.p.Name()).Dec()
		en.setPending(e, false)
	}
	e.settledLocked()
	e.mu.Unlock()
	if gone {
		// Long polls wait on this replica's records while it drives the
		// transfer (Wait). One it lets go without a record published
		// (taken over by another replica, handed over by a save whose
		// answer was lost, or a poll that woke for the hand-over's record
		// and looked before this) would wait for a record nobody
		// publishes here any more: woken, it reads the store, and polls
		// it from now on.
		e.publish(en.id)
	}
}

// settledLocked wakes Shutdown to count what is still running.
func (e *Engine) settledLocked() {
	close(e.settled)
	e.settled = make(chan struct{})
}

// startWorkers starts the worker pool once.
func (e *Engine) startWorkers() {
	e.startOnce.Do(func() {
		for range e.cfg.Workers {
			e.workers.Add(1)
			go func() {
				defer e.workers.Done()
				for {
					id, ok := e.q.Get()
					if !ok {
						return
					}
					e.process(id)
					e.q.Done(id)
				}
			}()
		}
	})
}

// releaseTimeout bounds the store write that ends this replica's
// heartbeat at shutdown: a store that does not answer leaves it to run
// out, as before, rather than holding the process back.
const releaseTimeout = 5 * time.Second

// release ends this replica's heartbeat in the store once Shutdown has
// stopped every step, so that peers claim the transfers it left (a
// verification owed, or what a shutdown out of time cut short) at their
// next look, a quarter of a lease TTL at most, not once the heartbeat
// has run out. Never earlier: two replicas would drive one transfer. After
// a shutdown cut short, a request cancelled mid-write may still reach its
// provider: the heartbeat then ends leaseMargin from now, the room a
// running replica leaves for that too. The store ends it only if it is
// still this process's (Store.Release): a newer process under the same
// name keeps its own.
func (e *Engine) release(cut bool) {
	e.lease.Lock()
	on, last, superseded := e.lease.on, e.lease.expires, e.lease.superseded
	e.lease.Unlock()
	if !on || superseded {
		return // never opened, or the heartbeat is another process's now
	}
	at := e.now()
	if cut {
		at = at.Add(e.leaseMargin())
	}
	if !at.Before(last) {
		return // it has run out already, or does sooner
	}
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if err := e.store.Release(ctx, e.cfg.Owner, e.token, last, at); err != nil {
		e.log.Warn().Err(err).Msg("ending this replica's heartbeat failed; other replicas claim what it left once the heartbeat runs out")
		return
	}
	e.log.Info().Msg("heartbeat ended: other replicas claim what this one left at their next look")
}

// awaitSettled waits until no transfer this replica drives is open, or
// ctx ends, and returns how many are left.
func (e *Engine) awaitSettled(ctx context.Context) int {
	for {
		n, ch := e.unfinished()
		if n == 0 {
			return 0
		}
		// Superseded, nothing can be sent to finish them: the process that
		// took the name over drives them.
		if e.hard.Err() != nil || e.isSuperseded() {
			// An earlier Shutdown already stopped the workers: nothing
			// will move these any more.
			return n
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return n
		}
	}
}

// peers returns how many other replicas have a live heartbeat as
// shutdown begins, 0 when there is no heartbeat (the engine never
// opened) or the store cannot say.
func (e *Engine) peers(ctx context.Context) int {
	e.lease.Lock()
	on := e.lease.on
	e.lease.Unlock()
	if held, _ := e.leaseHeld(); !on || !held || e.isSuperseded() || e.isStopping() {
		return 0
	}
	// Bounded apart from the shutdown's own timeout: Start still takes
	// transfers until stopping is set, after this read.
	ctx, cancel := context.WithTimeout(ctx, max(e.cfg.LeaseTTL/4, time.Second))
	defer cancel()
	n, err := e.store.Peers(ctx, e.cfg.Owner, e.now())
	if err != nil {
		e.log.Warn().Err(err).Msg("shutting down: cannot tell whether another replica runs; giving the callers of the transfers in progress back")
		return 0
	}
	return n
}

// handOver saves a transfer that shutdown interrupts, between two steps,
// with no owner instead of giving its caller back, when Shutdown found a
// peer: the next peer's claim takes it (Store.Claim takes a transfer with
// no owner at once) and goes on from its record, as after a crash but
// without the wait for this replica's heartbeat to run out. A consult in
// progress thus survives a rolling restart. The peer may be shutting
// down too, and so take nothing: awaitHandover checks, and takes back
// what nobody took. It reports whether this replica stopped driving the
// transfer: handed over, or whether it was is unknown (the save failed;
// awaitHandover reads what the store holds).
func (e *Engine) handOver(ctx context.Context, en *entry) bool {
	e.mu.Lock()
	on := e.handover
	e.mu.Unlock()
	if !on || en.saveFailing {
		return false
	}
	en.t.Owner = ""
	detail := handedOverNote + " to another replica, which goes on with the transfer"
	if !en.resumed || en.adoptedAt.IsZero() {
		// No replica before this one can have sent anything unrecorded
		// (this one created the transfer, or took it from a hand-over
		// that said so): the next one need not wait from this one's
		// resumption either (adopt).
		detail += onRecordNote
	} else {
		// The next replica waits from this one's adoption, from which
		// this one waited: every request sent unrecorded went out before
		// it (this one took the transfer from a crash, after the send
		// gate of the replica before had shut), or before the one the
		// hand-over it claimed passed on (all it sent itself is on
		// record by now). Its resumption, later, made a chain of
		// hand-overs wait from the last one's. A consult seen live a
		// window after it, by the next replica's window, has outlived
		// any hang-up sent unrecorded before it (adopt).
		detail += unrecordedNote + en.adoptedAt.UTC().Format(time.RFC3339Nano)
		if !en.liveAt.IsZero() {
			detail += seenLiveNote + en.liveAt.UTC().Format(time.RFC3339Nano)
		}
	}
	e.note(en, StepReconcile, detail)
	saved := e.save(ctx, en)
	if en.lost {
		return true // another replica's already
	}
	// Dropped either way: saved, it is for a peer to claim; not saved,
	// the store may hold either record, and awaitHandover settles it.
	en.lost, en.ended = true, nil
	e.mu.Lock()
	e.handed[en.id] = struct{}{}
	e.mu.Unlock()
	if saved {
		en.log.Info().Str("state", string(en.t.State)).Msg("handed the transfer over to the other replicas")
	} else {
		en.log.Warn().Str("state", string(en.t.State)).Msg("handing the transfer over could not be saved; checking what the store holds before this replica stops")
	}
	return true
}

// awaitHandover waits for the peers to claim what handOver handed over,
// from the moment nothing more can be handed over (endHandover), for at
// most HandoverPatience and half of what is left of ctx, and then takes
// back what nobody claimed (the peers were shutting down too, or stopped
// meanwhile) and gives their callers back as a shutdown without a peer
// does. Transfers completing meanwhile go on. It returns, once every
// transfer this replica drives has settled or ctx ended, how many
// transfers are left unfinished.
func (e *Engine) awaitHandover(ctx context.Context) int {
	ids, ok := e.endHandover(ctx)
	if !ok || len(ids) == 0 {
		return e.awaitSettled(ctx)
	}
	wait := e.cfg.HandoverPatience
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d)/2)
	}
	deadline := time.Now().Add(wait)
	var unclaimed []*Transfer
	left := ids
	// unread: those the last look could not read. Neither claimed nor
	// taken back as far as this replica knows, their callers may be on
	// hold: they are reported left, as what a shutdown cut short leaves.
	unread := 0
	for {
		// waiting: handed over and not claimed yet, or unknown (the
		// store could not be read). Those still this replica's (the
		// hand-over's save did not land) no peer can claim: they are
		// taken back without waiting. Each look reads only what the
		// last one did not find claimed.
		unclaimed = unclaimed[:0]
		waiting := 0
		unread = 0
		var next []string
		for _, id := range left {
			t, err := e.store.Get(ctx, id)
			switch {
			case err != nil:
				waiting++
				unread++
				next = append(next, id)
			case !t.Open() || (t.Owner != "" && t.Owner != e.cfg.Owner && resumedSinceHandover(t)):
				// Claimed by a peer that drives it (or ended since).
			case t.Owner != "" && t.Owner != e.cfg.Owner:
				// Claimed by a peer that has not saved its resumption
				// yet: one about to drive it, or one that never will (its
				// tenant has no account of the provider there, or its
				// claim was on its way as its own shutdown began). Taken
				// back at the patience's end unless it drives it by then:
				// a peer saves its resumption before any request, so the
				// take-back's version check and that save exclude each
				// other.
				waiting++
				next = append(next, id)
				unclaimed = append(unclaimed, t)
			case t.Owner == "":
				waiting++
				next = append(next, id)
				unclaimed = append(unclaimed, t)
			default:
				next = append(next, id)
				unclaimed = append(unclaimed, t)
			}
		}
		left = next
		if len(left) == 0 {
			e.log.Info().Int("transfers", len(ids)).Msg("the other replicas took over every transfer handed over")
			return 0
		}
		if waiting == 0 || ctx.Err() != nil || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(e.cfg.PollInterval):
		}
	}
	if ctx.Err() != nil {
		// Cut short: what no peer claimed yet stays claimable, by a peer
		// or by this replica restarted; so does what is still running
		// here (a join that has not settled).
		n, _ := e.unfinished()
		for _, t := range unclaimed {
			if !e.local(t.ID) { // one this replica's own claim took is counted above
				n++
			}
		}
		return n + unread
	}
	if len(unclaimed) > 0 {
		e.log.Warn().Int("transfers", len(unclaimed)).
			Msg("no other replica took over transfers handed over: taking them back to give their callers back")
	}
	for _, t := range unclaimed {
		t, ok := e.takeBack(ctx, t)
		if t == nil {
			if !ok {
				unread++
			}
			continue
		}
		e.mu.Lock()
		delete(e.handed, t.ID)
		e.mu.Unlock()
		// One line per transfer: the line above counts those it tries,
		// some of which a peer turns out to drive, or whose hand-over
		// was never saved (kept, not taken back from anyone).
		e.log.Info().Str("transfer_id", t.ID).Msg("took back a transfer handed over, to give its caller back")
		e.adopt(t, true)
	}
	if unread > 0 {
		e.log.Warn().Int("transfers", unread).
			Msg("transfers handed over could not be read or taken back: they stay in the store for the next replica to claim")
	}
	return e.awaitSettled(ctx) + unread
}

// endHandover waits until nothing this replica drives can be handed over
// any more (every transfer is completing, recovering or ended, and no
// Start is adopting one), and then ends the hand-over: it returns what
// was handed over, with ok, or ok false when ctx ended first (or nothing
// can move any more). Only then do the looks for the claims begin: a
// transfer completing may take the whole step timeout and a
// verification, and the callers handed over waited that long on hold
// for a take-back when no peer claimed them; cut short meanwhile, the
// shutdown took nothing back and left them there with no replica
// running.
//
// The count and the end are made under one lock, which adopt (an entry
// made) and handOver (its check) take too: what this replica adopts
// after it (a claim that was on its way) is given back, not handed
// over where no look would see it, and what was handed over before it
// has been counted here until its entry was dropped, after it joined
// e.handed.
func (e *Engine) endHandover(ctx context.Context) ([]string, bool) {
	for {
		e.mu.Lock()
		n := 0
		if e.handover {
			for _, c := range e.creating {
				n += c
			}
			for _, en := range e.entries {
				t := en.cur.Load()
				if c := en.claimed.Load(); c != nil {
					t = c
				}
				if t != nil && handable(t.State) {
					n++
				}
			}
		}
		if n == 0 {
			e.handover = false
			ids := slices.Collect(maps.Keys(e.handed))
			e.mu.Unlock()
			return ids, true
		}
		ch := e.settled
		e.mu.Unlock()
		if e.hard.Err() != nil || e.isSuperseded() {
			return nil, false
		}
		// A move to completing closes no channel: looked at again after
		// a moment.
		select {
		case <-ch:
		case <-time.After(e.cfg.PollInterval):
		case <-ctx.Done():
			return nil, false
		}
	}
}

// handable reports whether a transfer in state s may still be handed over
// by a shutdown (see interrupted and consulting): it has not begun to join
// or to give its caller back.
func handable(s State) bool {
	switch s {
	case StatePending, StateHolding, StateDialing, StateConsulting:
		return true
	}
	return false
}

// takeBackTries bounds how often takeBack tries again after a write made
// meanwhile: each is a claim or a take-back of a replica shutting down,
// of which there are few.
const takeBackTries = 4

// takeBack makes t, handed over and read with no peer driving it, this
// replica's again, as a claim takes it: a save at the version read. It
// returns the record to adopt, or nil with ok when nothing is left to
// do (a peer drives it, or it ended), or nil without ok when what the
// store holds is unknown (it could not be read or written).
//
// A save that conflicts is not taken as a peer driving the transfer: the
// write that moved the version may be a claim that landed after the last
// look, by a peer that never drives it (one stopping, or with no account
// of the provider), the very case the resumption rule is for. The record
// is read again and judged as a look judges it.
func (e *Engine) takeBack(ctx context.Context, t *Transfer) (*Transfer, bool) {
	for try := 1; ; try++ {
		if t.Owner == e.cfg.Owner {
			return t, true // the hand-over's save did not land, or this replica's own claim took it
		}
		// A peer's claim or resumption made meanwhile moved the version,
		// and this save fails.
		t.Owner, t.Token = e.cfg.Owner, e.token
		err := e.store.Update(ctx, t)
		if err == nil {
			return t, true
		}
		if errors.Is(err, ErrSuperseded) {
			e.supersede()
			return nil, false
		}
		if !errors.Is(err, ErrVersionConflict) || try == takeBackTries {
			e.log.Warn().Err(err).Str("transfer_id", t.ID).Msg("taking back a transfer handed over failed: it stays for the next replica to claim")
			return nil, false
		}
		id := t.ID
		if t, err = e.store.Get(ctx, id); err != nil {
			e.log.Warn().Err(err).Str("transfer_id", id).Msg("reading back a transfer handed over failed: it stays for the next replica to claim")
			return nil, false
		}
		if !t.Open() || (t.Owner != "" && t.Owner != e.cfg.Owner && resumedSinceHandover(t)) {
			return nil, true // a peer drives it, or it ended
		}
	}
}

// resumedSinceHandover reports whether t's owner saved its resumption
// ("resumed by", the first save of a replica that drives a transfer it
// claimed, before any request) after the last hand-over of t.
func resumedSinceHandover(t *Transfer) bool {
	resumed := resumedNote + t.Owner
	for i := len(t.Steps) - 1; i >= 0; i-- {
		switch d := t.Steps[i].Detail; {
		case t.Steps[i].Name == StepReconcile && d == resumed:
			return true
		case strings.HasPrefix(d, handedOverNote):
			return false
		}
	}
	return false
}

// unrecordedUntil is, for a transfer claimed from a hand-over, the latest
// moment from which a hang-up a replica sent unrecorded may still land a
// visibility window later: the adoption the last hand-over says its
// replica waited from (unrecordedNote), zero if it says that its replica
// had nothing to wait for (onRecordNote: it created the transfer, or took
// it from such a hand-over), or, for a hand-over by a release that says
// neither, when its replica saved its resumption of t ("resumed by",
// recorded once it adopted t, so at or after its adoption; zero if none
// did).
func unrecordedUntil(t *Transfer) time.Time {
	for i := len(t.Steps) - 1; i >= 0; i-- {
		switch s := t.Steps[i]; {
		case s.Name != StepReconcile:
		case strings.HasPrefix(s.Detail, handedOverNote) && strings.HasSuffix(s.Detail, onRecordNote):
			return time.Time{}
		case strings.HasPrefix(s.Detail, handedOverNote):
			// Unparsable, it is waited for from the resumption before it,
			// which is no earlier.
			if _, rest, ok := strings.Cut(s.Detail, unrecordedNote); ok {
				at, _, _ := strings.Cut(rest, ";")
				if adopted, err := time.Parse(time.RFC3339Nano, at); err == nil {
					return adopted
				}
			}
		case strings.HasPrefix(s.Detail, resumedNote):
			return s.StartedAt
		}
	}
	return time.Time{}
}

// seenLiveAt is, for a transfer claimed from a hand-over, when the
// replica that handed it over last saw its consult live, as its hand-over
// says (seenLiveNote); zero if it does not say, or if that replica
// created the transfer or claimed it from a hand-over on record
// (onRecordNote instead).
func seenLiveAt(t *Transfer) time.Time {
	for i := len(t.Steps) - 1; i >= 0; i-- {
		switch s := t.Steps[i]; {
		case s.Name != StepReconcile:
		case strings.HasPrefix(s.Detail, handedOverNote):
			_, at, ok := strings.Cut(s.Detail, seenLiveNote)
			if !ok {
				return time.Time{}
			}
			live, err := time.Parse(time.RFC3339Nano, at)
			if err != nil {
				return time.Time{}
			}
			return live
		case strings.HasPrefix(s.Detail, resumedNote):
			return time.Time{}
		}
	}
	return time.Time{}
}

// handedOverNote begins the step handOver records, and onRecordNote ends
// it when no replica before the one handing over can have sent anything
// unrecorded (a suffix, so that a release that looks for the note by its
// beginning still finds it); otherwise unrecordedNote and a time follow
// it, the adoption that replica waited from, and seenLiveNote and a time
// end it when that replica saw the consult live (when the reading that
// showed it began; last, where a release before unrecordedNote reads it).
// resumedNote, followed by the replica's name, is the step a replica
// saves first when it goes on with a transfer it did not drive
// (reconcile).
const (
	handedOverNote = "transferd shut down: handed over"
	onRecordNote   = "; every request sent for it is on record"
	unrecordedNote = "; what was sent for it unrecorded went out before "
	seenLiveNote   = "; its consult was last seen live at "
	resumedNote    = "resumed by "
)

// unfinished counts the entries shutdown still waits for: transfers not
// terminal yet. Terminal ones with a cleanup obligation are left to the
// next owner.
func (e *Engine) unfinished() (int, <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.creating {
		n += c
	}
	for _, en := range e.entries {
		if t := en.cur.Load(); t != nil && !t.State.Terminal() {
			n++
		}
	}
	return n, e.settled
}

// Shutdown stops taking transfers and lets every running transfer finish
// or compensate: a transfer already completing is finished; one between
// steps before that (consulting, or not yet dialled) is handed over when
// another replica has a live heartbeat (handOver: saved with no owner,
// for that replica to claim and go on with), and otherwise abandoned
// with reason shutdown, its caller taken off hold. What no peer has taken
// up (claimed, and saved its resumption) within HandoverPatience is taken
// back and abandoned the same way. When
// ctx ends first, provider calls in progress are cancelled
// and what is left stays in the store for the next owner (this replica
// restarted, or another once this one's heartbeat expired); the error
// says how many transfers that was. Shutdown returns promptly at ctx's
// end: it never waits for a provider.
func (e *Engine) Shutdown(ctx context.Context) error {
	peers := e.peers(ctx)
	e.mu.Lock()
	first := !e.stopping
	if first {
		e.stopping = true
		e.handover = peers > 0
		close(e.stop)
	}
	ids := make([]string, 0, len(e.entries))
	for id := range e.entries {
		ids = append(ids, id)
	}
	e.mu.Unlock()
	if first && len(ids) > 0 {
		if peers > 0 {
			e.log.Info().Int("peers", peers).Msg("shutting down: handing the transfers in progress over to the other replicas")
		} else {
			e.log.Info().Msg("shutting down: no other replica to hand the transfers in progress over to; giving their callers back")
		}
	}
	for _, id := range ids {
		e.q.Add(id)
	}
	var left int
	if first {
		left = e.awaitHandover(ctx)
	} else {
		left = e.awaitSettled(ctx)
	}
	e.cancelHard()
	e.q.Close()
	e.workers.Wait()
	e.bg.Wait()
	// Nothing is driven here any more. What is left is let go, so that
	// Running and the gauges of what this replica drives say so: a
	// transfer that ended owing its call a verification (its obligation
	// is in the store, for the sweeper of whichever replica runs next),
	// and one the deadline cut short (its last saved record is resumed by
	// the next owner).
	e.mu.Lock()
	rest := slices.Collect(maps.Values(e.entries))
	e.mu.Unlock()
	for _, en := range rest {
		e.drop(en)
	}
	e.release(left > 0)
	if left > 0 && e.isSuperseded() {
		return fmt.Errorf("orchestrator: %w; %d transfers left to it", ErrSuperseded, left)
	}
	if left > 0 {
		return fmt.Errorf("orchestrator: shutdown deadline passed with %d transfers still running; they stay in the store for the next owner", left)
	}
	return nil
}
