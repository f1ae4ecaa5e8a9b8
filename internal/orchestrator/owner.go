package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// claimBatch bounds how many transfers one maintenance round claims, so
// that a replica inheriting a dead peer's load spreads it over rounds.
const claimBatch = 100

// Open starts this replica: it records its heartbeat, resumes what it
// owned in a previous life (a process restarted under the same Owner need
// not wait for its heartbeat to expire), settles the Idempotency-Key
// reservations its previous life left waiting, claims transfers of
// replicas whose heartbeat expired, and starts the maintenance loop:
// heartbeat, claims and the settling of reservations (stopped replicas',
// and this replica's own older than ReservationTimeout) every LeaseTTL/4,
// signals put through other replicas every two PollIntervals, and the
// retention purge (transfers, and the store's finished webhook
// deliveries) every PurgeInterval. Shutdown stops it.
//
// Each of the first three steps is tried again while the store fails,
// for up to OpenPatience (see opening): the store was opened moments
// ago, so a failure now is one a moment cures, such as a database server
// that ends its connections, restarts or fails over while the replica
// starts, as its supervisor restarting both may well make it do.
func (e *Engine) Open(ctx context.Context) error {
	// The heartbeat is taken whatever process wrote it last (take): a
	// process restarted under the same Owner resumes its transfers at
	// once, without waiting for its previous life's heartbeat to run out.
	// A live one may also be another process's that still runs (two given
	// one name): that one finds this one's token at its next heartbeat,
	// within a quarter of LeaseTTL, and stops (supersede); the transfers
	// claimed below fail its saves meanwhile, and those it created since
	// are adopted once it can send nothing more (afterTakeover).
	live, failed := false, false
	err := e.opening(ctx, "recording this replica's heartbeat", func(ctx context.Context) error {
		at := e.now()
		expired, err := e.store.Heartbeat(ctx, e.cfg.Owner, e.token, at, e.heartbeatTTL(), true)
		if err != nil {
			failed = true
			return err
		}
		// A try after a failed one may find that one's heartbeat, written
		// although its answer was lost: this process's own.
		live = !expired && !failed
		if !expired {
			// From the answer, not from at: the process whose heartbeat
			// this took over may have renewed it while this write was on
			// its way, stamped later than at, and sends until a heartbeat
			// TTL (less the margin) after that stamp. A look for orphans
			// at most costs a query.
			e.tookOver = e.now()
		}
		e.renewLease(at, false)
		return nil
	})
	if err != nil {
		return err
	}
	if live {
		e.log.Warn().Str("owner", e.cfg.Owner).
			Msg("the heartbeat of an earlier process under this replica's name was still live: taking its transfers over at once, as after a crash; " +
				"if that process still runs, it stops at its next heartbeat")
	}
	// A claim of its own transfers adopts none of them unless it
	// succeeds, so trying it again adopts each once, at the version the
	// successful claim gave it.
	if err := e.opening(ctx, "claiming the transfers this replica owned before it restarted", func(ctx context.Context) error {
		return e.claim(ctx, true)
	}); err != nil {
		return err
	}
	// The claim skips a row another transaction holds at that instant
	// (PostgreSQL's SKIP LOCKED: a peer's PutSignal), its transfer still
	// the name's and driven by none; the look for orphans reads without
	// locking and adopts it now, not a minute later (OrphanInterval), its
	// caller perhaps held. Only after a crash: a live process taken over
	// may still drive them, and they are looked for once it can send
	// nothing more (afterTakeover).
	if e.tookOver.IsZero() && !e.adoptOrphans(ctx) {
		e.orphaned.Store(true) // looked for with the next claim
	}
	// The API serves after Open: every reservation this replica owns now
	// is its previous life's.
	if err := e.opening(ctx, "settling Idempotency-Key reservations", func(ctx context.Context) error {
		return e.settleIdempotency(ctx, e.now())
	}); err != nil {
		return err
	}
	if err := e.claim(ctx, false); err != nil {
		e.log.Warn().Err(err).Msg("claiming the transfers of stopped replicas failed")
	}
	e.startWorkers()
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		e.maintain()
	}()
	return nil
}

