package orchestrator_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/memory"
)

// TestEventsSavedFollowsEverySaveWithEvents: Config.EventsSaved (the
// webhook dispatcher's Nudge in cmd/transferd) is called once the events
// of a save are in the store, for the create and for every save after
// it that wrote events, so that the outbox is read at once rather than
// at the dispatcher's next scan (up to 200 ms later: a webhook came
// 3 to 202 ms after its event, where the dispatcher's comments and the
// README promised a read within 10 ms). Each call finds events stored
// that the call before did not, and the last finds them all.
func TestEventsSavedFollowsEverySaveWithEvents(t *testing.T) {
	var (
		store atomic.Pointer[memory.Store]
		mu    sync.Mutex
		seen  []int // events stored at each call
	)
	stored := func() int {
		evs, err := store.Load().Events(context.Background(), orchestrator.EventFilter{Tenant: orchestrator.DefaultTenant})
		if err != nil {
			t.Error(err)
		}
		return len(evs)
	}
	cfg := testConfig()
	cfg.EventsSaved = func() {
		n := stored()
		mu.Lock()
		seen = append(seen, n)
		mu.Unlock()
	}
	h := newHarness(t, cfg)
	store.Store(h.store.Store)
	id := h.start(t, request("fake", "1000"))
	if tr := h.done(t, id); tr.State != orchestrator.StateCompleted {
		t.Fatalf("state %s, want completed", tr.State)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.stopped = true
	if err := h.e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	total := stored()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) < 2 {
		t.Fatalf("EventsSaved called %d times for a transfer with %d events; want at its create and at its later saves", len(seen), total)
	}
	prev := 0
	for i, n := range seen {
		if n <= prev {
			t.Errorf("call %d found %d events stored, the call before %d: a call must follow a save that wrote events", i+1, n, prev)
		}
		prev = n
	}
	if prev != total {
		t.Errorf("the last call found %d events stored, of %d: the saves of the others woke nobody", prev, total)
	}
}
