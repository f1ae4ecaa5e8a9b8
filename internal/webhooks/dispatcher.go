package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/sendgate"
)

// Render turns an event (with its Transfer snapshot) into the body of
// its deliveries: the API's resource rendering, so that a webhook carries
// what GET /v1/transfers/{id} would have returned then.
type Render func(orchestrator.Event) ([]byte, error)

// Config tunes a Dispatcher. Zero values take the defaults.
type Config struct {
	// Owner names this replica in delivery leases (the engine's Owner).
	Owner string
	// ScanInterval is how often the outbox and the due deliveries are
	// read when there is nothing to send; default 200 ms.
	ScanInterval time.Duration
	// EnqueueGap is the least time between two reads of the outbox;
	// default 10 ms. Every save that writes events nudges the
	// dispatcher: reading the outbox each time made an enqueue, a
	// transaction of the store's writer, of about one event. A nudge
	// within the gap leaves the outbox to the gap's end, which enqueues
	// whatever came meanwhile at once.
	EnqueueGap time.Duration
	// Concurrency bounds attempts in flight; default 32. A transfer's
	// events go one at a time (in order), so this spreads over transfers.
	// While every slot is taken, an endpoint with nothing in flight and
	// not known to hang still gets one attempt (shares.next), up to
	// Extras of them.
	Concurrency int
	// Extras bounds the attempts in flight beyond Concurrency, of
	// endpoints with nothing else in flight; default Concurrency. In
	// flight at once are at most Concurrency plus Extras, whatever the
	// endpoints configured: unbounded, receivers of thousands of tenants
	// starting to hang together were as many connections for a Timeout,
	// and as many claims, one after another, each skipping every endpoint
	// busy so far (shares.next).
	Extras int
	// EndpointConcurrency bounds one endpoint's attempts in flight;
	// default half of Concurrency. With the last quarter of Concurrency
	// kept for endpoints that have nothing in flight, it keeps an endpoint
	// that does not answer (each attempt holding its slot up to Timeout)
	// from holding back every other endpoint's, and tenant's, webhooks.
	EndpointConcurrency int
	// Timeout bounds one attempt; default 10 s. The lease is Timeout plus
	// a margin, so that a live replica never loses a claim mid-attempt.
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the exponential back-off between
	// attempts (defaults 1 s and 10 min); a Retry-After longer than the
	// back-off is honoured (up to the delivery's deadline).
	MinBackoff, MaxBackoff time.Duration
	// MaxAge is how long a delivery keeps being retried before it becomes
	// a dead letter; default 24 h.
	MaxAge time.Duration
	// UnconfiguredGrace is how long the deliveries of an endpoint no
	// longer configured (removed from the tenants file, or renamed) are
	// kept before they are given up unsent, dead letters that say why;
	// default 10 min. They are given up only once the replicas that
	// claimed them found the endpoint missing for that long, with no
	// attempt, redelivery or enqueue of a replica that still has it in
	// between: during a rolling change of the configuration a replica
	// with the old one goes on sending them. It is the time a change of
	// the configuration may take to reach every replica
	// (TRANSFERD_WEBHOOK_UNCONFIGURED_GRACE).
	UnconfiguredGrace time.Duration
	// Batch bounds the events read from the outbox per endpoint and scan;
	// default 500.
	Batch int
	// Clock is the wall clock of due times and leases; time.Now when nil.
	// cmd/transferd gives it the engine's (the database server's time on
	// PostgreSQL).
	Clock func() time.Time
	// Client sends the attempts; default one with Timeout, no redirects
	// followed (a redirect is a failed attempt), an idle connection kept
	// for every attempt that may be in flight, and each attempt's claim
	// checked before every write (sendgate.Transport; a Client given
	// should be made with it too).
	Client *http.Client
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ScanInterval, 200*time.Millisecond)
	def(&c.EnqueueGap, 10*time.Millisecond)
	def(&c.Timeout, 10*time.Second)
	def(&c.MinBackoff, time.Second)
	def(&c.MaxBackoff, 10*time.Minute)
	def(&c.MaxAge, 24*time.Hour)
	def(&c.UnconfiguredGrace, 10*time.Minute)
	if c.Concurrency <= 0 {
		c.Concurrency = 32
	}
	if c.Extras <= 0 {
		c.Extras = c.Concurrency
	}
	if c.EndpointConcurrency <= 0 {
		c.EndpointConcurrency = c.Concurrency / 2
	}
	c.EndpointConcurrency = min(max(c.EndpointConcurrency, 1), c.Concurrency)
	if c.Batch <= 0 {
		c.Batch = 500
	}
	if c.Owner == "" {
		c.Owner = "local"
	}
	if c.Client == nil {
		// Keep an idle connection for every attempt a host may have in
		// flight (EndpointConcurrency each of its endpoints, Concurrency
		// in all): with Go's default of two per host, most deliveries to
		// a busy endpoint opened a new TCP (and TLS) connection (0.87 a
		// delivery in transferbench -webhooks).
		pooled := http.DefaultTransport.(*http.Transport).Clone()
		pooled.MaxIdleConnsPerHost = c.Concurrency
		pooled.MaxIdleConns = max(pooled.MaxIdleConns, 2*c.Concurrency)
		c.Client = &http.Client{Timeout: c.Timeout, Transport: sendgate.Transport(pooled), CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
}

// Dispatcher delivers events; see the package doc.
type Dispatcher struct {
	cfg    Config
	store  Store
	dir    Directory
	render Render
	log    zerolog.Logger
	m      *metrics
	now    func() time.Time
	// mono times EnqueueGap and how long a claim's attempt may still be
	// sent (sendable): the process's clock, whatever now is (a test's may
	// stand still).
	mono func() time.Time

	// gauged is when gauge last read the backlog, and oldestPending the
	// oldest pending delivery's creation then; repaired is when repair
	// last ran (Run's own).
	gauged, oldestPending, repaired time.Time

	mu      sync.Mutex
	signers map[string]signerFor // by endpoint key
	// paused holds, by endpoint key, the endpoints whose claims this
	// replica skips for a while: their receiver asked to be left alone
	// (pause).
	paused map[string]pauseMark
	// gone holds, by endpoint key, the endpoints that answered 410 Gone
	// (markGone).
	gone map[string]goneMark
	// missing holds, by endpoint key, since when (d.now) this replica
	// has found the endpoint of deliveries it claimed not configured,
	// with no sign since that another replica has it (unconfigured), nor
	// that it is configured here again (forgetConfigured).
	missing map[string]missingMark
	// hung holds the endpoint keys whose last attempt at this replica got
	// no answer within Timeout (noteAnswer): together they get at most
	// half the slots (shares.next).
	hung map[string]bool
	// reading counts the answers' bodies being read after their
	// attempts ended (drain), by endpoint key (no zeros) and in all.
	reading      map[string]int
	readingTotal int
	// nudge wakes Run's claims, nudgeOutbox its enqueuer.
	nudge, nudgeOutbox chan struct{}
	// bodyDrain bounds the read of an answer's body after its status
	// (drain): the const bodyDrain, but in tests.
	bodyDrain time.Duration

	// finished, when set (by tests), is called after each recorded
	// attempt; scanned after each scan of Run; gaveBack after each
	// attempt (of Run or Drain) has ended and given its slot back;
	// drained after each answer's body was read (drain).
	finished func(Delivery)
	scanned  func()
	gaveBack func()
	drained  func()
}

// goneMark is an endpoint's answer 410 Gone to an attempt sent to url:
// when (at, d.now), and until when it is heeded (until on d.mono, and
// ends on d.now, which the error of each delivery it gives up tells).
type goneMark struct {
	url             string
	at, ends, until time.Time
}

// pauseMark is a Retry-After that the receiver at url answered an
// attempt to the tenant's endpoint with: its claims are skipped until
// until (on d.mono), while the endpoint's URL is still url.
type pauseMark struct {
	tenant, endpoint, url string
	until                 time.Time
}

// errGone is the error of a delivery given up unsent because its
// endpoint answered 410 Gone (markGone).
var errGone = errors.New("not sent: the endpoint answered 410 Gone")

// signerFor caches an endpoint's parsed secrets while they stay the same.
type signerFor struct {
	secrets string
	s       signer
	err     error
}

// New returns a dispatcher; Run starts it.
func New(cfg Config, store Store, dir Directory, render Render, log zerolog.Logger, reg prometheus.Registerer) *Dispatcher {
	cfg.setDefaults()
	clock := cfg.Clock
	if clock == nil {
		clock = time.Now
	}
	return &Dispatcher{cfg: cfg, store: store, dir: dir, render: render, log: log, m: newMetrics(reg),
		now: func() time.Time { return clock().UTC() }, mono: time.Now, signers: map[string]signerFor{}, paused: map[string]pauseMark{},
		gone: map[string]goneMark{}, missing: map[string]missingMark{}, hung: map[string]bool{}, reading: map[string]int{}, bodyDrain: bodyDrain,
		nudge: make(chan struct{}, 1), nudgeOutbox: make(chan struct{}, 1)}
}

// Nudge asks for a scan now (a redelivery, a save that wrote events):
// a read of the outbox (within EnqueueGap) and a claim.
func (d *Dispatcher) Nudge() {
	signal(d.nudgeOutbox)
	signal(d.nudge)
}

// signal wakes whoever waits on c, or leaves a wake for it.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Run delivers until ctx is done, then waits for the attempts in flight
// (each bounded by Timeout) and the reads of their answers' bodies (by
// bodyDrain), stores their results and returns. Store failures are
// logged and retried at the next scan.
//
// An attempt that ends hands its result to the scan it wakes, which
// stores it with its next claim in one write (Store.SettleDeliveries):
// with every event delivered, the results written on their own were as
// many transactions of the store's writer as the claims. The outbox is
// copied into deliveries by a goroutine of its own (enqueuer), which
// wakes the scans when it has: an enqueue reads and renders events, and
// the results and claims of the scans do not wait for it.
func (d *Dispatcher) Run(ctx context.Context) {
	sh := d.newShares()
	done := make(chan struct{}, d.cfg.Concurrency)
	var results ended
	var wg sync.WaitGroup
	// Once ctx is done: the attempts in flight are waited for, and each
	// one's result is stored as it ends, not once the last has (one
	// endpoint that does not answer may outlast the shutdown's timeout).
	defer func() {
		idle := make(chan struct{})
		go func() { wg.Wait(); close(idle) }()
		for {
			select {
			case <-idle:
				d.settle(ctx, &results, sh, 0, nil, false, &wg, done)
				return
			case <-done:
				d.settle(ctx, &results, sh, 0, nil, false, &wg, done)
			}
		}
	}()
	var enqueuer sync.WaitGroup
	defer enqueuer.Wait()
	enqueuer.Go(func() { d.enqueuer(ctx) })
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-d.nudge:
		case <-done:
		}
		d.repair(ctx)
		d.forgetConfigured()
		// Claim until nothing more may be claimed or nothing more is
		// due: each claim is bounded so that no endpoint passes its
		// share, and once the slots are taken an endpoint with nothing
		// in flight gets an extra, one a claim.
		for {
			limit, skip, extra := sh.next(d.hungKeys())
			skip = d.withPaused(skip)
			if d.allSkipped(skip) {
				limit = 0
			}
			if claimed, ok := d.settle(ctx, &results, sh, limit, skip, extra, &wg, done); !ok || claimed < limit || limit == 0 {
				break
			}
		}
		d.gauge(ctx)
		if d.scanned != nil {
			d.scanned()
		}
		reset(timer, d.cfg.ScanInterval)
	}
}