// opening runs one step of Open, and runs it again while it fails, after
// PollInterval and then twice as long each time up to PollMaxInterval,
// until OpenPatience has passed since its first try or ctx ends. Every
// store error is tried again: the engine's maintenance loop treats them
// all as passing too, and one a wait does not cure (a table dropped, a
// role's grant revoked) costs the patience before the process exits;
// but not a claim refused because another process took the name over
// meanwhile (supersede), which every try would meet again.
// Leaving at the first error instead would end the process for a
// server's restart, and its supervisor would start it again only after a
// back-off of its own, with the callers of its transfers on hold.
func (e *Engine) opening(ctx context.Context, what string, step func(context.Context) error) error {
	deadline := time.Now().Add(e.cfg.OpenPatience)
	wait := e.cfg.PollInterval
	for attempt := 1; ; attempt++ {
		err := step(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || e.isSuperseded() || time.Now().Add(wait).After(deadline) {
			return fmt.Errorf("%s: %w", what, err)
		}
		e.log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in_ms", wait).Msg(what + " failed; trying again")
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(wait):
		}
		wait = min(2*wait, e.cfg.PollMaxInterval)
	}
}

// claim takes open transfers: this replica's own from a previous life
// (own), or those of replicas whose heartbeat expired.
func (e *Engine) claim(ctx context.Context, own bool) error {
	if held, _ := e.leaseHeld(); !own && !held {
		// Its heartbeat ran out (not renewed yet, or another process took
		// the name over: supersede ends the lease): it could send nothing
		// for what it claimed. Woken beside a process that took its name
		// over, it would make another replica's transfers the name's, each
		// refused at its first save (Store.Update), and the name's live
		// process drives them only at its look for orphans, a minute later.
		return nil
	}
	total := 0
	// This replica's own transfers stay claimable by it after a claim (it
	// owns them), so they are claimed in one batch: claiming them again in
	// a second would bump the versions of those already adopted and make
	// their entries lose them. Dead replicas' transfers stop being
	// claimable once claimed, so they come in batches.
	batch := claimBatch
	if own {
		batch = 0
	}
	for {
		ts, err := e.store.Claim(ctx, e.cfg.Owner, e.token, e.now(), own, batch)
		if err != nil {
			if errors.Is(err, ErrSuperseded) {
				// Another process took the name over: its heartbeat, not
				// this one's next, tells it, and it stops as a refused
				// save stops it. What it would have claimed stays for
				// the live replicas.
				e.supersede()
			}
			if Uncertain(err) {
				e.orphaned.Store(true)
			}
			return err
		}
		for _, t := range ts {
			switch {
			case own:
				if !e.local(t.ID) {
					total++
					e.adopt(t, true)
				}
			case !e.reclaim(t):
				total++
				e.adopt(t, true)
			}
		}
		if own || len(ts) < claimBatch {
			break
		}
	}
	if total > 0 {
		msg := "claimed the open transfers of replicas whose heartbeat expired"
		if own {
			msg = "resuming the open transfers this replica owned before it restarted"
		}
		e.log.Info().Int("transfers", total).Msg(msg)
	}
	return nil
}

