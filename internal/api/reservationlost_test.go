package api_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// lateStore's first Create waits at the store, as a save queued behind a
// stuck batch does, until the test lets it through.
type lateStore struct {
	*memory.Store
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (s *lateStore) Create(ctx context.Context, t *orchestrator.Transfer) error {
	first := false
	s.once.Do(func() { first = true })
	if first {
		close(s.entered)
		<-s.release
	}
	return s.Store.Create(ctx, t)
}

// Left open by the twenty-first pass: the Idempotency-Key reservation
// counted on a create reaching its save in time, but a save the store has
// taken is waited for to its verdict, whatever the deadline. Here a
// create's save lands after its reservation was settled; meanwhile the
// client retried with the same key, the retry started its own transfer,
// and that transfer ended. The late save started a second transfer of the
// same call for one key, and its response overwrote the key's, so that
// the key replayed a transfer the client never heard of. Now a create is
// saved only while its reservation is still its own: the late one saves
// nothing and answers 503, and the key goes on replaying the retry's
// transfer.
func TestCreateThatOutlivedItsReservationSavesNothing(t *testing.T) {
	store := &lateStore{Store: memory.New(), entered: make(chan struct{}), release: make(chan struct{})}
	inst := newInstance(t, store, orchestratortest.NewFake("netsapiens"))
	url := inst.srv.URL + "/v1/transfers"
	ctx := context.Background()

	late := make(chan reply, 1)
	go func() { late <- post(t, url, "key-late", manualBody) }()
	<-store.entered

	// ReservationTimeout later, its replica settles the reservation: the
	// create is unlinked, so the reservation is deleted.
	if n, err := store.SettleIdempotency(ctx, "", time.Now(), time.Now().Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("SettleIdempotency = %d, %v; want the late create's reservation settled", n, err)
	}
	// The client's retry is served afresh; its transfer runs and ends.
	retry := post(t, url, "key-late", manualBody)
	if retry.status != http.StatusAccepted || retry.replayed != "" {
		t.Fatalf("the retry: %d (replayed %q) %s; want 202 served afresh", retry.status, retry.replayed, retry.body)
	}
	if c := post(t, inst.srv.URL+retry.location+"/cancel", "", "", "Prefer", "wait=5"); c.status != http.StatusOK {
		t.Fatalf("cancel of the retry's transfer: %d %s", c.status, c.body)
	}

	close(store.release)
	r := <-late
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "reservation was settled before its transfer could be saved") {
		t.Errorf("the late create: %d %s; want 503 saying it outlived its reservation", r.status, r.body)
	}
	ts, _, err := inst.eng.List(ctx, orchestrator.ListFilter{})
	if err != nil || len(ts) != 1 {
		t.Errorf("transfers %d (%v); want only the retry's", len(ts), err)
	}
	if again := post(t, url, "key-late", manualBody); again.replayed != "true" || again.location != retry.location {
		t.Errorf("the key now: %d (replayed %q) at %q; want the retry's response replayed, at %q",
			again.status, again.replayed, again.location, retry.location)
	}
}
