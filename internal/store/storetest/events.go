package storetest

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// Emit appends an event to t's outbox as the engine does. Its time is
// whole in microseconds: PostgreSQL keeps Event.At to the microsecond.
func Emit(t *orchestrator.Transfer, typ orchestrator.EventType, from, to orchestrator.State) {
	t.EventSeq++
	tenant := t.Tenant
	if tenant == "" {
		tenant = orchestrator.DefaultTenant
	}
	t.Outbox = append(t.Outbox, orchestrator.Event{
		ID: fmt.Sprintf("evt_%s_%d", t.ID, t.EventSeq), Tenant: tenant, TransferID: t.ID, Seq: t.EventSeq, Type: typ,
		At: now.Add(time.Duration(t.EventSeq) * time.Millisecond), From: from, To: to,
	})
}

// saved returns the record as the store saved it: what an event's
// snapshot must equal. The outbox is not part of the record.
func saved(t *orchestrator.Transfer) *orchestrator.Transfer {
	c := t.Clone()
	c.Outbox = nil
	return c
}

// clearOutbox does what the engine does after a successful save.
func clearOutbox(t *orchestrator.Transfer) { t.Outbox = nil }

func (f *fixture) events(ef orchestrator.EventFilter) []orchestrator.Event {
	f.Helper()
	evs, err := f.s.Events(f.ctx, ef)
	if err != nil {
		f.Fatalf("Events(%+v): %v", ef, err)
	}
	return evs
}