// enqueuer copies the outbox into deliveries until ctx is done: at each
// nudge, no sooner than EnqueueGap after its last read of the outbox,
// and every ScanInterval. When it enqueued something it wakes the scans.
func (d *Dispatcher) enqueuer(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var last time.Time // when the outbox was last read, by d.mono
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-d.nudgeOutbox:
		}
		if gap := d.cfg.EnqueueGap - d.mono().Sub(last); gap > 0 {
			reset(timer, gap) // the outbox is read when the gap ends
			continue
		}
		last = d.mono()
		more, some := d.enqueue(ctx)
		if some {
			signal(d.nudge)
		}
		wait := d.cfg.ScanInterval
		if more {
			// An endpoint has more to enqueue: the next read, at the
			// gap's end, goes on from where this one stopped.
			wait = d.cfg.EnqueueGap
		}
		reset(timer, wait)
	}
}

// reset makes t fire after wait, whether or not it fired since its last
// reset.
func reset(t *time.Timer, wait time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(wait)
}

// settle stores the results of the attempts that ended and claims up to
// limit deliveries (none once ctx is done), in one write, and starts an
// attempt for each delivery claimed, which takes its slot in sh (an
// extra if extra) and hands its result to ended. It returns how many it
// claimed, and false if the store failed: the results the store does not
// hold (readBack) are then kept for the next scan's write, while their
// claims last (ended.keep). Dropped, each such delivery stayed leased to
// this replica until its lease ran out and was then sent again, a
// delivered one included, although the store was back at the next scan.
func (d *Dispatcher) settle(ctx context.Context, ended *ended, sh *shares, limit int, skip []string, extra bool, wg *sync.WaitGroup, done chan struct{}) (int, bool) {
	if ctx.Err() != nil {
		limit = 0
	}
	rs := ended.take()
	if len(rs) == 0 && limit == 0 {
		return 0, true
	}
	// A result is stored whatever ctx says, as FinishDelivery's are: a
	// result lost at shutdown is an attempt made again by another
	// replica, a delivery the endpoint gets twice.
	sctx := ctx
	if len(rs) > 0 {
		sctx = context.WithoutCancel(ctx)
	}
	at := d.mono()
	vs, claimed, err := d.store.SettleDeliveries(sctx, rs, d.cfg.Owner, d.now(), d.lease(), limit, skip)
	if err != nil {
		if ctx.Err() == nil || len(rs) > 0 {
			d.log.Error().Err(err).Int("results", len(rs)).Msg("webhooks: record attempts and claim deliveries")
		}
		ended.keep(rs, d.readBack(sctx, err, rs), d.mono())
		return 0, false
	}
	ended.stored(rs)
	for i, dl := range rs {
		d.recorded(dl, vs[i].Delivery, vs[i].OK)
	}
	for _, dl := range claimed {
		key := EndpointKey(dl.Tenant, dl.Endpoint)
		sh.take(key, extra)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ended.add(d.try(d.gated(context.WithoutCancel(ctx), at), dl, wg), at.Add(d.lease()))
			sh.give(key, extra)
			if d.gaveBack != nil {
				d.gaveBack()
			}
			select {
			case done <- struct{}{}:
			default:
			}
		}()
	}
	return len(claimed), true
}

// ended holds the results of attempts that Run has yet to store, each
// with when its claim's lease ends (on d.mono).
type ended struct {
	mu    sync.Mutex
	ds    []Delivery
	until map[claim]time.Time
}

// claim names one claim of a delivery: its ID and Attempts.
type claim struct {
	id       string
	attempts int
}

