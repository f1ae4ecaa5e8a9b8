package bandwidth

import (
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
)

// The record's notes are merged into the book as told before what this
// process heard (recall's mergeCause(record's, heard)): of two failures
// of one leg, the one heard here, later, wins, as it would have had one
// process heard both; a plain end heard here does not undo the record's
// failure (TestCallbackNotesReadBackFromTheRecord). Merged the other way,
// the record's failure overrode a later one (the sixty-sixth pass's
// mutations found the order untested).
func TestAFailureHeardAfterTheRecordsFailureWins(t *testing.T) {
	c := bookClient(t)
	tr := &orchestrator.Transfer{ID: "tr-1", ProviderNotes: "leg=c-a c-a=" + causeNoAnswer}
	c.learn(tr.ID, "c-a", causeCallRejected)
	if n, want := c.Notes(tr), "leg=c-a c-a="+causeCallRejected; n != want {
		t.Errorf("notes %q, want %q", n, want)
	}
	if cause := c.causes.get(tr.ID, "c-a"); cause != causeCallRejected {
		t.Errorf("c-a's cause %q, want %q", cause, causeCallRejected)
	}
}

// The leg a callback named is written once in the notes, its cause
// right after it, and not again among the other calls: written twice, it
// took a place of the few a record keeps (maxSavedNotes) from another
// call's cause (the sixty-sixth pass's mutations found this untested:
// the leg of TestCallbackNotesReadBackFromTheRecord's notes has no cause,
// and where it has one it sorts past the bound).
func TestTheNamedLegIsWrittenOnceInTheNotes(t *testing.T) {
	c := bookClient(t)
	tr := &orchestrator.Transfer{ID: "tr-1"}
	c.learn(tr.ID, "c-a", causeNormalClearing)
	c.learn(tr.ID, "c-b", causeUserBusy) // the leg named last
	if n, want := c.Notes(tr), "leg=c-b c-b="+causeUserBusy+" c-a="+causeNormalClearing; n != want {
		t.Errorf("notes %q, want %q", n, want)
	}
}