func eventIDs(evs []orchestrator.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

func outboxIDs(ts ...*orchestrator.Transfer) []string {
	var out []string
	for _, t := range ts {
		out = append(out, eventIDs(t.Outbox)...)
	}
	return out
}

// Create and Update write the events of the outbox with the record: each
// event comes back with every field, a position above all before it, and
// the record as saved by that write, whether the save recorded one event
// or several (a store may write the two apart). The store leaves the
// outbox alone.
func testEventsWrittenWithSaves(f *fixture) {
	t := f.transfer("1000")
	t.Tenant = "acme"
	Emit(t, orchestrator.EventCreated, "", "")
	f.create(t)
	if len(t.Outbox) != 1 {
		f.Errorf("Create changed the outbox to %d events: the engine empties it", len(t.Outbox))
	}
	want := slices.Clone(t.Outbox)
	snap1 := saved(t)
	clearOutbox(t)

	f.update(t) // a save without events writes none
	t.State, t.UpdatedAt = orchestrator.StateHolding, now
	Emit(t, orchestrator.EventStateChanged, orchestrator.StatePending, orchestrator.StateHolding)
	Emit(t, orchestrator.EventTargetAnswered, "", "")
	f.update(t)
	if len(t.Outbox) != 2 {
		f.Errorf("Update changed the outbox to %d events", len(t.Outbox))
	}
	want = append(want, t.Outbox...)
	snap3 := saved(t)
	clearOutbox(t)

	t.State, t.UpdatedAt = orchestrator.StateDialing, now
	Emit(t, orchestrator.EventStateChanged, orchestrator.StateHolding, orchestrator.StateDialing)
	f.update(t) // one event
	want = append(want, t.Outbox...)
	snap4 := saved(t)
	clearOutbox(t)

	u := f.transfer("1001")
	u.Tenant = "acme"
	Emit(u, orchestrator.EventCreated, "", "")
	Emit(u, orchestrator.EventStateChanged, "", orchestrator.StatePending)
	f.create(u) // two events
	want = append(want, u.Outbox...)
	snapU := saved(u)
	clearOutbox(u)

	got := f.events(orchestrator.EventFilter{Tenant: "acme"})
	if !slices.Equal(eventIDs(got), eventIDs(want)) {
		f.Fatalf("Events = %v, want %v", eventIDs(got), eventIDs(want))
	}
	for i, ev := range got {
		w := want[i]
		if ev.Tenant != w.Tenant || ev.TransferID != w.TransferID || ev.Seq != w.Seq || ev.Type != w.Type ||
			!ev.At.Equal(w.At) || ev.From != w.From || ev.To != w.To {
			f.Errorf("event %d = %+v, want %+v", i, ev, w)
		}
		if ev.Pos <= 0 || (i > 0 && ev.Pos <= got[i-1].Pos) {
			f.Errorf("event %d has position %d after %d: positions are positive and increasing", i, ev.Pos, got[max(i-1, 0)].Pos)
		}
		if ev.Transfer == nil {
			f.Fatalf("event %d has no snapshot", i)
		}
	}
	f.equal("the snapshot of the created event", got[0].Transfer, snap1)
	if got[0].Transfer.Version != 1 || got[1].Transfer.Version != 3 {
		f.Errorf("snapshot versions %d, %d; want 1 and 3 (the saves that wrote them)", got[0].Transfer.Version, got[1].Transfer.Version)
	}
	f.equal("the snapshot of the state change", got[1].Transfer, snap3)
	f.equal("the snapshot of the answer", got[2].Transfer, snap3)
	f.equal("the snapshot of a save's one event", got[3].Transfer, snap4)
	f.equal("the snapshot of a create's first event", got[4].Transfer, snapU)
	f.equal("the snapshot of a create's second event", got[5].Transfer, snapU)
	// Snapshots are copies.
	got[1].Transfer.State = orchestrator.StateFailed
	f.equal("a snapshot read again", f.events(orchestrator.EventFilter{Tenant: "acme"})[1].Transfer, snap3)
}

// An event exists exactly when its save does: a refused Create (the call
// has an active transfer, or the id exists) and an Update that loses on
// its version write none, and what was written before stays.
func testEventsAtomic(f *fixture) {
	first := f.transfer("1000")
	Emit(first, orchestrator.EventCreated, "", "")
	f.create(first)
	written := outboxIDs(first)
	clearOutbox(first)

	dupCall := f.transfer("1000")
	Emit(dupCall, orchestrator.EventCreated, "", "")
	wantActive(f.T, "Create of a second transfer of the call", f.s.Create(f.ctx, dupCall), first.ID)
	dupID := f.transfer("2000")
	dupID.ID = first.ID
	Emit(dupID, orchestrator.EventCreated, "", "")
	wantKind(f.T, "Create with a duplicate id", f.s.Create(f.ctx, dupID), orchestrator.KindConflict)

	stale := first.Clone()
	first.State = orchestrator.StateHolding
	Emit(first, orchestrator.EventStateChanged, orchestrator.StatePending, orchestrator.StateHolding)
	f.update(first)
	written = append(written, outboxIDs(first)...)
	clearOutbox(first)
	stale.State = orchestrator.StateCancelled
	Emit(stale, orchestrator.EventStateChanged, orchestrator.StatePending, orchestrator.StateCancelled)
	Emit(stale, orchestrator.EventCancelled, "", "")
	if err := f.s.Update(f.ctx, stale); !errors.Is(err, orchestrator.ErrVersionConflict) {
		f.Fatalf("a stale Update: %v, want a version conflict", err)
	}
	unknown := f.transfer("3000")
	unknown.Version = 1
	Emit(unknown, orchestrator.EventStateChanged, orchestrator.StatePending, orchestrator.StateHolding)
	wantKind(f.T, "Update of an unknown transfer", f.s.Update(f.ctx, unknown), orchestrator.KindNotFound)

	// A save of several transfers at once (the SQLite group commit) keeps
	// each verdict to its own events.
	others := make([]*orchestrator.Transfer, 6)
	for i := range others {
		others[i] = f.transfer(fmt.Sprint("4", i))
		f.create(others[i])
	}
	done := make(chan error, len(others))
	var wantOthers []string
	for i, o := range others {
		c := o.Clone()
		if i%2 == 1 {
			c.Version = 7 // loses
		}
		Emit(c, orchestrator.EventStateChanged, orchestrator.StatePending, orchestrator.StateDialing)
		if i%2 == 0 {
			wantOthers = append(wantOthers, outboxIDs(c)...)
		}
		go func() { done <- f.s.Update(f.ctx, c) }()
	}
	for range others {
		<-done // the verdicts are checked through the events they wrote
	}
	got := eventIDs(f.events(orchestrator.EventFilter{Tenant: orchestrator.DefaultTenant}))
	if want := append(slices.Clone(written), wantOthers...); !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
		f.Errorf("Events = %v, want only %v", got, want)
	}
	if !slices.Equal(got[:len(written)], written) {
		f.Errorf("Events = %v, want %v first", got, written)
	}
}