// add hands over the result of an attempt whose claim lasts until until.
func (r *ended) add(dl Delivery, until time.Time) {
	r.mu.Lock()
	r.ds = append(r.ds, dl)
	if r.until == nil {
		r.until = map[claim]time.Time{}
	}
	r.until[claim{dl.ID, dl.Attempts}] = until
	r.mu.Unlock()
}

// take returns the results to store.
func (r *ended) take() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	ds := r.ds
	r.ds = nil
	return ds
}

// keep hands back, for the next write, the results of unheld (those of
// rs, a write that failed, that the store does not hold) whose claims
// last after now; the others are dropped. Writing a result again is safe:
// the store applies it only while the delivery is still pending under
// its claim (ApplyResult), and it is counted when the store says it
// applied it, which readBack's results were not. Past the claim's lease
// another replica may have taken the delivery (its result is the one
// that counts), and a result the store keeps refusing is not tried for
// ever, holding up every claim of this replica.
func (r *ended) keep(rs, unheld []Delivery, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, dl := range unheld {
		if until, ok := r.until[claim{dl.ID, dl.Attempts}]; ok && now.Before(until) {
			r.ds = append(r.ds, dl)
		}
	}
	kept := make(map[claim]bool, len(r.ds))
	for _, dl := range r.ds {
		kept[claim{dl.ID, dl.Attempts}] = true
	}
	for _, dl := range rs {
		if c := (claim{dl.ID, dl.Attempts}); !kept[c] {
			delete(r.until, c)
		}
	}
}

// stored forgets the claims of results the store took (or refused).
func (r *ended) stored(ds []Delivery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, dl := range ds {
		delete(r.until, claim{dl.ID, dl.Attempts})
	}
}

// allSkipped reports whether a claim would skip every endpoint
// configured: one at its share is skipped, and while every one is, a
// claim (a transaction of the store's writer, at every save's nudge)
// could take only deliveries of endpoints no longer configured, whose
// attempts fail anyway; they wait for a scan with a slot free.
func (d *Dispatcher) allSkipped(skip []string) bool {
	if len(skip) == 0 {
		return false
	}
	for _, tenant := range d.dir.Tenants() {
		for _, ep := range d.dir.Endpoints(tenant) {
			if !slices.Contains(skip, EndpointKey(tenant, ep.ID)) {
				return false
			}
		}
	}
	return true
}

// shares divides the attempts in flight among endpoints. An attempt holds
// its slot until the endpoint answers or Timeout passes, so an endpoint
// that does not answer would otherwise come to hold every slot (its
// retries are the oldest due) and hold back every other endpoint's
// webhooks for as long as it stays down. An endpoint holds at most
// perEndpoint slots, and the last reserve free ones go only to endpoints
// with nothing in flight, one per claim. Once every slot is taken, an
// endpoint with nothing in flight that is not known to hang gets one
// attempt all the same, beyond the slots (an extra, up to Extras in
// flight): receivers that start hanging together, not yet known to, may
// hold every slot for a Timeout, and a healthy endpoint then waited that
// long for its next event (next).
type shares struct {
	mu                                  sync.Mutex
	total, perEndpoint, reserve, extras int
	inFlight                            int            // attempts holding a slot; extras do not
	extraInFlight                       int            // extras in flight
	busy                                map[string]int // attempts in flight by endpoint key, extras included; no zeros
}

// newShares divides the dispatcher's Concurrency: EndpointConcurrency
// for an endpoint, a quarter kept in reserve.
func (d *Dispatcher) newShares() *shares {
	return &shares{total: d.cfg.Concurrency, perEndpoint: d.cfg.EndpointConcurrency, reserve: d.cfg.Concurrency / 4,
		extras: d.cfg.Extras, busy: map[string]int{}}
}

// lease is how long a claim holds a delivery (Config.Timeout): the
// attempt's Timeout, half as much again for the claim's own round trip
// to the store, and a second for the replicas' clocks (sendable).
func (d *Dispatcher) lease() time.Duration { return d.cfg.Timeout + d.cfg.Timeout/2 + time.Second }

// sendable is how long after a claim began, on the process's clock, its
// attempt may still be written: its lease but the last second, by which
// another replica's reckoning of the lease's end may differ (the
// replicas of one database tell time by its server's clock, within a few
// hundred milliseconds).
func (d *Dispatcher) sendable() time.Duration { return d.lease() - time.Second }

// gated returns ctx whose request is written only while the claim that
// began at (d.mono) is sendable. A replica stopped between claiming a
// delivery and sending it (in the claim's round trip to the store, or
// after) woke, its lease run out, and sent what another replica had sent
// meanwhile, and that transfer's later events too: an older event
// arriving again after newer ones, which a receiver that does not keep
// every webhook-id it applied takes for news. The attempt's Timeout did
// not stop it: on waking, the write and the timer that cancels the
// attempt run in no set order. The attempt is recorded as failed (unless
// another replica holds the delivery now, whose result counts) and made
// again after its back-off; nothing of it was sent.
func (d *Dispatcher) gated(ctx context.Context, at time.Time) context.Context {
	until := at.Add(d.sendable())
	return sendgate.With(ctx, func() bool { return d.mono().Before(until) })
}

// next returns how many deliveries the next claim may take, the
// endpoints it must skip, and whether what it takes are extras. hung are
// the endpoints whose last attempt got no answer within Timeout: they
// hold at most half the slots together. The shares of one endpoint and
// the reserve held against one hung receiver, or a few, not dozens: with
// some 30 hanging at once (a network partition, a provider of many
// tenants' receivers down), every slot was held by one of them, each
// attempt for Timeout, their retries (the oldest due) taking each slot
// that came free, and a healthy endpoint waited for a slot like them
// for as long as they hung.
//
// With no slot free, the claim is of an extra: one delivery of an
// endpoint with nothing in flight and not hung, beyond the slots.
// Claims take the earliest due first, and receivers that start hanging
// together are not known to hang until an attempt of theirs has timed
// out: their first attempts took every slot, and a healthy endpoint,
// its events newer, waited a Timeout for one; then, as the slots came
// free, receivers not attempted yet took them (the reserve goes to
// endpoints with nothing in flight, one each), and it waited another,
// round after round, once per outage. With extras every endpoint with a
// delivery due is attempted in the first round (each hanging one is
// known to hang once its attempt times out), and a healthy endpoint
// always has an attempt in flight while it has one due: what hanging
// receivers cost it is its attempts beyond the first until they are
// known to hang, and a claim (a write of the store) for each endpoint
// with nothing in flight whose delivery was due before its own. Extras
// are one an endpoint, a goroutine and a connection each (those of an
// endpoint no longer configured end at once, unsent); an endpoint known
// to hang gets none, so that it stays within its half.
//
// With Extras in flight too, nothing is claimed until one ends.
// Unbounded, receivers of thousands of tenants starting to hang together
// took as many extras, connections held for a Timeout, claimed one a
// claim, each claim skipping every endpoint busy so far (a skip list,
// and a store's read of the endpoints it passes over, as long as the
// extras claimed before it): a scan of minutes for 2,000 of them. The
// bound's price: past the slots and the extras, a healthy endpoint whose
// events are newer than theirs waits again, a Timeout a round, until
// every hanging receiver has been attempted (and is known to hang).
func (s *shares) next(hung []string) (limit int, skip []string, extra bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	free := s.total - s.inFlight
	if free <= 0 && s.extraInFlight >= s.extras {
		return 0, nil, false
	}
	if free <= 0 {
		skip = append(skip, hung...)
		for key := range s.busy {
			if !slices.Contains(skip, key) {
				skip = append(skip, key)
			}
		}
		return 1, skip, true
	}
	hungRoom := max(s.total/2, 1)
	for _, key := range hung {
		hungRoom -= s.busy[key]
	}
	if hungRoom <= 0 {
		skip = append(skip, hung...)
	}
	tight := free <= s.reserve
	most := 0
	for key, n := range s.busy {
		switch {
		case slices.Contains(skip, key):
		case tight || n >= s.perEndpoint:
			skip = append(skip, key)
		default:
			most = max(most, n)
		}
	}
	if tight {
		return 1, skip, false
	}
	// Every endpoint not skipped has room for the whole claim, and the
	// claim leaves the reserve; hung endpoints not skipped have room for
	// it in their half.
	limit = min(free-s.reserve, s.perEndpoint-most)
	if hungRoom > 0 && len(hung) > 0 {
		limit = min(limit, hungRoom)
	}
	return limit, skip, false
}

