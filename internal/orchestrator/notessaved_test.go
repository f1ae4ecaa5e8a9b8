package orchestrator_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// countedGets is the memory store counting its Gets, and telling read
// after each.
type countedGets struct {
	*memory.Store
	gets atomic.Int32
	read chan struct{}
}

func (s *countedGets) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	defer func() { s.read <- struct{}{} }()
	s.gets.Add(1)
	return s.Store.Get(ctx, id)
}

// A wait on another replica's transfer (a callback's for its note to be
// saved) read the store at once, then every quarter of PollMaxInterval
// until the note was there: two reads and half a second for a callback
// whose note the driver saved a moment later. Told that the driver saved
// the transfer's notes (HeardNotesSaved, from the driver's
// Config.NotesSaved through the store's notifications), it reads the
// store again at once: two reads, and no poll. The poll here is an hour
// away, so that only the word ends the wait.
func TestAWaitOnAnotherReplicasTransferReadsAgainWhenItsNotesAreSaved(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	st := &countedGets{Store: mem, read: make(chan struct{}, 8)}
	now := time.Now()
	if _, err := mem.Heartbeat(ctx, "elsewhere", "", now, time.Hour, false); err != nil {
		t.Fatal(err)
	}
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	tr := &orchestrator.Transfer{ID: orchestrator.NewID(now), Tenant: orchestrator.DefaultTenant, Request: r,
		State: orchestrator.StateConsulting, Answered: true, Owner: "elsewhere", CreatedAt: now, UpdatedAt: now}
	if err := mem.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig(time.Second, stormWindowShort)
	cfg.PollMaxInterval = time.Hour
	e := testEngine(t, cfg, st, orchestratortest.NewFake("fake"), nil)

	done := make(chan *orchestrator.Transfer, 1)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	go func() {
		got, _ := e.Wait(wctx, tr.ID, func(t *orchestrator.Transfer) bool { return t.ProviderNotes == "leg=c-1" })
		done <- got
	}()
	<-st.read
	// Word of another transfer's notes changes nothing here.
	e.HeardNotesSaved("another")
	// The driver saves the note, and tells of it.
	cur, err := mem.Get(ctx, tr.ID)
	if err != nil {
		t.Fatal(err)
	}
	cur.ProviderNotes = "leg=c-1"
	if err := mem.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	e.HeardNotesSaved(tr.ID)
	got := <-done
	if got == nil || got.ProviderNotes != "leg=c-1" {
		t.Fatalf("the wait answered %+v; want the record holding the note", got)
	}
	if n := st.gets.Load(); n != 2 {
		t.Errorf("the wait read the store %d times, want 2: the first look and the one the word woke", n)
	}
}

// The driving replica tells (Config.NotesSaved) of each save that took in
// notes the record did not hold, once it is made; of no other.
func TestNotesSavedTellsOfTheSavesThatTookInNotes(t *testing.T) {
	f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings)
	p := &notedFake{Fake: f}
	st := &recStore{Store: memory.New(), saved: make(chan struct{})}
	var mu sync.Mutex
	var told []string // the notes the record held when each word came
	cfg := testConfig()
	cfg.NotesSaved = func(id string) {
		tr, err := st.Store.Get(context.Background(), id)
		if err != nil {
			t.Errorf("NotesSaved(%s): %v", id, err)
			return
		}
		mu.Lock()
		told = append(told, tr.ProviderNotes)
		mu.Unlock()
	}
	e := testEngine(t, cfg, st, p, nil)
	h := &harness{e: e, f: f, store: st}
	id := h.start(t, request("fake", "1000"))
	h.waitFor(t, id, inState(orchestrator.StateConsulting))
	p.set("leg=c-1")
	e.Notify(id)
	st.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.ProviderNotes == "leg=c-1" })
	// The saves after it carry the same notes, and tell nothing more.
	if _, err := e.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, id, func(tr *orchestrator.Transfer) bool { return tr.State.Terminal() })
	mu.Lock()
	defer mu.Unlock()
	if len(told) != 1 || told[0] != "leg=c-1" {
		t.Errorf("NotesSaved told with the record's notes %q, want once, after the save of %q", told, "leg=c-1")
	}
}

// refusingNotes is a recStore that refuses the first save carrying notes,
// as a database restarting does, and closes refused then.
type refusingNotes struct {
	*recStore
	notes   string
	once    sync.Once
	refused chan struct{}
}

func (s *refusingNotes) Update(ctx context.Context, t *orchestrator.Transfer) error {
	refuse := false
	if t.ProviderNotes == s.notes {
		s.once.Do(func() { refuse = true })
	}
	if refuse {
		close(s.refused)
		return errors.New("refusingNotes: the database system is shutting down")
	}
	return s.recStore.Update(ctx, t)
}

// A note whose save failed is told of once a later save takes it in: the
// record as last saved (not the working record, which kept the note
// through the failure) is what the word compares with. Compared with the
// working record, the save that finally took the note in told nothing, and
// a callback on another replica waiting for it was answered at its poll.
func TestNotesSavedTellsOfANoteWhoseFirstSaveFailed(t *testing.T) {
	f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings)
	p := &notedFake{Fake: f}
	rec := &recStore{Store: memory.New(), saved: make(chan struct{})}
	st := &refusingNotes{recStore: rec, notes: "leg=c-1", refused: make(chan struct{})}
	var mu sync.Mutex
	var told []string // the notes the record held when each word came
	cfg := testConfig()
	cfg.NotesSaved = func(id string) {
		tr, err := rec.Store.Get(context.Background(), id)
		if err != nil {
			t.Errorf("NotesSaved(%s): %v", id, err)
			return
		}
		mu.Lock()
		told = append(told, tr.ProviderNotes)
		mu.Unlock()
	}
	e := testEngine(t, cfg, st, p, nil)
	h := &harness{e: e, f: f, store: rec}
	id := h.start(t, request("fake", "1000"))
	// Once the consult is seen ringing, its reconciles save nothing more: the
	// note is the only change, saved at the end of the reconcile it wakes,
	// which the refusal ends. The next reconcile carries it again.
	rec.waitSaved(t, id, func(tr *orchestrator.Transfer) bool {
		return tr.State == orchestrator.StateConsulting && tr.Seen.Consult
	})
	p.set("leg=c-1")
	e.Notify(id)
	<-st.refused
	e.Notify(id) // a reconcile more, whose save carries the note again
	rec.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.ProviderNotes == "leg=c-1" })
	if _, err := e.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, id, func(tr *orchestrator.Transfer) bool { return tr.State.Terminal() })
	mu.Lock()
	defer mu.Unlock()
	if len(told) != 1 || told[0] != "leg=c-1" {
		t.Errorf("NotesSaved told with the record's notes %q, want once, after the save that took in %q", told, "leg=c-1")
	}
}