// Events reads one tenant's stream in position order after a cursor, up
// to a limit, optionally of one transfer.
func testEventsFilter(f *fixture) {
	var all, ofA, ofX []orchestrator.Event
	a, x, b := f.transfer("1"), f.transfer("2"), f.transfer("3")
	a.Tenant, x.Tenant, b.Tenant = "acme", "acme", "globex"
	for _, t := range []*orchestrator.Transfer{a, b, x} {
		Emit(t, orchestrator.EventCreated, "", "")
		f.create(t)
	}
	for i := range 3 { // interleaved saves of the three
		for _, t := range []*orchestrator.Transfer{a, x, b} {
			clearOutbox(t)
			Emit(t, orchestrator.EventStateChanged, orchestrator.StatePending, orchestrator.StatePending)
			if i == 2 {
				Emit(t, orchestrator.EventTargetAnswered, "", "")
			}
			f.update(t)
		}
	}
	all = f.events(orchestrator.EventFilter{Tenant: "acme"})
	for _, ev := range all {
		if ev.Tenant != "acme" {
			f.Fatalf("acme's stream has %+v", ev)
		}
		switch ev.TransferID {
		case a.ID:
			ofA = append(ofA, ev)
		case x.ID:
			ofX = append(ofX, ev)
		}
	}
	if len(all) != 10 || len(ofA) != 5 || len(ofX) != 5 {
		f.Fatalf("acme's stream has %d events (%d of a, %d of x), want 10 (5, 5)", len(all), len(ofA), len(ofX))
	}
	for i, ev := range ofA {
		if ev.Seq != int64(i+1) {
			f.Errorf("a's event %d has seq %d", i, ev.Seq)
		}
	}
	if got := f.events(orchestrator.EventFilter{Tenant: "globex"}); len(got) != 5 || got[0].TransferID != b.ID {
		f.Errorf("globex's stream = %v, want b's 5 events", eventIDs(got))
	}
	if got := f.events(orchestrator.EventFilter{Tenant: "initech"}); len(got) != 0 {
		f.Errorf("an unknown tenant's stream = %v", eventIDs(got))
	}
	if got := f.events(orchestrator.EventFilter{Tenant: "globex", TransferID: a.ID}); len(got) != 0 {
		f.Errorf("another tenant's transfer through globex = %v", eventIDs(got))
	}
	cases := []struct {
		name string
		ef   orchestrator.EventFilter
		want []orchestrator.Event
	}{
		{"limit", orchestrator.EventFilter{Tenant: "acme", Limit: 3}, all[:3]},
		{"cursor", orchestrator.EventFilter{Tenant: "acme", After: all[3].Pos}, all[4:]},
		{"cursor and limit", orchestrator.EventFilter{Tenant: "acme", After: all[3].Pos, Limit: 2}, all[4:6]},
		{"cursor at the end", orchestrator.EventFilter{Tenant: "acme", After: all[9].Pos}, nil},
		{"cursor between positions", orchestrator.EventFilter{Tenant: "acme", After: all[4].Pos - 1}, all[4:]},
		{"transfer", orchestrator.EventFilter{Tenant: "acme", TransferID: x.ID}, ofX},
		{"transfer, cursor and limit", orchestrator.EventFilter{Tenant: "acme", TransferID: a.ID, After: ofA[1].Pos, Limit: 2}, ofA[2:4]},
	}
	for _, c := range cases {
		if got := f.events(c.ef); !slices.Equal(eventIDs(got), eventIDs(c.want)) {
			f.Errorf("%s: Events(%+v) = %v, want %v", c.name, c.ef, eventIDs(got), eventIDs(c.want))
		}
	}
}

