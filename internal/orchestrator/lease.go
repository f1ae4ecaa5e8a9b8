package orchestrator

import (
	"context"
	"errors"
	"time"
)

// acquireBatch bounds how many transfers one maintenance round takes over,
// so that a replica inheriting a dead peer's load spreads it over rounds.
const acquireBatch = 100

// Open resumes what this replica owns from a previous life, takes over
// transfers whose owner stopped renewing its lease, and starts the
// maintenance loop: lease renewal and takeover every LeaseTTL/4, and the
// retention purge every PurgeInterval. Shutdown stops the loop.
func (e *Engine) Open(ctx context.Context) error {
	if err := e.reclaim(ctx); err != nil {
		return err
	}
	e.takeOver(ctx)
	go e.maintain()
	return nil
}

// reclaim resumes non-terminal transfers owned by this replica's name: a
// process restarted with the same Owner is their owner's successor, so it
// need not wait for their leases to expire.
func (e *Engine) reclaim(ctx context.Context) error {
	var mine []*Transfer
	f := ListFilter{States: []State{StatePending, StateHolding, StateDialing, StateConsulting, StateCompleting, StateRecovering}, Limit: 200}
	for {
		page, more, err := e.store.List(ctx, f)
		if err != nil {
			return err
		}
		for _, t := range page {
			if t.Owner == e.cfg.Owner && !e.local(t.ID) {
				mine = append(mine, t)
			}
		}
		if !more || len(page) == 0 {
			break
		}
		f.After = page[len(page)-1].ID
	}
	now := e.now()
	var claimed []*Transfer
	for _, t := range mine {
		t.LeaseExpires = now.Add(e.lease())
		// The version check makes this a claim: if another replica took
		// the transfer over meanwhile, it is theirs.
		if err := e.store.Update(ctx, t); err != nil {
			if errors.Is(err, ErrVersionConflict) {
				continue
			}
			return err
		}
		claimed = append(claimed, t)
	}
	if len(claimed) > 0 {
		e.log.Info().Int("transfers", len(claimed)).Msg("resuming transfers this replica owned before it restarted")
	}
	e.Resume(claimed)
	return nil
}

// takeOver claims transfers whose lease expired and resumes them.
func (e *Engine) takeOver(ctx context.Context) {
	for {
		ts, err := e.store.Acquire(ctx, e.cfg.Owner, e.now(), e.lease(), acquireBatch)
		if err != nil {
			e.log.Warn().Err(err).Msg("taking over expired transfers failed")
			return
		}
		if len(ts) > 0 {
			e.log.Info().Int("transfers", len(ts)).Msg("took over transfers whose owner stopped renewing its lease")
		}
		e.Resume(ts)
		if len(ts) < acquireBatch {
			return
		}
	}
}

// renew extends the leases of the transfers this process drives and stops
// driving those another replica took over (without compensating: they are
// the new owner's to finish).
func (e *Engine) renew(ctx context.Context) {
	ids := e.Running()
	if len(ids) == 0 {
		return
	}
	lost, err := e.store.Renew(ctx, e.cfg.Owner, ids, e.now(), e.lease())
	if err != nil {
		e.log.Warn().Err(err).Msg("renewing leases failed; transfers may be taken over if this persists")
		return
	}
	for _, id := range lost {
		e.mu.Lock()
		r := e.runs[id]
		e.mu.Unlock()
		if r != nil {
			e.log.Warn().Str("transfer_id", id).Msg("lost the lease on a transfer; another replica drives it now")
			r.cancel()
		}
	}
}

func (e *Engine) purge(ctx context.Context) {
	n, err := e.store.Purge(ctx, e.now().Add(-e.cfg.Retention))
	if err != nil {
		e.log.Warn().Err(err).Msg("purging old transfers failed")
		return
	}
	if n > 0 {
		e.log.Info().Int("transfers", n).Dur("retention", e.cfg.Retention).Msg("purged terminal transfers past retention")
	}
}

// maintain runs until Shutdown has finished: leases are renewed while
// shutdown compensates, so that no peer takes a transfer over mid-undo.
func (e *Engine) maintain() {
	ctx := e.hard
	leases := time.NewTicker(e.cfg.LeaseTTL / 4)
	defer leases.Stop()
	purges := time.NewTicker(e.cfg.PurgeInterval)
	defer purges.Stop()
	e.purge(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-leases.C:
			e.renew(ctx)
			if !e.isStopping() {
				e.takeOver(ctx)
			}
		case <-purges.C:
			e.purge(ctx)
		}
	}
}
