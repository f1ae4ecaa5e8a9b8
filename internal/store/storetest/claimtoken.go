package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// RunClaimCarriesTheToken runs the conformance case of a claim made with
// its process's token (Store.Claim) under a name another process took
// over: it claims nothing, its own transfers included, and fails with
// ErrSuperseded of kind conflict, as a save does (SavesCarryTheToken),
// also when nothing was claimable and once the taker's heartbeat has run
// out. Before, a process unaware of the takeover, its lease still held,
// made a dead replica's transfers and handed-over ones the name's: its
// first save of each was refused, and the process that drives the name
// adopted them only a heartbeat TTL after its takeover (afterTakeover),
// where a live replica would have claimed them at its next claim, a
// quarter of a lease away. A name with no heartbeat, or one without a
// token (an older version's), is no other process's.
func RunClaimCarriesTheToken(t *testing.T, open func(t *testing.T) orchestrator.Store) {
	t.Parallel()
	f := &fixture{T: t, s: open(t), ctx: t.Context()}
	const ttl = 10 * time.Second
	f.beat("X", "first", now, ttl, false)
	f.beat("Z", "z", now, ttl, false)
	mine := f.transfer("1000")
	mine.Owner = "X"
	f.create(mine)
	dead := f.transfer("1001")
	dead.Owner = "Z"
	f.create(dead)
	handed := f.transfer("1002")
	f.create(handed)
	f.beat("X", "second", now.Add(5*time.Second), ttl, true) // live until now+15s

	refused := func(when string, at time.Time, own bool) {
		f.Helper()
		got, err := f.s.Claim(f.ctx, "X", "first", at, own, 0)
		if !errors.Is(err, orchestrator.ErrSuperseded) || orchestrator.KindOf(err) != orchestrator.KindConflict || len(got) > 0 {
			f.Errorf("Claim(X, own %v) by the process taken over %s = %v, %v (kind %v); want nothing and ErrSuperseded of kind conflict",
				own, when, ids(got), err, orchestrator.KindOf(err))
		}
	}
	// Nothing is claimable yet (Z is live): refused all the same.
	refused("with nothing claimable", now.Add(time.Second), false)
	// Z's heartbeat ran out at now+10s; the taker's holds.
	at := now.Add(12 * time.Second)
	refused("while the taker is live", at, false)
	refused("while the taker is live", at, true)
	// The taker stopped without releasing: its token stays the name's
	// until a heartbeat writes another, as for saves.
	late := now.Add(time.Hour)
	refused("once the taker's heartbeat ran out", late, false)
	for _, tr := range []*orchestrator.Transfer{mine, dead, handed} {
		if got := f.get(tr.ID); got.Version != 1 || got.Owner != tr.Owner {
			f.Errorf("after the refused claims %s is at version %d, owner %q; want 1, %q", tr.ID, got.Version, got.Owner, tr.Owner)
		}
	}

	// The taker's claims are its name's.
	got, err := f.s.Claim(f.ctx, "X", "second", at, true, 0)
	if err != nil || len(got) != 3 {
		f.Errorf("Claim(X, own) by the process that took the name = %v, %v; want all three", ids(got), err)
	}
	// A name with no heartbeat, and one whose heartbeat has no token (an
	// older version's), refuse nothing.
	f.beat("Y", "", now, ttl, false)
	for _, owner := range []string{"Y", "W"} {
		if _, err := f.s.Claim(f.ctx, owner, "any", at, true, 0); err != nil {
			f.Errorf("Claim(%s) with a token, the name's heartbeat holding none = %v; want no error", owner, err)
		}
	}
	// The first process takes the run-out name back: its claims are its
	// name's again.
	f.beat("X", "first", late, ttl, false)
	if _, err := f.s.Claim(f.ctx, "X", "first", late, true, 0); err != nil {
		f.Errorf("Claim(X, own) once the first process took the name back = %v; want no error", err)
	}
}

// RunAClaimWithNothingClaimableIsRefusedForTheToken runs the side of
// RunClaimCarriesTheToken where nothing at all is claimable (a live
// replica's transfer, the claimer's own not asked for): the claim made
// with the token of a process whose name another took over is refused
// all the same (ErrSuperseded of kind conflict), as Store.Claim says,
// whether the store finds anything claimable or not. A store answering
// "nothing" before it looks at the token (SQLite's read ahead of its
// writer's transaction, were it to return on no row found whatever the
// token) would leave the process unaware of the takeover until its next
// heartbeat. The sixty-sixth pass's mutations found this untested:
// RunClaimCarriesTheToken's "nothing claimable" case has a handed-over
// transfer, which is claimable.
func RunAClaimWithNothingClaimableIsRefusedForTheToken(t *testing.T, open func(t *testing.T) orchestrator.Store) {
	t.Parallel()
	f := &fixture{T: t, s: open(t), ctx: t.Context()}
	const ttl = 10 * time.Second
	f.beat("X", "first", now, ttl, false)
	f.beat("Z", "z", now, ttl, false)
	dead := f.transfer("1001")
	dead.Owner = "Z" // live
	f.create(dead)
	mine := f.transfer("1000")
	mine.Owner = "X"
	f.create(mine)
	if got, err := f.s.Claim(f.ctx, "X", "first", now.Add(time.Second), false, 0); err != nil || len(got) > 0 {
		f.Fatalf("Claim(X) with nothing claimable = %v, %v; want nothing, no error", ids(got), err)
	}
	f.beat("X", "second", now.Add(2*time.Second), ttl, true)
	got, err := f.s.Claim(f.ctx, "X", "first", now.Add(3*time.Second), false, 0)
	if !errors.Is(err, orchestrator.ErrSuperseded) || orchestrator.KindOf(err) != orchestrator.KindConflict || len(got) > 0 {
		f.Errorf("Claim(X) with nothing claimable by the process taken over = %v, %v (kind %v); want nothing and ErrSuperseded of kind conflict",
			ids(got), err, orchestrator.KindOf(err))
	}
}
