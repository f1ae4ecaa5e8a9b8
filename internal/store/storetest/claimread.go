package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// RunAClaimWhoseTokenCannotBeReadIsNoRefusal runs the conformance case of
// a claim that cannot read its name's heartbeat (Store.Claim with a
// token): a failure, never ErrSuperseded, which the engine takes for
// another process's takeover and stops at. Nothing is claimed, and the
// next claim, the heartbeats readable again, claims as before. cut makes
// the heartbeats unreadable (true) or readable again (false); the stores
// that cannot fail so (memory) do not run it.
func RunAClaimWhoseTokenCannotBeReadIsNoRefusal(t *testing.T, open func(t *testing.T) (s orchestrator.Store, cut func(bool))) {
	t.Parallel()
	s, cut := open(t)
	f := &fixture{T: t, s: s, ctx: t.Context()}
	f.beat("X", "mine", now, 10*time.Second, false)
	handed := f.transfer("1000")
	f.create(handed)

	cut(true)
	got, err := f.s.Claim(f.ctx, "X", "mine", now, false, 0)
	cut(false)
	switch {
	case err == nil:
		f.Errorf("Claim(X) with the heartbeats unreadable = %v, no error; want a failure", ids(got))
	case errors.Is(err, orchestrator.ErrSuperseded) || errors.Is(err, orchestrator.ErrSupersededSave):
		f.Errorf("Claim(X) with the heartbeats unreadable = %v; want a failure, not a refusal for the token", err)
	case len(got) > 0:
		f.Errorf("Claim(X) with the heartbeats unreadable claimed %v along with %v", ids(got), err)
	}
	if c := f.get(handed.ID); c.Version != 1 || c.Owner != "" {
		f.Errorf("after the failed claim %s is at version %d, owner %q; want 1, unowned", handed.ID, c.Version, c.Owner)
	}
	got, err = f.s.Claim(f.ctx, "X", "mine", now, false, 0)
	if err != nil || len(got) != 1 || got[0].ID != handed.ID {
		f.Errorf("Claim(X) with the heartbeats readable again = %v, %v; want %s", ids(got), err, handed.ID)
	}
}
