package orchestrator

import (
	"context"
	"time"
)

// AdoptOrphans runs the engine's look for the open transfers it owns and
// drives none of, as its maintenance loop does after a claim whose answer
// was lost.
func AdoptOrphans(ctx context.Context, e *Engine) bool { return e.adoptOrphans(ctx) }

// LeaseTimer is the lease's timer as the tests see it.
type LeaseTimer = leaseTimer

// SetLeaseTimer makes the engine start the lease's timer with after, in
// place of time.AfterFunc. It must be called before Open.
func SetLeaseTimer(e *Engine, after func(d time.Duration, f func()) LeaseTimer) { e.afterFunc = after }

// Wake has the engine reconcile transfer id now, as a watcher's change
// does: a test that moves a manual clock past a wait ends it at once.
func Wake(e *Engine, id string) { e.wake(id, false) }

// Outlived reports whether a reading of transfer id that this engine
// resumed showed its consult live once a hang-up the process before sent
// unrecorded had landed (see whoEnded).
func Outlived(e *Engine, id string) bool {
	e.mu.Lock()
	en := e.entries[id]
	e.mu.Unlock()
	return en != nil && en.outlived.Load()
}

// WhoEnded is whoEnded's verdict on reason for a consult found ended by
// an engine that resumed its transfer (adopted at adoptedAt; zero when
// its hand-over said nothing was sent unrecorded) or created it, whose
// readings did or did not show the consult outlive the adoption's window.
func WhoEnded(resumed bool, adoptedAt time.Time, outlived bool, reason Reason) Reason {
	en := &entry{resumed: resumed, adoptedAt: adoptedAt}
	en.outlived.Store(outlived)
	r, _ := (*Engine)(nil).whoEnded(en, reason, "")
	return r
}

// Reclaim hands e a claim's record of a transfer it still holds, as its
// own claim does when it takes back a transfer another replica took over
// meanwhile (reclaim); it reports whether e held the transfer.
func Reclaim(e *Engine, t *Transfer) bool { return e.reclaim(t) }

// SeenLive is when the latest reading of transfer id, resumed by e with
// an adoption's wait, began that showed its consult live (entry.liveAt):
// what e's hand-over would say of it. Read under the entry's gate, which
// the worker holds through consulting, where it is written; for a
// transfer in consulting only.
func SeenLive(e *Engine, id string) time.Time {
	e.mu.Lock()
	en := e.entries[id]
	e.mu.Unlock()
	if en == nil {
		return time.Time{}
	}
	en.gate <- struct{}{}
	defer func() { <-en.gate }()
	return en.liveAt
}
