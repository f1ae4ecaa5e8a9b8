package bandwidth

import (
	"fmt"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
)

// The notes a record keeps read back as the callbacks told them: in a
// process that heard nothing, and merged in one that heard more since (a
// failure the record says is not undone by a plain end heard here, nor
// the leg heard here by the record's); their form does not depend on the
// order they were heard in, malformed parts are skipped, and a transfer
// no callback told of keeps nothing.
func TestCallbackNotesReadBackFromTheRecord(t *testing.T) {
	tr := &orchestrator.Transfer{ID: "tr-1"}
	first := bookClient(t)
	if n := first.Notes(tr); n != "" {
		t.Fatalf("notes of a transfer nothing told of: %q", n)
	}
	first.learn(tr.ID, "c-b", causeUserBusy)
	first.learn(tr.ID, "c-a", causeNormalClearing)
	first.learn(tr.ID, "c-leg", "")
	first.causes.put(tr.ID, "c-a"+historyRead, "1") // not a note for the record
	want := "leg=c-leg c-a=NORMAL_CLEARING c-b=USER_BUSY"
	if n := first.Notes(tr); n != want {
		t.Fatalf("notes %q, want %q", n, want)
	}
	other := bookClient(t)
	other.learn(tr.ID, "c-a", causeNormalClearing)
	other.learn(tr.ID, "c-b", causeUserBusy)
	other.learn(tr.ID, "c-leg", "")
	if n := other.Notes(tr); n != want {
		t.Fatalf("notes heard in another order: %q, want %q", n, want)
	}

	tr.ProviderNotes = first.Notes(tr)
	second := bookClient(t)
	if n := second.Notes(tr); n != want {
		t.Errorf("notes read back: %q, want %q", n, want)
	}
	if leg, cause := second.causes.leg(tr.ID), second.causes.get(tr.ID, "c-b"); leg != "c-leg" || cause != causeUserBusy {
		t.Errorf("read back: leg %q, c-b's cause %q", leg, cause)
	}

	third := bookClient(t)
	third.learn(tr.ID, "c-b", causeNormalClearing) // after the busy the record says
	third.learn(tr.ID, "c-a", causeUserBusy)       // a failure after the record's plain end
	third.learn(tr.ID, "c-new", "")
	if n := third.Notes(tr); n != "leg=c-new c-a=USER_BUSY c-b=USER_BUSY" {
		t.Errorf("merged: %q", n)
	}

	malformed := &orchestrator.Transfer{ID: "tr-2",
		ProviderNotes: "leg=x c-a=busy c-b c-c=USER_BUSY =1 c-d=NO_ANSWER=1 leg=c-e"}
	if n := bookClient(t).Notes(malformed); n != "leg=c-e c-c=USER_BUSY" {
		t.Errorf("malformed notes read back as %q", n)
	}

	many := bookClient(t)
	many.learn(tr.ID, "c-zz", causeUserBusy)
	for i := range 20 {
		many.learn(tr.ID, fmt.Sprintf("c-%02d", i), causeCallRejected)
	}
	many.learn(tr.ID, "c-zz", "")
	n := many.Notes(&orchestrator.Transfer{ID: tr.ID})
	if parts := strings.Fields(n); len(parts) != maxSavedNotes || parts[0] != "leg=c-zz" || parts[1] != "c-zz=USER_BUSY" {
		t.Errorf("notes of a transfer told of many calls: %q", n)
	}
}

// Notes that forged callbacks push past a transfer's share of the book
// (maxNotesPerTransfer, evicting parts the record keeps, which recall
// takes back) settle once the callbacks stop: the engine saves a change
// only, and notes whose text moved at every reading would have cost a
// save per reconcile for as long as the transfer lasts.
func TestCallbackNotesSettleWhenForgedCallbacksFillTheBook(t *testing.T) {
	for _, falling := range []bool{false, true} {
		c := bookClient(t)
		tr := &orchestrator.Transfer{ID: "tr-1"}
		c.learn(tr.ID, "c-leg", "")
		for i := range 2 * maxNotesPerTransfer {
			id := fmt.Sprintf("c-%03d", i)
			if falling {
				id = fmt.Sprintf("c-%03d", 999-i)
			}
			c.learn(tr.ID, id, causeUserBusy)
			c.learn(tr.ID, "c-leg", "")
			tr.ProviderNotes = c.Notes(tr) // each reconcile a callback wakes saves its change
		}
		for i := range 4 {
			if n := c.Notes(tr); n != tr.ProviderNotes {
				t.Fatalf("falling ids %v: reading %d after the callbacks stopped changed the notes:\n%q\nto %q",
					falling, i, tr.ProviderNotes, n)
			}
		}
		if parts := strings.Fields(tr.ProviderNotes); len(parts) != maxSavedNotes || parts[0] != "leg=c-leg" {
			t.Errorf("falling ids %v: notes %q", falling, tr.ProviderNotes)
		}
	}
}