// hungKeys returns the endpoints marked hung (noteAnswer).
func (d *Dispatcher) hungKeys() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.hung) == 0 {
		return nil
	}
	keys := make([]string, 0, len(d.hung))
	for key := range d.hung {
		keys = append(keys, key)
	}
	return keys
}

// noteAnswer marks the endpoint key hung when an attempt of it got no
// answer within Timeout (err, with no code), and unmarks it when one got
// an answer (code). Other failures (a refused connection, a DNS error)
// hold a slot for no time, and leave the mark as it is.
func (d *Dispatcher) noteAnswer(key string, code int, err error) {
	var timeout interface{ Timeout() bool }
	timedOut := code == 0 && err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &timeout) && timeout.Timeout())
	if code == 0 && !timedOut {
		return
	}
	d.mu.Lock()
	if timedOut {
		d.hung[key] = true
	} else {
		delete(d.hung, key)
	}
	d.mu.Unlock()
}

// take counts an attempt of the endpoint key in flight, in a slot unless
// it is an extra (next).
func (s *shares) take(key string, extra bool) {
	s.mu.Lock()
	if extra {
		s.extraInFlight++
	} else {
		s.inFlight++
	}
	s.busy[key]++
	s.mu.Unlock()
}

// idle reports whether no attempt is in flight.
func (s *shares) idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.busy) == 0
}

// give ends what take counted.
func (s *shares) give(key string, extra bool) {
	s.mu.Lock()
	if extra {
		s.extraInFlight--
	} else {
		s.inFlight--
	}
	if s.busy[key]--; s.busy[key] == 0 {
		delete(s.busy, key)
	}
	s.mu.Unlock()
}

// Drain delivers, in the caller's goroutine, until nothing is due now:
// every new event is enqueued and every due delivery attempted (a failed
// one is retried only if its back-off already passed). Run does the same
// continuously; Drain serves a one-off flush and tests that need to know
// when the attempts they caused were made. It claims as Run does, within
// the endpoints' shares (shares), and claims again as each attempt ends:
// one claim of Concurrency sent them all to one endpoint at shutdown,
// twice the EndpointConcurrency it gets otherwise, and rounds that each
// waited for every attempt they made held a transfer's next event behind
// any receiver that did not answer, a Timeout a round. It returns once
// its attempts, and the reads of their answers' bodies, have ended.
func (d *Dispatcher) Drain(ctx context.Context) error {
	sh := d.newShares()
	var wg sync.WaitGroup
	defer wg.Wait()
	ended := make(chan struct{}, 1)
	d.enqueueAll(ctx)
	for {
		// Whether nothing was in flight before the claim, not after: an
		// attempt that ended during a claim that found nothing due may
		// have made its transfer's next event due too late for it, and
		// the drain returned with that event unsent.
		idle := sh.idle()
		claimed, err := d.drainClaims(ctx, sh, &wg, ended)
		if err != nil {
			return err
		}
		if claimed == 0 && idle {
			// Nothing due, nothing in flight: a last read of the
			// outbox, for what was saved meanwhile.
			if !d.enqueueAll(ctx) {
				return nil
			}
			continue
		}
		<-ended
	}
}

// enqueueAll enqueues every endpoint's new events, and reports whether
// it enqueued any delivery.
func (d *Dispatcher) enqueueAll(ctx context.Context) bool {
	some := false
	for more := true; more && ctx.Err() == nil; {
		var n bool
		more, n = d.enqueue(ctx)
		some = some || n
	}
	return some
}

// drainClaims claims what is due within the shares sh and starts an
// attempt for each, which signals ended once it has ended and given its
// slot back; it returns how many it claimed.
func (d *Dispatcher) drainClaims(ctx context.Context, sh *shares, wg *sync.WaitGroup, ended chan struct{}) (int, error) {
	d.forgetConfigured()
	total := 0
	for {
		limit, skip, extra := sh.next(d.hungKeys())
		skip = d.withPaused(skip)
		if limit == 0 || d.allSkipped(skip) {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			// Nothing more is claimed once the shutdown's time is over,
			// whatever the store does with a context that is done (the
			// memory store claims under it): an attempt it cut is left
			// leased unstored (attempt), and claimed again here it was
			// cut again, claim after claim.
			return total, err
		}
		at := d.mono()
		claimed, err := d.store.ClaimDeliveries(ctx, d.cfg.Owner, d.now(), d.lease(), limit, skip)
		if err != nil {
			return total, err
		}
		total += len(claimed)
		for _, dl := range claimed {
			key := EndpointKey(dl.Tenant, dl.Endpoint)
			sh.take(key, extra)
			wg.Go(func() {
				d.attempt(ctx, dl, at, wg)
				sh.give(key, extra)
				if d.gaveBack != nil {
					d.gaveBack()
				}
				// After give: woken, the drain reads whether anything
				// is still in flight.
				signal(ended)
			})
		}
		if len(claimed) < limit {
			return total, nil
		}
	}
}

// enqueue copies each endpoint's new outbox events into deliveries, up
// to Batch of them per endpoint. It reports whether an endpoint has more,
// and whether it enqueued any delivery. A read enqueues no more: an
// endpoint far behind its outbox (a new one reads the events retained)
// would otherwise hold up every other endpoint's new events for as long
// as it takes.
func (d *Dispatcher) enqueue(ctx context.Context) (more, some bool) {
	for _, tenant := range d.dir.Tenants() {
		for _, ep := range d.dir.Endpoints(tenant) {
			full, n, err := d.enqueueEndpoint(ctx, tenant, ep)
			if err != nil && ctx.Err() == nil {
				d.log.Error().Err(err).Str("tenant", tenant).Str("endpoint", ep.ID).Msg("webhooks: enqueue")
			}
			more, some = more || full, some || n > 0
		}
	}
	return more, some
}

