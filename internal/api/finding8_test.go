package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// Finding 8 of the convergence issue: creation is atomic from the
// client's point of view, and an Idempotency-Key never stays "in
// progress" after the request that reserved it died.

// slowCreate holds Create until released, so that a test can make the
// client give up while the transfer is being saved.
type slowCreate struct {
	*memory.Store
	entered, release chan struct{}
}

func (s *slowCreate) Create(ctx context.Context, t *orchestrator.Transfer) error {
	close(s.entered)
	<-s.release
	return s.Store.Create(ctx, t)
}

func TestFinding8CreateCompletesAfterTheClientLeft(t *testing.T) {
	st := &slowCreate{Store: memory.New(), entered: make(chan struct{}), release: make(chan struct{})}
	inst := newInstance(t, st, orchestratortest.NewFake("netsapiens").SetTarget(orchestratortest.TargetRings))

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, inst.srv.URL+"/v1/transfers", strings.NewReader(manualBody))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "gone-1")
	errc := make(chan error, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
			err = errors.New("the request was answered before the client left")
		}
		errc <- err
	}()
	<-st.entered
	cancel() // the client goes away while the transfer is saved
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v", err)
	}
	close(st.release)

	// The retry gets the transfer that was created, not a 500, not a
	// second transfer, and not a reservation left "in progress".
	var r reply
	deadline := time.Now().Add(10 * time.Second)
	for {
		r = post(t, inst.srv.URL+"/v1/transfers", "gone-1", manualBody)
		if r.status != http.StatusConflict || time.Now().After(deadline) {
			break // 409 only while the first request still completes
		}
	}
	if r.status != http.StatusAccepted || r.replayed != "true" || r.location == "" {
		t.Fatalf("retry after the client left: %+v", r)
	}
	ts, _, err := st.List(context.Background(), orchestrator.ListFilter{Tenant: orchestrator.DefaultTenant})
	if err != nil || len(ts) != 1 || r.location != "/v1/transfers/"+ts[0].ID {
		t.Fatalf("stored %d transfers (%v), retry names %s", len(ts), err, r.location)
	}
}

// A reservation whose process was SIGKILLed mid-request is settled when
// the replica starts again: replayed when its transfer was saved,
// released when it was not. Nothing waits for it.
func TestFinding8ReservationOfADeadProcessIsSettledOnResume(t *testing.T) {
	store := memory.New()
	ctx := context.Background()
	const scope = orchestrator.DefaultTenant + " POST /v1/transfers"
	const hash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" // sha256 of the empty body the replay sends
	for _, key := range []string{"saved", "not-saved"} {
		if _, ok, err := store.ReserveIdempotency(ctx, orchestrator.IdempotencyRecord{
			Scope: scope, Key: key, RequestHash: hash, CreatedAt: time.Now(), Owner: "local"}); err != nil || !ok {
			t.Fatalf("reserve %s: %v %v", key, ok, err)
		}
	}
	// The dead process saved the transfer of "saved" (linked in the same
	// write) and died before answering.
	now := time.Now().UTC()
	tr := &orchestrator.Transfer{ID: orchestrator.NewID(now), Tenant: orchestrator.DefaultTenant, State: orchestrator.StatePending,
		Request:          orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "TEST", User: "1000"}, Target: "1010"},
		IdempotencyScope: scope, IdempotencyKey: "saved", Owner: "local", CreatedAt: now, UpdatedAt: now}
	if err := store.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}

	inst := newInstance(t, store, orchestratortest.NewFake("netsapiens"))
	if err := inst.eng.Open(ctx); err != nil { // the restarted process, same name
		t.Fatal(err)
	}
	rec, fresh, err := store.ReserveIdempotency(ctx, orchestrator.IdempotencyRecord{Scope: scope, Key: "saved", RequestHash: hash})
	if err != nil || fresh || rec.Response == nil || rec.Response.TransferID != tr.ID {
		t.Fatalf("saved reservation after resume: fresh %v %+v %v", fresh, rec.Response, err)
	}
	rec, fresh, err = store.ReserveIdempotency(ctx, orchestrator.IdempotencyRecord{Scope: scope, Key: "not-saved", RequestHash: hash})
	if err != nil || !fresh {
		t.Fatalf("the reservation of a create never saved was not released: %+v %v", rec, err)
	}
	var got struct{ ID string }
	r := post(t, inst.srv.URL+"/v1/transfers", "saved", "")
	if err := json.Unmarshal([]byte(r.body), &got); err != nil || r.status != http.StatusAccepted || got.ID != tr.ID {
		t.Fatalf("replay of the settled key: %+v (%v)", r, err)
	}
}