// adoptOrphans drives the open transfers this replica owns and has no
// entry for. No later claim returns a replica's own transfers, so nobody
// else would drive them until it restarted, their callers perhaps held:
//   - a claim whose commit landed although its answer was lost made them
//     its own (their versions moved; it sets e.orphaned);
//   - a create whose commit landed after findLater stopped looking for it;
//   - a claim, or a restart's resumption, took them while their tenant
//     had no account of their provider here (a tenants file that reached
//     this replica later than another's): adopt refused them, and a
//     reload may have brought the account since.
//
// It runs every OrphanInterval and after such a claim. Those it still
// cannot drive are counted in transferd_transfers_undriven and logged
// once a look. It reports whether the store could be read.
func (e *Engine) adoptOrphans(ctx context.Context) bool {
	if e.isSuperseded() {
		// The name's transfers are the newer process's, which drives
		// them: adopted here, each was dropped at its first save (refused
		// for the token), counted in flight here meanwhile.
		return true
	}
	ids, err := e.store.Owned(ctx, e.cfg.Owner)
	if err != nil {
		e.log.Warn().Err(err).Msg("looking for transfers this replica owns and does not drive failed")
		return false
	}
	n := 0
	var undriven []string
	byProvider := map[string]float64{}
	for _, id := range ids {
		// A transfer Start has saved and not adopted yet is its own, not
		// an orphan: adopted here it would be driven as resumed ("resumed
		// by" among its steps) although no process drove it before.
		if e.Drives(id) {
			continue
		}
		t, err := e.store.Get(ctx, id)
		switch {
		case KindOf(err) == KindNotFound:
			continue // purged meanwhile
		case err != nil:
			e.log.Warn().Err(err).Msg("looking for transfers this replica owns and does not drive failed")
			return false
		case t.Owner != e.cfg.Owner || !t.Open():
			continue // claimed by another, or ended, meanwhile
		}
		if _, ok := e.provider(tenantOf(t), t.Request.Provider); !ok {
			undriven = append(undriven, t.ID)
			byProvider[t.Request.Provider]++
			continue
		}
		n++
		e.adopt(t, true)
	}
	e.setUndriven(byProvider)
	if n > 0 {
		e.log.Warn().Int("transfers", n).Msg("driving open transfers this replica owns that nothing drove")
	}
	if len(undriven) > 0 {
		e.log.Error().Int("transfers", len(undriven)).Strs("transfer_ids", undriven[:min(len(undriven), 10)]).
			Msg("open transfers this replica owns cannot be driven: their tenant has no account of their provider here; driven once a look finds it has one")
	}
	return true
}

// setUndriven sets transferd_transfers_undriven to the counts of a look
// for orphans. The series of every provider a transfer here may use stay,
// at 0 (see exportWatched); another's (a provider no tenant has an
// account of any more) goes once nothing is counted under it. Values are
// set in place, never reset, so that no scrape finds a series missing
// meanwhile (an alert's "for" would start again).
func (e *Engine) setUndriven(byProvider map[string]float64) {
	e.undriven.Lock()
	defer e.undriven.Unlock()
	known := e.providerNames()
	for _, p := range known {
		e.m.undriven.WithLabelValues(p).Set(byProvider[p])
	}
	others := map[string]bool{}
	for p, c := range byProvider {
		if !slices.Contains(known, p) {
			e.m.undriven.WithLabelValues(p).Set(c)
			others[p] = true
		}
	}
	for p := range e.undriven.others {
		if !others[p] && !slices.Contains(known, p) {
			e.m.undriven.DeleteLabelValues(p)
		}
	}
	e.undriven.others = others
}

// AccountsChanged tells the engine that its tenants' provider accounts
// changed (a reload of the tenants file): the open transfers it owns and
// could not drive for want of an account are looked for with its next
// claim, a quarter of a lease TTL away at most, not at the next
// OrphanInterval.
func (e *Engine) AccountsChanged() {
	e.exportWatched() // a provider the reload brought
	e.orphaned.Store(true)
}

// settleIdempotency settles the reservations no request serves any more:
// those of replicas whose heartbeat expired (the request died with its
// process) and this replica's own made before ownBefore (by its previous
// life, or by a request whose response could not be recorded): replayed
// if the transfer was saved, released otherwise.
func (e *Engine) settleIdempotency(ctx context.Context, ownBefore time.Time) error {
	n, err := e.store.SettleIdempotency(ctx, e.cfg.Owner, e.now(), ownBefore)
	if err != nil {
		return err
	}
	if n > 0 {
		e.log.Info().Int("keys", n).Msg("settled Idempotency-Key reservations whose request ended without recording its response")
	}
	return nil
}