// enqueueEndpoint enqueues up to Batch of an endpoint's new events, and
// reports whether it read a full batch (there may be more) and how many
// deliveries it enqueued.
func (d *Dispatcher) enqueueEndpoint(ctx context.Context, tenant string, ep Endpoint) (bool, int, error) {
	key := EndpointKey(tenant, ep.ID)
	for {
		from, err := d.store.DeliveryCursor(ctx, key)
		if err != nil {
			return false, 0, err
		}
		evs, err := d.store.Events(ctx, orchestrator.EventFilter{Tenant: tenant, After: from, Limit: d.cfg.Batch})
		if err != nil || len(evs) == 0 {
			return false, 0, err
		}
		now := d.now()
		ds := make([]Delivery, 0, len(evs))
		for _, ev := range evs {
			if !ep.wants(ev.Type) {
				continue
			}
			body, err := d.render(ev)
			if err != nil {
				return false, 0, fmt.Errorf("render %s: %w", ev.ID, err)
			}
			// Due since its event happened (not after now, whatever the
			// clock of the replica that saved it): claims take the
			// earliest due first, so that endpoints' deliveries go in the
			// order of their events, not the order the endpoints were
			// enqueued in.
			due := now
			if ev.At.Before(now) {
				due = ev.At.UTC()
			}
			ds = append(ds, Delivery{
				ID: DeliveryID(key, ev.ID), Tenant: tenant, Endpoint: ep.ID, EventID: ev.ID, TransferID: ev.TransferID,
				Seq: ev.Seq, Pos: ev.Pos, Type: ev.Type, Payload: body, Status: StatusPending,
				NextAttempt: due, Deadline: now.Add(d.cfg.MaxAge), CreatedAt: now, UpdatedAt: now,
			})
		}
		switch err := d.store.EnqueueDeliveries(ctx, key, from, evs[len(evs)-1].Pos, ds); {
		case errors.Is(err, ErrCursorMoved):
			// Another replica enqueued these; read on from where it
			// left.
			continue
		case err != nil:
			return false, 0, err
		}
		return len(evs) == d.cfg.Batch, len(ds), nil
	}
}

// attempt sends one delivery, claimed at at (on d.mono), and records the
// result (Drain's). The result is stored whatever ctx says, as Run's are
// (settle): ctx is the shutdown's, and a 2xx that came as it ended, left
// unrecorded, was sent again by another replica once the claim's lease
// ran out. An attempt that ctx cut before any answer is not stored: the
// receiver did not fail it, this process's shutdown did. Stored, it was
// a failed attempt counted against the endpoint and, on a delivery's
// last try (one claimed at its Deadline), a dead letter never given its
// time; left leased, it is sent again by whichever replica claims it once
// the lease has run out.
func (d *Dispatcher) attempt(ctx context.Context, dl Delivery, at time.Time, bodies *sync.WaitGroup) {
	dl = d.try(d.gated(ctx, at), dl, bodies)
	if ctx.Err() != nil && unanswered(dl) {
		return
	}
	ctx = context.WithoutCancel(ctx)
	stored, ok, err := d.store.FinishDelivery(ctx, dl)
	if err != nil {
		d.log.Error().Err(err).Str("tenant", dl.Tenant).Str("delivery", dl.ID).Msg("webhooks: record attempt")
		d.readBack(ctx, err, []Delivery{dl})
		return
	}
	d.recorded(dl, stored, ok)
}

// unanswered reports whether dl, the result of an attempt (try), failed
// without any answer of the receiver: no status, and not a delivery
// given up or held unsent for an endpoint not configured. A refusal of
// this process's own (a 410 Gone mark, a signer error) reads so too;
// left leased at shutdown, the replica that claims it next decides the
// same.
func unanswered(dl Delivery) bool {
	return dl.Status != StatusDelivered && dl.LastCode == 0 && dl.LastError != "" && dl.Unconfigured.IsZero()
}

// readBack records the results rs whose write failed with err that the
// store holds all the same: a commit whose answer was lost (an error of
// no kind, orchestrator.Uncertain) may have written them, and a result
// the store holds is an attempt made, which the deliveries metric counts
// (recorded) as it would have had the answer come. They were not
// counted, and a delivered result was never counted at all: it is not
// attempted again. Each transfer's deliveries are read once; a result
// read back as not written, or that cannot be read, is not counted here
// (settle keeps it for the next scan's write while its claim lasts, and
// it is counted if that write applies it; past the claim the delivery is
// attempted again once its lease expires, and counted then), nor is one
// the store writes after the read (a commit that lands late), so that
// none is counted twice. It returns the results of rs not read back as
// held: all of them when err says nothing was written.
func (d *Dispatcher) readBack(ctx context.Context, err error, rs []Delivery) []Delivery {
	if !orchestrator.Uncertain(err) {
		return rs
	}
	// The write's own deadline may be what ended it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readBackTimeout)
	defer cancel()
	read := map[[2]string][]Delivery{} // by tenant and transfer; nil if unreadable
	var unheld []Delivery
	for _, dl := range rs {
		key := [2]string{dl.Tenant, dl.TransferID}
		ds, ok := read[key]
		if !ok {
			var rerr error
			ds, _, rerr = d.store.Deliveries(ctx, DeliveryFilter{Tenant: dl.Tenant, TransferID: dl.TransferID})
			if rerr != nil {
				d.log.Warn().Err(rerr).Str("tenant", dl.Tenant).Str("transfer_id", dl.TransferID).
					Msg("webhooks: results whose write failed could not be read back; those written are not counted")
			}
			read[key] = ds
		}
		held := false
		for _, stored := range ds {
			if stored.ID == dl.ID && holds(stored, dl) {
				d.recorded(dl, stored, true)
				held = true
			}
		}
		if !held {
			unheld = append(unheld, dl)
		}
	}
	return unheld
}

// readBackTimeout bounds readBack's reads.
const readBackTimeout = 5 * time.Second

// holds reports whether stored, a delivery read back, holds the result
// dl of this replica's attempt: the claim's Attempts (a later claim moves
// them), the lease released (by the claim's result; a redelivery once the
// lease ran out releases it too, but with a time of its own), and the
// attempt's time and answer.
func holds(stored, dl Delivery) bool {
	return stored.Attempts == dl.Attempts && stored.Owner == "" && stored.LeaseUntil.IsZero() &&
		stored.UpdatedAt.Equal(dl.UpdatedAt) && stored.LastCode == dl.LastCode && stored.LastError == dl.LastError
}

// try sends one delivery and returns it with the attempt's result, to be
// stored: delivered, or pending with its next attempt, or dead. What is
// left of the answer's body is read on a goroutine of bodies (send).
func (d *Dispatcher) try(ctx context.Context, dl Delivery, bodies *sync.WaitGroup) Delivery {
	if d.urlOf(dl.Tenant, dl.Endpoint) == "" {
		return d.unconfigured(dl)
	}
	d.mu.Lock()
	delete(d.missing, EndpointKey(dl.Tenant, dl.Endpoint))
	d.mu.Unlock()
	code, retryAfter, err := d.send(ctx, dl, bodies)
	d.noteAnswer(EndpointKey(dl.Tenant, dl.Endpoint), code, err)
	now := d.now()
	// An attempt of a replica that has the endpoint: whatever the
	// replicas without it marked, it is not theirs to give up.
	dl.UpdatedAt, dl.LastCode, dl.LastError, dl.Unconfigured = now, code, "", time.Time{}
	// A redelivery is made once an attempt of it was, not when its claim
	// ran out before anything of it was written: the attempt after is
	// the redelivery still, sent under a 410 Gone's mark.
	dl.Resend = dl.Resend && errors.Is(err, sendgate.ErrClosed)
	if err == nil {
		dl.Status = StatusDelivered
		return dl
	}
	dl.LastError = err.Error()
	if code == http.StatusGone || errors.Is(err, errGone) {
		// The receiver asks never to be sent this again (Standard
		// Webhooks: 410 Gone disables the endpoint): retrying it until
		// MaxAge sent it again for a day, up to every MaxBackoff.
		dl.Status = StatusDead
		return dl
	}
	// The back-off restarts at a redelivery.
	wait := d.backoff(dl.Attempts - dl.Redelivered)
	// The endpoint's own Retry-After wins over a shorter back-off; the
	// deadline below bounds it.
	wait = max(wait, retryAfter)
	switch {
	case !now.Before(dl.Deadline):
		dl.Status = StatusDead
	case now.Add(wait).After(dl.Deadline):
		// One last try at the deadline rather than none.
		dl.NextAttempt = dl.Deadline
	default:
		dl.NextAttempt = now.Add(wait)
	}
	// The store may keep a failed delivery pending that this claim's
	// Deadline would have given up: a redelivery during the attempt wins.
	return dl
}

