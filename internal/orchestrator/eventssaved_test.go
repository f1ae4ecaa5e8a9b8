package orchestrator_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
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
	cfg.EventsSaved = func(string) {
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

// lostCreateStore is a memory store that makes a create and answers it
// with an error, as a store whose connection drops between the commit
// and its answer does.
type lostCreateStore struct{ *memory.Store }

func (s lostCreateStore) Create(ctx context.Context, t *orchestrator.Transfer) error {
	if err := s.Store.Create(ctx, t); err != nil {
		return err
	}
	return errors.New("create " + t.ID + ": unexpected EOF")
}

// A create whose answer was lost, read back as saved (readBack), saved
// its events all the same: EventsSaved is called for them. It was not,
// and they waited for the transfer's next save with events, or the
// dispatcher's scan and the streams' poll.
func TestEventsSavedFollowsACreateWhoseAnswerWasLost(t *testing.T) {
	var calls atomic.Int32
	cfg := testConfig()
	cfg.EventsSaved = func(string) { calls.Add(1) }
	fake := orchestratortest.NewFake("fake")
	locate := fake.Block(orchestratortest.MethodLocate) // no save after the create
	defer locate.Release()
	e := testEngine(t, cfg, lostCreateStore{memory.New()}, fake, nil)
	if _, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{}); err != nil {
		t.Fatalf("Start: %v; the create was saved, and read back", err)
	}
	<-locate.Entered()
	if n := calls.Load(); n != 1 {
		t.Fatalf("EventsSaved called %d times after a create saved with its events, its answer lost; want 1", n)
	}
}

// orderStore logs, around an ambiguousStore, the save it makes and
// answers with an error, and each successful save after it.
type orderStore struct {
	*ambiguousStore
	note func(string)
}

func (s *orderStore) Update(ctx context.Context, t *orchestrator.Transfer) error {
	was := s.fired.Load()
	err := s.ambiguousStore.Update(ctx, t)
	switch {
	case !was && s.fired.Load():
		s.note("made, answered with an error")
	case was && err == nil:
		s.note("saved")
	}
	return err
}

// A save the store made and answered with an error saved its events: once
// the engine knows it (ownWrite, at the conflict of its next save), it
// calls EventsSaved for them. It did not, and the working record carries
// on without them, so they woke nobody unless the save after it wrote
// events of its own.
func TestEventsSavedFollowsASaveMadeDespiteItsError(t *testing.T) {
	var (
		mu  sync.Mutex
		log []string
	)
	note := func(s string) {
		mu.Lock()
		log = append(log, s)
		mu.Unlock()
	}
	cfg := testConfig()
	cfg.Owner = "a"
	cfg.EventsSaved = func(string) { note("announced") }
	store := &orderStore{ambiguousStore: &ambiguousStore{Store: memory.New(), failOn: func(tr *orchestrator.Transfer) bool {
		s := tr.Steps[len(tr.Steps)-1]
		return s.Name == orchestrator.StepDial && s.Status == orchestrator.StepStarted
	}}, note: note}
	e := testEngine(t, cfg, store, orchestratortest.NewFake("fake"), nil)
	tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tr = waitFor(t, e, tr.ID, func(*orchestrator.Transfer) bool { return false }); tr.State != orchestrator.StateCompleted {
		t.Fatalf("state %s, want completed", tr.State)
	}
	mu.Lock()
	defer mu.Unlock()
	made := slices.Index(log, "made, answered with an error")
	if made < 0 {
		t.Fatalf("the dial's intent was never saved: %q", log)
	}
	after := log[made+1:]
	if a, s := slices.Index(after, "announced"), slices.Index(after, "saved"); a < 0 || s >= 0 && s < a {
		t.Fatalf("after the save made despite its error: %q; want its events announced before the next save", after)
	}
}

// EventsSaved is told the tenant whose events each save wrote, so that
// only that tenant's event streams are woken: every call for a
// transfer of acme names acme.
func TestEventsSavedNamesTheTenant(t *testing.T) {
	var (
		mu      sync.Mutex
		tenants []string
	)
	cfg := testConfig()
	cfg.EventsSaved = func(tenant string) {
		mu.Lock()
		tenants = append(tenants, tenant)
		mu.Unlock()
	}
	e := testEngine(t, cfg, memory.New(), orchestratortest.NewFake("fake"), nil)
	ctx := orchestrator.WithTenant(context.Background(), "acme")
	tr, err := e.Start(ctx, request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if tr, err = e.Wait(wctx, tr.ID, func(*orchestrator.Transfer) bool { return false }); err != nil || !tr.State.Terminal() {
		t.Fatalf("%v, %v; want the transfer ended", tr, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(tenants) < 2 || slices.ContainsFunc(tenants, func(s string) bool { return s != "acme" }) {
		t.Fatalf("EventsSaved was told %q for a transfer of acme; want acme at each save", tenants)
	}
}