// LastEventPos gives the newest event's position of one tenant, or of one
// of its transfers, 0 where there is none, another tenant's transfer
// included; it ignores After and Limit.
func testLastEventPos(f *fixture) {
	last := func(ef orchestrator.EventFilter) int64 {
		f.Helper()
		pos, err := f.s.LastEventPos(f.ctx, ef)
		if err != nil {
			f.Fatalf("LastEventPos(%+v): %v", ef, err)
		}
		return pos
	}
	if got := last(orchestrator.EventFilter{Tenant: "acme"}); got != 0 {
		f.Errorf("LastEventPos of an empty outbox = %d, want 0", got)
	}
	a, x, b := f.transfer("1"), f.transfer("2"), f.transfer("3")
	a.Tenant, x.Tenant, b.Tenant = "acme", "acme", "globex"
	for _, t := range []*orchestrator.Transfer{a, x, b} {
		Emit(t, orchestrator.EventCreated, "", "")
		f.create(t)
		clearOutbox(t)
	}
	Emit(a, orchestrator.EventStateChanged, orchestrator.StatePending, orchestrator.StateHolding)
	f.update(a)
	clearOutbox(a)
	Emit(b, orchestrator.EventStateChanged, orchestrator.StatePending, orchestrator.StateHolding)
	f.update(b) // globex's is the newest of all
	clearOutbox(b)
	acme := f.events(orchestrator.EventFilter{Tenant: "acme"})
	globex := f.events(orchestrator.EventFilter{Tenant: "globex"})
	ofX := f.events(orchestrator.EventFilter{Tenant: "acme", TransferID: x.ID})
	if len(acme) != 3 || len(globex) != 2 || len(ofX) != 1 {
		f.Fatalf("events: acme %d, globex %d, x %d; want 3, 2, 1", len(acme), len(globex), len(ofX))
	}
	cases := []struct {
		name string
		ef   orchestrator.EventFilter
		want int64
	}{
		{"tenant", orchestrator.EventFilter{Tenant: "acme"}, acme[2].Pos},
		{"tenant, After and Limit ignored", orchestrator.EventFilter{Tenant: "acme", After: acme[2].Pos, Limit: 1}, acme[2].Pos},
		{"the other tenant", orchestrator.EventFilter{Tenant: "globex"}, globex[1].Pos},
		{"a transfer", orchestrator.EventFilter{Tenant: "acme", TransferID: x.ID}, ofX[0].Pos},
		{"another tenant's transfer", orchestrator.EventFilter{Tenant: "acme", TransferID: b.ID}, 0},
		{"an unknown transfer", orchestrator.EventFilter{Tenant: "acme", TransferID: f.id()}, 0},
		{"an unknown tenant", orchestrator.EventFilter{Tenant: "initech"}, 0},
	}
	for _, c := range cases {
		if got := last(c.ef); got != c.want {
			f.Errorf("%s: LastEventPos(%+v) = %d, want %d", c.name, c.ef, got, c.want)
		}
	}
}

// Purge deletes the events of the transfers it deletes, and positions are
// not given again.
func testEventsPurge(f *fixture) {
	cutoff := t0.Add(24 * time.Hour).Truncate(time.Microsecond)
	old, kept := f.transfer("1"), f.transfer("2")
	for _, t := range []*orchestrator.Transfer{old, kept} {
		Emit(t, orchestrator.EventCreated, "", "")
		f.create(t)
		clearOutbox(t)
	}
	Emit(old, orchestrator.EventCompleted, "", "")
	f.setState(old, orchestrator.StateCompleted, cutoff.Add(-time.Hour))
	Emit(kept, orchestrator.EventFailed, "", "")
	f.end(kept, orchestrator.StateFailed, true, cutoff.Add(-time.Hour)) // owes a cleanup: kept
	before := f.events(orchestrator.EventFilter{Tenant: orchestrator.DefaultTenant})
	if n := f.purge(cutoff, 0); n != 1 {
		f.Fatalf("Purge = %d, want 1", n)
	}
	got := f.events(orchestrator.EventFilter{Tenant: orchestrator.DefaultTenant})
	for _, ev := range got {
		if ev.TransferID != kept.ID {
			f.Errorf("an event of the purged transfer survived: %+v", ev)
		}
	}
	if len(got) != 2 {
		f.Errorf("Events after Purge = %v, want kept's 2", eventIDs(got))
	}
	last := before[len(before)-1].Pos
	clearOutbox(kept)
	Emit(kept, orchestrator.EventOutcomeVerified, "", "")
	f.update(kept)
	if got := f.events(orchestrator.EventFilter{Tenant: orchestrator.DefaultTenant, After: last}); len(got) != 1 || got[0].Pos <= last {
		f.Errorf("the event after a purge = %+v, want one position after %d", got, last)
	}
}