// errUnconfigured is what the error of a delivery not sent because its
// endpoint is not configured says.
var errUnconfigured = errors.New("not sent: the endpoint is no longer configured")

// unconfigured is the result of a claim of dl, whose endpoint this
// replica does not have (removed from the tenants file, renamed): it
// is given up unsent once the endpoint has been missing for
// UnconfiguredGrace, and waits until then. It was sent again, to no
// URL, until MaxAge (a day by default), holding up its transfer's later
// deliveries and the backlog alert for as long. The time counts from the
// delivery's mark (Unconfigured: what the replica that wrote it last, or
// this one before a restart, found) or, unmarked, from this replica's
// first finding (missing, so that a transfer's later deliveries, heads
// one after another, do not wait a grace each). A replica that still
// has the endpoint (another one, during a rolling change of the
// configuration) shows it in what it writes: its attempts and
// redeliveries clear the mark and move UpdatedAt, its enqueues make
// deliveries after the finding; such a delivery starts the count again,
// here and in the store, so that the deliveries it sends are not given
// up under it. The back-off meanwhile is the usual one, so that such a
// replica gets to claim them.
func (d *Dispatcher) unconfigured(dl Delivery) Delivery {
	key := EndpointKey(dl.Tenant, dl.Endpoint)
	now := d.now()
	d.mu.Lock()
	mark, known := d.missing[key]
	since := mark.since
	switch {
	case !dl.Unconfigured.IsZero():
		// The delivery's own count. A mark later than this replica's
		// finding may have been set after a write of a replica that has
		// the endpoint (which clears it), one this replica never saw:
		// counted from the earlier of the two, a delivery that replica
		// had just sent was given up a grace after this one's finding.
		since = dl.Unconfigured
	case !known || dl.UpdatedAt.After(since):
		since = now
	}
	d.missing[key] = missingMark{tenant: dl.Tenant, endpoint: dl.Endpoint, since: since}
	d.mu.Unlock()
	giveUp := since.Add(d.cfg.UnconfiguredGrace)
	if !known {
		d.log.Warn().Str("tenant", dl.Tenant).Str("endpoint", dl.Endpoint).Time("since", since).Time("given_up_at", giveUp).
			Msg("webhooks: deliveries to an endpoint no longer configured: given up unsent once it is missing for the grace, unless a replica that has it sends them")
	}
	// Resend stays: the redelivery was not sent.
	dl.UpdatedAt, dl.LastCode, dl.Unconfigured = now, 0, since
	if !now.Before(giveUp) || !now.Before(dl.Deadline) {
		dl.Status = StatusDead
		dl.LastError = fmt.Sprintf("%v (since %s): given up unsent", errUnconfigured, since.Format(time.RFC3339))
		return dl
	}
	dl.LastError = fmt.Sprintf("%v (since %s): given up unsent at %s unless a replica that has it sends it", errUnconfigured,
		since.Format(time.RFC3339), giveUp.Format(time.RFC3339))
	dl.NextAttempt = now.Add(d.backoff(dl.Attempts - dl.Redelivered))
	for _, t := range []time.Time{giveUp, dl.Deadline} {
		if t.Before(dl.NextAttempt) {
			dl.NextAttempt = t
		}
	}
	return dl
}

// missingMark is this replica's finding that an endpoint is not
// configured (Dispatcher.missing).
type missingMark struct {
	tenant, endpoint string
	since            time.Time
}

// forgetConfigured ends the findings of endpoints configured here again
// (a reload that reverted their removal). Kept, a finding outlived the
// endpoint's return while other replicas sent its deliveries (only an
// attempt here ended it): removed again later, the deliveries that had
// no write since the old finding, a transfer's next one made ready by
// another replica's delivery of the one before, were given up at this
// replica's first claim, with no grace at all.
func (d *Dispatcher) forgetConfigured() {
	d.mu.Lock()
	if len(d.missing) == 0 {
		d.mu.Unlock()
		return
	}
	marks := make(map[string]missingMark, len(d.missing))
	for key, m := range d.missing {
		marks[key] = m
	}
	d.mu.Unlock()
	// The directory is asked outside d.mu: it takes locks of its own.
	for key, m := range marks {
		if d.urlOf(m.tenant, m.endpoint) == "" {
			continue
		}
		d.mu.Lock()
		if d.missing[key] == m { // not found again meanwhile
			delete(d.missing, key)
		}
		d.mu.Unlock()
	}
}

// pause has this replica's claims skip an endpoint whose receiver at url
// answered dl's attempt 429 or 503 with a Retry-After, for that long (at
// most MaxBackoff, against a header that asks for a day). The delivery
// that got it waits its Retry-After (try); without the pause every other
// transfer's delivery to that endpoint was still sent, each to be told
// the same, while the receiver had asked to be left alone. Other replicas
// learn it from their own attempts. It is that receiver's word only: once
// the endpoint is configured with another URL, the pause ends
// (withPaused), as a 410 Gone's mark does.
func (d *Dispatcher) pause(dl Delivery, url string, wait time.Duration) {
	key := EndpointKey(dl.Tenant, dl.Endpoint)
	until := d.mono().Add(min(wait, d.cfg.MaxBackoff))
	d.mu.Lock()
	if p, ok := d.paused[key]; !ok || p.url != url || until.After(p.until) {
		d.paused[key] = pauseMark{tenant: dl.Tenant, endpoint: dl.Endpoint, url: url, until: until}
	}
	d.mu.Unlock()
}

// markGone has this replica give up unsent, for MaxBackoff, the
// deliveries to the endpoint at url that dl's attempt got 410 Gone
// from. Standard Webhooks asks the sender to disable such an endpoint;
// each later delivery was sent, to be told the same, one request per
// event. Endpoints are configured, not made through the API, so there is
// nothing to disable for good: the mark holds for this replica only (as a
// pause does) and ends after MaxBackoff, when the next delivery is sent
// and tells whether the receiver is back; at a 2xx (a redelivery's, sent
// all the same), and for another url (the tenant configured a new one).
func (d *Dispatcher) markGone(dl Delivery, url string) {
	key := EndpointKey(dl.Tenant, dl.Endpoint)
	hold := d.cfg.MaxBackoff
	d.mu.Lock()
	_, known := d.goneNowLocked(key, url)
	now := d.now()
	d.gone[key] = goneMark{url: url, at: now, ends: now.Add(hold), until: d.mono().Add(hold)}
	d.mu.Unlock()
	if !known {
		d.log.Warn().Str("tenant", dl.Tenant).Str("endpoint", dl.Endpoint).Str("delivery", dl.ID).Dur("for_ms", hold).
			Msg("webhooks: the endpoint answered 410 Gone: its deliveries are given up unsent (dead letters) for a while; a redelivery is sent all the same")
	}
}

// goneNow returns the mark of the endpoint key at url, if it holds now.
func (d *Dispatcher) goneNow(key, url string) (goneMark, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.goneNowLocked(key, url)
}

func (d *Dispatcher) goneNowLocked(key, url string) (goneMark, bool) {
	mark, ok := d.gone[key]
	switch {
	case !ok:
		return goneMark{}, false
	case !d.mono().Before(mark.until) || mark.url != url:
		delete(d.gone, key)
		return goneMark{}, false
	}
	return mark, true
}