// heartbeat renews this replica's heartbeat: one write, whatever the
// number of transfers it owns.
func (e *Engine) heartbeat(ctx context.Context) {
	if e.isSuperseded() {
		return // the name is another process's now
	}
	// The heartbeat runs from before it was sent: the store may write it
	// at any moment until it answers.
	at := e.now()
	expired, err := e.store.Heartbeat(ctx, e.cfg.Owner, e.token, at, e.heartbeatTTL(), false)
	if errors.Is(err, ErrSuperseded) {
		e.supersede()
		return
	}
	if err != nil {
		e.storeFailed(&e.beatErr, err)
		e.log.Warn().Err(err).Msg("renewing the heartbeat failed; this replica's transfers may be claimed by others if this persists, " +
			"and it sends no provider request once its last heartbeat runs out")
		return
	}
	if e.renewLease(at, expired) {
		e.takeovers.Store(true)
	}
	e.storeOK(&e.beatErr)
	if expired {
		// Others may have claimed some of our transfers meanwhile: the
		// next save of each tells (a version conflict drops it here), and
		// so does a look for takeovers, sooner.
		e.log.Warn().Msg("this replica's heartbeat had expired; transfers other replicas claimed meanwhile are theirs")
	}
	if e.takeovers.Load() && e.lookForTakeovers(ctx) {
		e.takeovers.Store(false)
	}
}

// lookForTakeovers has each entry of a transfer the store no longer lists
// as this replica's (Owned) read its record at its next reconcile, which
// it queues (takenOver), and reports whether the store could be read. It
// runs after a lapse of the heartbeat, once renewed. The entry of a
// transfer another replica claimed meanwhile otherwise stayed until its
// next save's version conflict, which a transfer waiting for a consult,
// a signal or the sweeper's patience may not make for minutes: all that
// time this replica counted it in its gauges (in flight, callers on hold,
// cleanups pending) as well as its new owner did, and the sums over
// replicas the alerts take counted its caller twice. A claim that
// commits after the list was read is left to that save, as before.
func (e *Engine) lookForTakeovers(ctx context.Context) bool {
	ids, err := e.store.Owned(ctx, e.cfg.Owner)
	if err != nil {
		e.log.Warn().Err(err).Msg("looking for transfers other replicas claimed while this one's heartbeat had lapsed failed")
		return false
	}
	owned := make(map[string]bool, len(ids))
	for _, id := range ids {
		owned[id] = true
	}
	var look []string
	e.mu.Lock()
	for id, en := range e.entries {
		if !owned[id] {
			en.recheck.Store(true)
			look = append(look, id)
		}
	}
	e.mu.Unlock()
	for _, id := range look {
		e.q.Add(id)
	}
	return true
}

// afterTakeover has the next claim look for orphans once the process
// whose live heartbeat Open took over can send nothing more, if it still
// runs: it may have created transfers under the name between this Open
// and its next heartbeat, which tells it to stop (supersede), and they are
// this process's to drive, not the orphans' look's a minute later, their
// callers perhaps held. It could send nothing after its lease ran out,
// leaseMargin before its last heartbeat's end: that heartbeat was written
// before this one took the row over, so it ended a heartbeat TTL after
// that at the latest. Adopted before then, a transfer it still drives
// would be driven twice.
func (e *Engine) afterTakeover() {
	if e.tookOver.IsZero() || e.now().Before(e.tookOver.Add(e.heartbeatTTL())) {
		return
	}
	e.tookOver = time.Time{}
	e.orphaned.Store(true)
}

// signals queues the transfers whose signal was put through another
// replica.
func (e *Engine) signals(ctx context.Context) {
	ids, err := e.store.Signalled(ctx, e.cfg.Owner)
	if err != nil {
		e.log.Warn().Err(err).Msg("looking for client signals failed")
		return
	}
	for _, id := range ids {
		e.wake(id, true)
	}
}

// purgeBatch bounds one purge transaction, so that saves never wait long
// behind it.
const purgeBatch = 500

// DeliveryPurger is a Store that also keeps webhook deliveries
// (webhooks.Store, which every store of transferd is): the retention
// purge deletes its delivered and dead deliveries too, whose payloads are
// transfer snapshots that must not outlive Retention.
type DeliveryPurger interface {
	// PurgeDeliveries deletes up to limit delivered and dead deliveries
	// that stopped being pending before `before`, never a pending one,
	// and returns how many.
	PurgeDeliveries(ctx context.Context, before time.Time, limit int) (int, error)
}

