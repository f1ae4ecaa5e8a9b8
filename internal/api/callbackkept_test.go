package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// keepingFake is a receiving fake whose notes the record keeps, as
// Bandwidth's: Notes (orchestrator.NoteKeeper) is every note heard about
// the transfer, and a note is kept (api.NoteKeeper) once the record's
// notes hold it.
type keepingFake struct{ *receivingFake }

func (f keepingFake) Notes(t *orchestrator.Transfer) string {
	var notes []string
	for _, h := range f.heard() {
		if note, ok := strings.CutPrefix(h, t.ID+" "); ok && !slices.Contains(notes, note) {
			notes = append(notes, note)
		}
	}
	slices.Sort(notes)
	return strings.Join(notes, " ")
}

func (f keepingFake) NoteKept(t *orchestrator.Transfer, note string) bool {
	return slices.Contains(strings.Fields(t.ProviderNotes), note)
}

// stoppingStore is a store whose saves a test can hold: the process
// writing them stopped before they were made.
type stoppingStore struct {
	orchestrator.Store
	mu   sync.Mutex
	held chan struct{} // nil: saves go through
}

// hold holds every save from now until the returned func is called.
func (s *stoppingStore) hold() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.held = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.held = nil
			s.mu.Unlock()
			close(ch)
		})
	}
}

func (s *stoppingStore) Update(ctx context.Context, t *orchestrator.Transfer) error {
	s.mu.Lock()
	ch := s.held
	s.mu.Unlock()
	if ch != nil {
		<-ch
	}
	return s.Store.Update(ctx, t)
}

// A callback is answered 2xx only once what it told is in the transfer's
// saved record, so that a provider whose callback was not (Bandwidth's
// fallbackUrl) sends it again. It was answered at once, the note then
// living only in the memory of the processes that heard it until the
// reconcile it woke saved it: the driving process stopping before that
// save took the note along, and the provider, told 204, never sent it
// again. Now the answer waits for the save, for a while: 503 when it did
// not come, 204 once it has.
func TestACallbackIsAnsweredOnlyOnceItsNoteIsSaved(t *testing.T) {
	f := keepingFake{&receivingFake{Fake: orchestratortest.NewFake("bandwidth")}}
	store := memory.New()
	saves := &stoppingStore{Store: store}
	reg := prometheus.NewRegistry()
	eng, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		VerifyTimeout: 200 * time.Millisecond, VisibilityWindow: 20 * time.Millisecond}, saves, []orchestrator.Provider{f}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = eng.Shutdown(ctx)
	})
	signer := mustSigner(t, newSecret)
	// Two servers of the one engine. A callback whose save comes is posted
	// to one that waits for it as long as the test waits for anything
	// (30 s): with 50 ms of real time, a reconcile that load held back
	// longer had it answered 503. The one whose save is held is posted to
	// one that waits 50 ms, which no load can turn into a 204.
	server := func(keep time.Duration, reg *prometheus.Registry) *httptest.Server {
		srv := httptest.NewServer(api.NewServer(api.Config{Idempotency: store, CallbackSigner: signer,
			Callbacks: map[string]api.CallbackReceiver{"bandwidth": f}, CallbackKeepTimeout: keep},
			eng, zerolog.Nop(), reg, reg))
		t.Cleanup(srv.Close)
		return srv
	}
	srv, brief := server(30*time.Second, reg), server(50*time.Millisecond, prometheus.NewRegistry())
	postTo := func(srv *httptest.Server, id, body string) int {
		t.Helper()
		res, err := srv.Client().Post(srv.URL+"/callbacks/bandwidth/"+id+"/"+signer.Token(api.TokenTransfer, orchestrator.DefaultTenant, id),
			"application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	post := func(id, body string) int { t.Helper(); return postTo(srv, id, body) }

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := eng.Start(ctx, orchestrator.Request{Provider: "bandwidth", Call: orchestrator.CallRef{CallID: "c-caller"},
		Target: "+15550100", Completion: orchestrator.CompletionManual}, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := eng.Wait(ctx, tr.ID, func(x *orchestrator.Transfer) bool { return x.State == orchestrator.StateConsulting }); err != nil ||
		got.State != orchestrator.StateConsulting {
		t.Fatalf("the transfer is not consulting: %v", err)
	}

	// Saved by the reconcile the callback wakes: answered once it is.
	if code := post(tr.ID, "c-target"); code != http.StatusNoContent {
		t.Fatalf("a callback whose note was saved: %d", code)
	}
	if got, err := store.Get(ctx, tr.ID); err != nil || !strings.Contains(got.ProviderNotes, "c-target") {
		t.Fatalf("the callback was answered before its note was saved: %v %+v", err, got)
	}

	// The driving process stops before the save of the reconcile the
	// callback wakes.
	release := saves.hold()
	t.Cleanup(release)
	if code := postTo(brief, tr.ID, "c-target/USER_BUSY"); code != http.StatusServiceUnavailable {
		t.Errorf("a callback whose note was not saved: %d, want 503 (sent again by the provider)", code)
	}
	if got, err := store.Get(ctx, tr.ID); err != nil || strings.Contains(got.ProviderNotes, "USER_BUSY") {
		t.Fatalf("setup: the note was saved: %v %+v", err, got)
	}
	release()
	// Sent again once the process saves again: the note is saved, and the
	// callback answered.
	if code := post(tr.ID, "c-target/USER_BUSY"); code != http.StatusNoContent {
		t.Errorf("the callback sent again: %d", code)
	}
	if got, err := store.Get(ctx, tr.ID); err != nil || !strings.Contains(got.ProviderNotes, "c-target/USER_BUSY") {
		t.Errorf("the note sent again is not saved: %v %+v", err, got)
	}

	if _, err := eng.Cancel(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := eng.Wait(ctx, tr.ID, func(*orchestrator.Transfer) bool { return false }); err != nil || !got.State.Terminal() {
		t.Fatalf("the transfer did not end: %v", err)
	}
	// An ended transfer keeps nothing more: its callbacks are answered.
	if code := post(tr.ID, "c-target/NORMAL_CLEARING"); code != http.StatusNoContent {
		t.Errorf("a callback about an ended transfer: %d", code)
	}
}
