package storetest

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// Importer is a store that can also take transfers in bulk, as they are
// (the store benchmark's history, a history copied from elsewhere).
type Importer interface {
	orchestrator.Store
	Import(ctx context.Context, ts []*orchestrator.Transfer) error
}

// RunImport checks that Import stores transfers as they are, with their
// events, as Create and Update would have left them: they read back
// equal, list, save with a compare-and-set on their version and purge; a
// batch with a transfer that cannot be stored stores nothing.
func RunImport(t *testing.T, s Importer) {
	ctx := context.Background()
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	newTransfer := func(user string, created time.Time) *orchestrator.Transfer {
		return &orchestrator.Transfer{ID: orchestrator.NewID(created), State: orchestrator.StatePending, CreatedAt: created, UpdatedAt: created,
			Request: orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "TEST", User: user}, Target: "1010"}}
	}
	var batch []*orchestrator.Transfer
	for i := range 3 {
		tr := newTransfer(fmt.Sprint(1000+i), at.Add(time.Duration(i)*time.Second))
		tr.Tenant, tr.Version = "acme", 7
		tr.State, tr.CreatedAt, tr.UpdatedAt = orchestrator.StateCompleted, at, at
		tr.Outcome = &orchestrator.Outcome{Reason: orchestrator.ReasonTransferred, Verified: true}
		tr.EventSeq = 2
		tr.Outbox = []orchestrator.Event{
			{ID: tr.ID + "-1", Tenant: "acme", TransferID: tr.ID, Seq: 1, Type: orchestrator.EventCreated, At: at, To: orchestrator.StatePending},
			{ID: tr.ID + "-2", Tenant: "acme", TransferID: tr.ID, Seq: 2, Type: orchestrator.EventCompleted, At: at,
				From: orchestrator.StateCompleting, To: orchestrator.StateCompleted},
		}
		batch = append(batch, tr)
	}
	batch[2].State, batch[2].Outcome = orchestrator.StateConsulting, nil
	if err := s.Import(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for _, want := range batch {
		got, err := s.Get(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		w := *want
		w.Outbox = nil
		if !reflect.DeepEqual(got, &w) {
			t.Errorf("Get(%s) = %+v, want %+v", want.ID, got, &w)
		}
	}
	evs, err := s.Events(ctx, orchestrator.EventFilter{Tenant: "acme"})
	if err != nil || len(evs) != 6 || evs[5].ID != batch[2].ID+"-2" || evs[5].Transfer.Version != 7 {
		t.Errorf("Events = %d events, %v; want the 6 imported, each with its record", len(evs), err)
	}
	list, _, err := s.List(ctx, orchestrator.ListFilter{Tenant: "acme", States: []orchestrator.State{orchestrator.StateConsulting}, Limit: 10})
	if err != nil || len(list) != 1 || list[0].ID != batch[2].ID {
		t.Errorf("List(consulting) = %d, %v; want the open one", len(list), err)
	}
	live := batch[2]
	live.Outbox = nil
	if err := s.Update(ctx, live); err != nil || live.Version != 8 {
		t.Errorf("Update of an imported transfer: version %d, %v; want 8", live.Version, err)
	}
	if n, err := s.Purge(ctx, at.Add(time.Hour), 0); err != nil || n != 2 {
		t.Errorf("Purge = %d, %v; want the 2 completed", n, err)
	}

	again := newTransfer("2000", time.Now().UTC())
	again.Version = 1
	if err := s.Import(ctx, []*orchestrator.Transfer{again, batch[2]}); err == nil {
		t.Error("Import of an id that exists succeeded")
	}
	if _, err := s.Get(ctx, again.ID); err == nil {
		t.Error("a failed Import stored a transfer of its batch")
	}
}
