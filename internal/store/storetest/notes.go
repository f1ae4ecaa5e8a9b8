package storetest

import (
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// RunProviderNotesKept runs the conformance case of a record's
// ProviderNotes (a Bandwidth adapter's callback notes): written with an
// update, they are read back by Get, List and the Claim of a replica
// resuming the transfer, and an update that leaves them alone keeps them.
// They are what a process resuming a transfer knows of callbacks only
// the process that heard them knew; a store that dropped them left it to
// judge a leg only a callback named as one that never appeared.
func RunProviderNotesKept(t *testing.T, open func(t *testing.T) orchestrator.Store) {
	t.Parallel()
	f := &fixture{T: t, s: open(t), ctx: t.Context()}
	const notes = "leg=c-b1 c-b1=USER_BUSY"
	a := f.bwTransfer("c-a1")
	a.Owner = "X"
	f.create(a)
	if got := f.get(a.ID); got.ProviderNotes != "" {
		f.Errorf("a created record's notes = %q, want none", got.ProviderNotes)
	}
	a.State, a.ProviderNotes = orchestrator.StateDialing, notes
	f.update(a)
	f.equal("Get after the notes' update", f.get(a.ID), a)
	a.State = orchestrator.StateConsulting
	f.update(a)
	if got := f.get(a.ID); got.ProviderNotes != notes {
		f.Errorf("after an update of another field the notes = %q, want %q", got.ProviderNotes, notes)
	}
	ts, _, err := f.s.List(f.ctx, orchestrator.ListFilter{CallID: "c-a1", Limit: 10})
	if err != nil || len(ts) != 1 || ts[0].ProviderNotes != notes {
		f.Errorf("List by call: %d records, %v; want one with the notes", len(ts), err)
	}
	// X's heartbeat never written: Y takes its transfers over.
	claimed := f.claim("Y", now.Add(time.Hour), false, 10)
	if len(claimed) != 1 || claimed[0].ProviderNotes != notes {
		f.Errorf("claimed %d records; want %s with notes %q", len(claimed), a.ID, notes)
	}
	if got := f.get(a.ID); got.ProviderNotes != notes || got.Owner != "Y" {
		f.Errorf("after the claim: owner %q, notes %q; want Y, %q", got.Owner, got.ProviderNotes, notes)
	}
}