// forgetGone drops the endpoint key's mark: it accepted an attempt.
func (d *Dispatcher) forgetGone(key string) {
	d.mu.Lock()
	delete(d.gone, key)
	d.mu.Unlock()
}

// withPaused returns skip with the endpoints paused now added, and
// forgets the pauses that are over, or whose endpoint has another URL now
// (Run's next scan claims for them).
func (d *Dispatcher) withPaused(skip []string) []string {
	now := d.mono()
	d.mu.Lock()
	if len(d.paused) == 0 {
		d.mu.Unlock()
		return skip
	}
	marks := make(map[string]pauseMark, len(d.paused))
	for key, p := range d.paused {
		marks[key] = p
	}
	d.mu.Unlock()
	// The directory is asked outside d.mu: it takes locks of its own.
	for key, p := range marks {
		switch {
		case !now.Before(p.until) || p.url != d.urlOf(p.tenant, p.endpoint):
			d.mu.Lock()
			if d.paused[key] == p { // not paused again meanwhile
				delete(d.paused, key)
			}
			d.mu.Unlock()
		case !slices.Contains(skip, key):
			skip = append(skip, key)
		}
	}
	return skip
}

// urlOf is the URL of the tenant's endpoint as configured now, "" if it
// is no longer configured.
func (d *Dispatcher) urlOf(tenant, endpoint string) string {
	for _, e := range d.dir.Endpoints(tenant) {
		if e.ID == endpoint {
			return e.URL
		}
	}
	return ""
}

// recorded counts and logs the result dl of an attempt, once the store
// has it: stored as it now is, or ok false if the claim was lost (whoever
// holds it now records).
func (d *Dispatcher) recorded(dl, stored Delivery, ok bool) {
	if !ok {
		return
	}
	result := "delivered"
	switch {
	case dl.LastError == "":
	case stored.Status == StatusDead:
		result = "dead"
	default:
		result = "retry"
	}
	d.m.deliveries.WithLabelValues(result).Inc()
	if d.finished != nil {
		d.finished(stored)
	}
	ev := d.log.Debug()
	switch result {
	case "dead":
		d.m.dead.Inc()
		ev = d.log.Warn()
	case "retry":
		ev = d.log.Info()
	}
	ev.Str("tenant", dl.Tenant).Str("delivery", dl.ID).Str("event", dl.EventID).Str("transfer_id", dl.TransferID).Str("endpoint", dl.Endpoint).
		Int("attempt", dl.Attempts).Int("code", dl.LastCode).Str("result", result).Str("error", dl.LastError).Msg("webhook attempt")
}

// send makes one attempt: the status code, any Retry-After, and an error
// unless the endpoint answered 2xx. Errors never carry a secret or the
// endpoint's URL (which may hold a token). It returns once the status is
// known: the answer's body is read on a goroutine of bodies (drain).
func (d *Dispatcher) send(ctx context.Context, dl Delivery, bodies *sync.WaitGroup) (int, time.Duration, error) {
	var ep *Endpoint
	for _, e := range d.dir.Endpoints(dl.Tenant) {
		if e.ID == dl.Endpoint {
			ep = &e
			break
		}
	}
	if ep == nil {
		return 0, 0, errors.New("the endpoint is no longer configured")
	}
	key := EndpointKey(dl.Tenant, ep.ID)
	// A redelivery is sent all the same: an operator's redelivery is how
	// a receiver that came back is tried sooner, whichever replica's
	// claim it lands on.
	if mark, ok := d.goneNow(key, ep.URL); ok && !redelivery(dl) {
		return 0, 0, fmt.Errorf("%w at %s (given up unsent until %s, or redelivered)", errGone,
			mark.at.Format(time.RFC3339), mark.ends.Format(time.RFC3339))
	}
	s, err := d.signer(dl.Tenant, *ep)
	if err != nil {
		return 0, 0, err
	}
	resp, cancel, err := d.post(ctx, *ep, s, dl)
	if err != nil {
		return 0, 0, err
	}
	// The status decides the attempt (Standard Webhooks: any 2xx is
	// delivered); the rest of the body only serves the connection's
	// reuse. Read before the attempt ended, a body that a receiver
	// stalled after its status line held the attempt's slot, and its
	// result, for the whole Timeout, as one that never answered; read
	// in the background, it holds a goroutine and the connection for
	// bodyDrain at most.
	switch {
	case resp.Body == http.NoBody:
		d.drain(resp.Body, cancel, "") // nothing to read (a 204, a Content-Length of 0)
	case d.startReading(key):
		bodies.Go(func() { d.drain(resp.Body, cancel, key) })
	default:
		// As many of the endpoint's bodies as its share, or of all as
		// the slots, are being read already. Unbounded, a receiver that
		// stalled its bodies was kept a connection and a goroutine for
		// each delivery it was sent within bodyDrain (thousands a
		// second at load), where attempts that held their slots had
		// kept it to its share.
		d.drain(unread{resp.Body}, cancel, "")
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		d.forgetGone(key)
		return resp.StatusCode, 0, nil
	}
	if resp.StatusCode == http.StatusGone {
		d.markGone(dl, ep.URL)
	}
	wait := retryAfter(resp.Header.Get("Retry-After"), d.now())
	if wait > 0 && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		d.pause(dl, ep.URL, wait)
	}
	return resp.StatusCode, wait, fmt.Errorf("the endpoint answered %d", resp.StatusCode)
}

// post sends the attempt of dl to ep, signed by s, and returns the
// answer with the cancel of its request, whose body the caller reads and
// closes (drain); the error says why there is none.
func (d *Dispatcher) post(ctx context.Context, ep Endpoint, s signer, dl Delivery) (*http.Response, context.CancelFunc, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(dl.Payload))
	if err != nil {
		cancel()
		return nil, nil, errors.New("the endpoint URL is invalid")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "transferd-webhooks")
	if err := s.headers(req.Header, dl.EventID, d.now(), dl.Payload); err != nil {
		cancel()
		return nil, nil, err
	}
	start := time.Now()
	resp, err := d.cfg.Client.Do(req)
	d.m.latency.Observe(time.Since(start).Seconds())
	if err != nil {
		cancel()
		var uerr interface{ Unwrap() error }
		if errors.As(err, &uerr) && uerr.Unwrap() != nil {
			err = uerr.Unwrap()
		}
		return nil, nil, fmt.Errorf("no response: %w", err)
	}
	return resp, cancel, nil
}

// bodyDrain bounds how long the rest of an answer's body is read after
// its status (drain): a healthy receiver's is on its way with the status,
// often in the same packet.
const bodyDrain = time.Second

// drain reads what is left of an answer's body, up to 64 KiB, so that
// its connection goes back to the pool for the endpoint's next attempt,
// and then closes it and cancels its request. Past d.bodyDrain (and the
// request's own Timeout) it cancels the request, which closes the
// connection: a receiver that stalls its body is not kept a connection
// for the rest of the Timeout. A read counted by startReading under key
// is ended.
func (d *Dispatcher) drain(body io.ReadCloser, cancel context.CancelFunc, key string) {
	cut := time.AfterFunc(d.bodyDrain, cancel)
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	cut.Stop()
	_ = body.Close()
	cancel()
	if key != "" {
		d.mu.Lock()
		d.readingTotal--
		if d.reading[key]--; d.reading[key] == 0 {
			delete(d.reading, key)
		}
		d.mu.Unlock()
	}
	if d.drained != nil {
		d.drained()
	}
}