// A callback's note is kept once the record's notes hold what it told:
// the call it named (the leg, or a call with a cause) and its cause as
// merged after the record's. transferd answers the callback 2xx only
// then (api.NoteKeeper).
func TestACallbackNoteIsKeptOnceTheRecordHoldsIt(t *testing.T) {
	c := bookClient(t)
	for _, k := range []struct {
		notes, note string
		kept        bool
	}{
		{"", "c-leg", false},
		{"", "c-leg/USER_BUSY", false},
		{"leg=c-leg", "c-leg", true},
		{"leg=c-leg", "c-leg/USER_BUSY", false},
		{"leg=c-leg c-leg=USER_BUSY", "c-leg/USER_BUSY", true},
		// A plain end does not undo a failure, as when heard (mergeCause);
		// a failure after a plain end does.
		{"leg=c-leg c-leg=USER_BUSY", "c-leg/NORMAL_CLEARING", true},
		{"leg=c-leg c-leg=NORMAL_CLEARING", "c-leg/USER_BUSY", false},
		// A leg named later stands for one named before it.
		{"leg=c-new c-new=USER_BUSY", "c-old", true},
		{"leg=c-new", "c-old/NO_ANSWER", false},
		{"leg=c-new c-old=NO_ANSWER", "c-old/NO_ANSWER", true},
	} {
		tr := &orchestrator.Transfer{ID: "tr-1", ProviderNotes: k.notes}
		if got := c.NoteKept(tr, k.note); got != k.kept {
			t.Errorf("notes %q, note %q: kept %v, want %v", k.notes, k.note, got, k.kept)
		}
	}
}

// A call a callback names after the record's leg is the leg from then
// on: the record naming the leg before it does not hold what its
// callback told. A consult's create sent again after its answer was
// lost makes a second leg; its callback (its create's answer lost too)
// is what names it. NoteKept took any leg in the record for the call
// named, so that callback was answered 204 before the record named the
// new leg, and a driver stopping then left the leg unknown to the
// process resuming the transfer, which followed the old one.
func TestANoteNamingANewLegIsNotKeptByTheLegBefore(t *testing.T) {
	c := bookClient(t)
	tr := &orchestrator.Transfer{ID: "tr-1"}
	c.learn(tr.ID, "c-old", "")
	tr.ProviderNotes = c.Notes(tr)
	c.learn(tr.ID, "c-new", "")
	if c.NoteKept(tr, "c-new") {
		t.Errorf("notes %q: kept the new leg c-new", tr.ProviderNotes)
	}
	// The record saved since holds it, and stands for the leg before.
	tr.ProviderNotes = c.Notes(tr)
	if !c.NoteKept(tr, "c-new") || !c.NoteKept(tr, "c-old") {
		t.Errorf("notes %q: the new leg, or the leg before, not kept", tr.ProviderNotes)
	}
	// A call heard here last that the record names with a cause of its
	// own, another leg named after: the record holds it, the process
	// that saved it having heard the other after it.
	c.learn(tr.ID, "c-old", causeUserBusy)
	c.learn(tr.ID, "c-new", "")
	tr.ProviderNotes = c.Notes(tr)
	c.learn(tr.ID, "c-old", "")
	if !c.NoteKept(tr, "c-old/"+causeUserBusy) {
		t.Errorf("notes %q: c-old's cause not kept", tr.ProviderNotes)
	}
	// Named again after c-new, c-old is the leg the record is to name.
	if c.NoteKept(tr, "c-old") {
		t.Errorf("notes %q: kept c-old, named after the record's leg", tr.ProviderNotes)
	}
	// The leg the record names, with its cause, heard again.
	tr.ProviderNotes = c.Notes(tr)
	if !strings.HasPrefix(tr.ProviderNotes, "leg=c-old c-old=") || !c.NoteKept(tr, "c-old") {
		t.Errorf("notes %q: c-old heard again not kept", tr.ProviderNotes)
	}
}
