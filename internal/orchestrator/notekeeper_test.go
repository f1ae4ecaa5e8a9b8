package orchestrator_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// notedFake is a Fake whose adapter keeps notes (orchestrator.NoteKeeper)
// the test sets, as Bandwidth's callbacks would.
type notedFake struct {
	*orchestratortest.Fake
	mu    sync.Mutex
	notes string
}

func (p *notedFake) Notes(*orchestrator.Transfer) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.notes
}

func (p *notedFake) set(notes string) {
	p.mu.Lock()
	p.notes = notes
	p.mu.Unlock()
}

// A provider's notes are saved with the record by the end of the
// reconcile after they change, once, and never cleared: notes that did
// not change, or that the adapter no longer has (""), cost no save, so
// that a transfer whose readings change nothing is not written at every
// reconcile.
func TestProviderNotesAreSavedOnceWhenTheyChange(t *testing.T) {
	f := orchestratortest.NewFake("fake").SetTarget(orchestratortest.TargetRings)
	p := &notedFake{Fake: f}
	var observed atomic.Int64
	f.Before(orchestratortest.MethodObserve, func(orchestratortest.Record) { observed.Add(1) })
	st := &recStore{Store: memory.New(), saved: make(chan struct{})}
	e, err := orchestrator.New(testConfig(), st, []orchestrator.Provider{p}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{e: e, f: f, store: st}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	id := h.start(t, request("fake", "1000"))
	h.waitFor(t, id, inState(orchestrator.StateConsulting))
	// settled waits until a reconcile that began after the call has
	// ended: the next one's reading has begun (a transfer's reconciles
	// run one at a time).
	settled := func() {
		from := observed.Load()
		eventually(t, "two more readings", func() bool { return observed.Load() >= from+2 })
	}
	settled()
	if n := st.saves(id)[len(st.saves(id))-1].ProviderNotes; n != "" {
		t.Fatalf("notes %q saved before the adapter had any", n)
	}

	for _, notes := range []string{"leg=c-1", "leg=c-1 c-1=USER_BUSY"} {
		p.set(notes)
		e.Notify(id)
		st.waitSaved(t, id, func(tr *orchestrator.Transfer) bool { return tr.ProviderNotes == notes })
		before := len(st.saves(id))
		for range 3 {
			settled()
		}
		if saves := st.saves(id); len(saves) != before {
			t.Errorf("notes %q: %d saves after the one that carried them, for notes that did not change",
				notes, len(saves)-before)
		}
	}

	p.set("") // a process whose adapter knows nothing (never the driver's)
	before := len(st.saves(id))
	for range 3 {
		settled()
	}
	saves := st.saves(id)
	if len(saves) != before || saves[len(saves)-1].ProviderNotes != "leg=c-1 c-1=USER_BUSY" {
		t.Errorf("no notes in the adapter: %d more saves, notes %q; want none, the record's kept",
			len(saves)-before, saves[len(saves)-1].ProviderNotes)
	}
}
