package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// RunASupersededCreateIsRefusedForItsToken runs the conformance case of a
// create made with the token of a process whose name another process took
// over, for a call another transfer holds: it is refused for its token
// (ErrSupersededSave), as SQLite and PostgreSQL judge the token before
// the call, and so the process stops at once (the engine's supersede).
// The memory store judged the call first and answered an
// ActiveTransferError: the process stayed ready and took creates until
// its next refusal (storage review, sixty-fifth pass).
func RunASupersededCreateIsRefusedForItsToken(t *testing.T, open func(t *testing.T) orchestrator.Store) {
	t.Parallel()
	f := &fixture{T: t, s: open(t), ctx: t.Context()}
	const ttl = 10 * time.Second
	f.beat("X", "first", now, ttl, false)
	held := f.transfer("1000")
	held.Owner, held.Token = "X", "first"
	f.create(held)
	f.beat("X", "second", now.Add(time.Second), ttl, true)
	again := f.transfer("1000")
	again.Owner, again.Token = "X", "first"
	err := f.s.Create(f.ctx, again)
	if !errors.Is(err, orchestrator.ErrSupersededSave) || orchestrator.KindOf(err) != orchestrator.KindConflict {
		f.Errorf("a superseded process's create of a call its active transfer holds = %v (kind %v), want ErrSupersededSave of kind conflict",
			err, orchestrator.KindOf(err))
	}
}