// purge deletes what is past Retention: terminal transfers, then
// finished webhook deliveries. Both go in batches of purgeBatch rows (each
// store splits a batch further into short transactions); a replica
// sharing the store may purge at once (each batch takes whatever rows it
// finds, and no row is deleted twice).
func (e *Engine) purge(ctx context.Context) {
	before := e.now().Add(-e.cfg.Retention)
	if n, err := purgeAll(ctx, e.store.Purge, before); err != nil {
		e.log.Warn().Err(err).Msg("purging old transfers failed")
	} else if n > 0 {
		e.log.Info().Int("transfers", n).Dur("retention_ms", e.cfg.Retention).Msg("purged terminal transfers past retention")
	}
	p, ok := e.store.(DeliveryPurger)
	if !ok || ctx.Err() != nil {
		return
	}
	if n, err := purgeAll(ctx, p.PurgeDeliveries, before); err != nil {
		e.log.Warn().Err(err).Msg("purging old webhook deliveries failed")
	} else if n > 0 {
		e.log.Info().Int("deliveries", n).Dur("retention_ms", e.cfg.Retention).Msg("purged delivered and dead webhook deliveries past retention")
	}
}

// purgeAll calls purge in batches of purgeBatch until a batch comes back
// short, and returns the total.
func purgeAll(ctx context.Context, purge func(context.Context, time.Time, int) (int, error), before time.Time) (int, error) {
	total := 0
	for {
		n, err := purge(ctx, before, purgeBatch)
		total += n
		if err != nil {
			return total, err
		}
		if n < purgeBatch || ctx.Err() != nil {
			return total, nil
		}
	}
}

// maintain runs until Shutdown has finished: the heartbeat is renewed
// while shutdown compensates, so that no peer claims a transfer mid-undo.
// The heartbeat, the poll for signals and the purge have loops of their
// own: a slow claim must not hold the heartbeat back until this
// replica's lease runs out (and its transfers stop, see leaseHeld) or
// others claim them; a claim of a large dead replica's load must not
// hold back the signals clients put through other replicas (a /complete
// waited behind it, its consult running on, perhaps out); a purge of a
// large backlog (PostgreSQL's is paced, minutes at 1M stored transfers)
// must hold back none of them, nor the claims of a stopped replica's
// transfers, whose callers may be on hold. The poll comes as often as it
// did in this loop: one query every two PollIntervals.
func (e *Engine) maintain() {
	ctx := e.hard
	e.every(ctx, e.cfg.LeaseTTL/4, false, e.heartbeat)
	e.every(ctx, 2*e.cfg.PollInterval, false, e.signals)
	e.every(ctx, e.cfg.PurgeInterval, true, e.purge)
	claims := time.NewTicker(e.cfg.LeaseTTL / 4)
	defer claims.Stop()
	orphans := time.NewTicker(e.cfg.OrphanInterval)
	defer orphans.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-orphans.C:
			if !e.isStopping() {
				e.orphaned.Store(true) // looked for with the next claim
			}
		case <-claims.C:
			if !e.isStopping() {
				if err := e.claim(ctx, false); err != nil {
					e.log.Warn().Err(err).Msg("claiming the transfers of stopped replicas failed")
				}
				e.afterTakeover()
				if e.orphaned.Swap(false) && !e.adoptOrphans(ctx) {
					e.orphaned.Store(true) // looked for again next time
				}
				// A request is served within ReservationTimeout: an own
				// reservation older than that is one whose response could
				// not be recorded.
				if err := e.settleIdempotency(ctx, e.now().Add(-ReservationTimeout)); err != nil {
					e.log.Warn().Err(err).Msg("settling Idempotency-Key reservations failed")
				}
			}
		}
	}
}

// every runs f every d (and at once first if now) in a goroutine of its
// own, until ctx ends; Shutdown waits for it (e.bg).
func (e *Engine) every(ctx context.Context, d time.Duration, now bool, f func(context.Context)) {
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		tick := time.NewTicker(d)
		defer tick.Stop()
		if now {
			f(ctx)
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				f(ctx)
			}
		}
	}()
}