// startReading counts a read of a body of the endpoint key (drain), and
// reports whether it may be made: an endpoint's reads at once are at
// most its share of the slots (EndpointConcurrency), and all of them
// the slots (Concurrency), as its attempts in flight are.
func (d *Dispatcher) startReading(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.reading[key] >= d.cfg.EndpointConcurrency || d.readingTotal >= d.cfg.Concurrency {
		return false
	}
	d.reading[key]++
	d.readingTotal++
	return true
}

// unread is a body closed unread (drain): its connection is closed with
// it (Go's transport pools only a connection whose body was read to its
// end).
type unread struct{ io.ReadCloser }

func (unread) Read([]byte) (int, error) { return 0, io.EOF }

// redelivery reports whether the attempt of dl is an operator's
// redelivery, to be sent whatever the endpoint answered before: one not
// made yet since the redelivery (Resend), or, for a redelivery a replica
// of an older version stored (without Resend), the first attempt since
// (Redelivered, which tells only a redelivery after an attempt).
func redelivery(dl Delivery) bool {
	return dl.Resend || dl.Redelivered > 0 && dl.Attempts == dl.Redelivered+1
}

// signer returns the endpoint's parsed secrets, parsing them again when
// they changed (a rotation in a reloaded tenants file).
func (d *Dispatcher) signer(tenant string, ep Endpoint) (signer, error) {
	key := EndpointKey(tenant, ep.ID)
	secrets := fmt.Sprint(ep.Secrets)
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.signers[key]; ok && c.secrets == secrets {
		return c.s, c.err
	}
	s, err := newSigner(ep.Secrets)
	d.signers[key] = signerFor{secrets: secrets, s: s, err: err}
	return s, err
}

// backoff is the wait after the attempt-th failed attempt (counted from
// the last redelivery): exponential from MinBackoff, capped at
// MaxBackoff, with equal jitter (half fixed, half random) so that the
// retries of many deliveries after an outage spread out instead of
// arriving together.
func (d *Dispatcher) backoff(attempt int) time.Duration {
	b := d.cfg.MinBackoff
	for i := 1; i < attempt && b < d.cfg.MaxBackoff; i++ {
		b *= 2
	}
	b = min(b, d.cfg.MaxBackoff)
	return b/2 + rand.N(b/2+1)
}

// retryAfter parses a Retry-After of seconds or an HTTP date; 0 if absent
// or invalid. Seconds beyond what a time.Duration holds (about 292
// years; a receiver's way of saying "not for a long time") are the
// longest duration: multiplied as they were, they came out negative, or
// failed to parse, and were read as no Retry-After at all, so that the
// receiver that asked for the longest wait was tried again after the
// short back-off. The callers bound it (MaxBackoff, the deadline).
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	const most = math.MaxInt64 / int64(time.Second)
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
		return time.Duration(min(n, most)) * time.Second
	} else if errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(v, "-") {
		return time.Duration(most) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Redeliver makes a tenant's delivery pending again with a fresh MaxAge,
// and nudges the dispatcher. A delivery whose endpoint this replica does
// not have is not redelivered (ErrEndpointNotConfigured, KindConflict):
// it could not be sent, and would only be given up again. A replica that
// still has it (during a rolling change of the configuration) redelivers
// it, and its redelivery restarts the grace (unconfigured).
func (d *Dispatcher) Redeliver(ctx context.Context, tenant, id string) (Delivery, error) {
	now := d.now()
	allow := func(dl Delivery) error {
		if d.urlOf(tenant, dl.Endpoint) == "" {
			return orchestrator.E("webhooks.Redeliver", orchestrator.KindConflict, ErrEndpointNotConfigured)
		}
		return nil
	}
	dl, err := d.store.Redeliver(ctx, tenant, id, now, now.Add(d.cfg.MaxAge), allow)
	if err == nil {
		d.Nudge()
	}
	return dl, err
}

// Deliveries lists a tenant's deliveries (see Store.Deliveries).
func (d *Dispatcher) Deliveries(ctx context.Context, f DeliveryFilter) ([]Delivery, bool, error) {
	return d.store.Deliveries(ctx, f)
}

// gaugeEvery is how often the backlog metrics read the store. Counting
// the pending deliveries reads every one of them: after every scan (each
// save with events nudges one) a backlog of 20,000 took a fifth of
// transferd's CPU. In between, the oldest's age moves on from the last
// reading.
const gaugeEvery = 5 * time.Second

// gauge sets the backlog metrics; only Run calls it.
func (d *Dispatcher) gauge(ctx context.Context) {
	now := d.now()
	if every(d.gauged, now, gaugeEvery) {
		n, oldest, err := d.store.DeliveryBacklog(ctx)
		if err != nil {
			return
		}
		d.gauged, d.oldestPending = now, oldest
		d.m.backlog.Set(float64(n))
	}
	age := 0.0
	if !d.oldestPending.IsZero() {
		age = max(now.Sub(d.oldestPending).Seconds(), 0)
	}
	d.m.oldest.Set(age)
}

// every reports whether a periodic task last run at last (zero: never)
// is due again at now, period after it; a clock set back makes it due.
func every(last, now time.Time, period time.Duration) bool {
	return last.IsZero() || now.Sub(last) >= period || now.Before(last)
}

// repairEvery is how often Run has a HeadRepairer store set right the
// deliveries a replica of an older version left unready: reading for them
// reads every pending delivery, and they are only made during a rolling
// upgrade.
const repairEvery = time.Minute

// repair runs the store's RepairHeads, if it has one, at most every
// repairEvery; only Run calls it.
func (d *Dispatcher) repair(ctx context.Context) {
	r, ok := d.store.(HeadRepairer)
	if !ok {
		return
	}
	now := d.now()
	if !every(d.repaired, now, repairEvery) {
		return
	}
	d.repaired = now
	n, err := r.RepairHeads(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error().Err(err).Msg("webhooks: repair deliveries left unready")
		}
		return
	}
	if n > 0 {
		d.log.Warn().Int("deliveries", n).Msg("webhooks: deliveries left unready or finished but ready, by a replica of an older version, set right")
	}
}

type metrics struct {
	deliveries *prometheus.CounterVec
	dead       prometheus.Counter
	backlog    prometheus.Gauge
	oldest     prometheus.Gauge
	latency    prometheus.Histogram
}

// Results of an attempt, as the deliveries metric labels them.
var results = []string{"delivered", "retry", "dead"}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		deliveries: f.NewCounterVec(prometheus.CounterOpts{
			Name: "transferd_webhook_deliveries_total",
			Help: "Webhook attempts by result: delivered (2xx), retry (failed, tried again later), dead (failed past the maximum age, or the endpoint answered 410 Gone).",
		}, []string{"result"}),
		dead: f.NewCounter(prometheus.CounterOpts{
			Name: "transferd_webhook_dead_letters_total",
			Help: "Webhook deliveries given up after the maximum age, or because the endpoint answered 410 Gone (dead letters); operators can redeliver them.",
		}),
		backlog: f.NewGauge(prometheus.GaugeOpts{
			Name: "transferd_webhook_backlog",
			Help: "Webhook deliveries not delivered yet (pending), over all replicas.",
		}),
		oldest: f.NewGauge(prometheus.GaugeOpts{
			Name: "transferd_webhook_oldest_pending_seconds",
			Help: "Age of the oldest pending webhook delivery (0 when none).",
		}),
		latency: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "transferd_webhook_attempt_duration_seconds",
			Help:    "Time for an endpoint to answer a webhook attempt.",
			Buckets: prometheus.DefBuckets,
		}),
	}
	for _, r := range results {
		m.deliveries.WithLabelValues(r)
	}
	return m
}
