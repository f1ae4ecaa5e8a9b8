package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// RunSupersededOnceTheTakerStopped runs the conformance case of a save
// carrying the token of a process whose name another process took over,
// made once the taker's heartbeat has run out: it is refused
// (ErrSupersededSave) all the same. The name's heartbeat decides, not the
// time: the row holds the taker's token until a heartbeat writes another,
// and the process that lost the name may not drive its transfers again
// before its own heartbeat took the name back (Heartbeat judges the run-out
// row anybody's). Once it did, its saves go through. A store that judged
// the token only while the taker's heartbeat was live let the superseded
// process, still driving the transfers it had in memory, write over what
// the taker had done with them (its join, its hang-ups) after the taker
// stopped: no test made that save (mutations of the stores, sixty-fourth
// pass).
func RunSupersededOnceTheTakerStopped(t *testing.T, open func(t *testing.T) orchestrator.Store) {
	t.Parallel()
	f := &fixture{T: t, s: open(t), ctx: t.Context()}
	const ttl = 10 * time.Second
	f.beat("X", "first", now, ttl, false)
	a := f.transfer("1000")
	a.Owner, a.Token = "X", "first"
	f.create(a)
	f.beat("X", "second", now.Add(time.Second), ttl, true) // taken over, live until now+11s
	// The second process stopped without releasing: its heartbeat runs
	// out. The first, which has not heartbeaten since, saves long after.
	late := now.Add(time.Hour)
	a.State, a.UpdatedAt = orchestrator.StateHolding, late
	err := f.s.Update(f.ctx, a)
	if !errors.Is(err, orchestrator.ErrSupersededSave) || orchestrator.KindOf(err) != orchestrator.KindConflict {
		f.Errorf("the superseded process's update once the taker's heartbeat ran out = %v (kind %v), want ErrSupersededSave of kind conflict",
			err, orchestrator.KindOf(err))
	}
	if got := f.get(a.ID); got.Version != 1 || got.State != orchestrator.StatePending {
		f.Errorf("after the refused update the record is at version %d, %s; want 1, pending", got.Version, got.State)
	}
	c := f.transfer("1001")
	c.Owner, c.Token, c.UpdatedAt = "X", "first", late
	err = f.s.Create(f.ctx, c)
	if !errors.Is(err, orchestrator.ErrSupersededSave) || orchestrator.KindOf(err) != orchestrator.KindConflict {
		f.Errorf("the superseded process's create once the taker's heartbeat ran out = %v (kind %v), want ErrSupersededSave of kind conflict",
			err, orchestrator.KindOf(err))
	}
	// Its own heartbeat takes the run-out name back: its saves are its
	// name's again.
	if !f.beat("X", "first", late, ttl, false) {
		f.Errorf("the first process's heartbeat over the run-out row: expired false, want true")
	}
	f.update(a)
	if got := f.get(a.ID); got.Version != 2 || got.State != orchestrator.StateHolding {
		f.Errorf("after the name was taken back the record is at version %d, %s; want 2, holding", got.Version, got.State)
	}
}
