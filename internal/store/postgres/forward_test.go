package postgres_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/postgres"
)

// forwards records the callbacks a Store's listener hears
// (ListenCallbacks), each as its four parts joined by spaces.
type forwards struct {
	mu   sync.Mutex
	got  []string
	bell chan struct{}
}

func hearForwards(s *postgres.Store) *forwards {
	f := &forwards{bell: make(chan struct{}, 1)}
	s.ListenCallbacks(func(tenant, provider, transferID, note string) {
		f.mu.Lock()
		f.got = append(f.got, strings.Join([]string{tenant, provider, transferID, note}, " "))
		f.mu.Unlock()
		select {
		case f.bell <- struct{}{}:
		default:
		}
	})
	return f
}

// await waits until n forwards were heard, and returns them.
func (f *forwards) await(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(heardLong)
	for {
		f.mu.Lock()
		got := slices.Clone(f.got)
		f.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-f.bell:
		case <-deadline:
			t.Fatalf("heard %q; want %d forwards within %s", got, n, heardLong)
		}
	}
}

// listening waits until s's listener hears its probe.
func listening(t *testing.T, s *postgres.Store) {
	t.Helper()
	deadline := time.Now().Add(heardLong)
	for !s.Listening() {
		if time.Now().After(deadline) {
			t.Fatalf("the listener does not listen within %s", heardLong)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A callback one replica forwards reaches the others' ListenCallbacks,
// whole and in order, and not its own (whose client received it); it
// wakes no event stream (an older replica's listener reads it as this
// one's events listener does: one word, ignored). b only listens for
// callbacks, which starts its listener by itself; c only for events.
func TestForwardedCallbacksReachTheOtherReplicas(t *testing.T) {
	ctx := context.Background()
	a, b, url := replicas(t)
	c, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	fa, fb := hearForwards(a), hearForwards(b)
	ha, hc := listenTo(a), listenTo(c)
	ha.started(t)
	hc.started(t)
	listening(t, b)
	n := hc.count()

	id := orchestrator.NewID(time.Now())
	for _, note := range []string{"c-1/USER_BUSY", "c-2"} {
		if err := a.ForwardCallback(ctx, "acme", "bandwidth", id, note); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"acme bandwidth " + id + " c-1/USER_BUSY", "acme bandwidth " + id + " c-2"}
	if got := fb.await(t, 2); !slices.Equal(got, want) {
		t.Errorf("b heard %q, want %q", got, want)
	}
	// Fences: a save of another replica, committed after the forwards, is
	// heard after anything the forwards would have made a listener hear.
	ids := batchIDs{at: time.Now()}
	if err := a.Create(ctx, ofTenant(ids.transfer("660"), "initech")); err != nil {
		t.Fatal(err)
	}
	if got := hc.after(t, n, "initech"); !slices.Equal(got, []string{"initech"}) {
		t.Errorf("c's events listener heard %q after the forwards, want only a's save of initech", got)
	}
	if err := b.Create(ctx, ofTenant(ids.transfer("661"), "globex")); err != nil {
		t.Fatal(err)
	}
	ha.after(t, 0, "globex")
	if got := fa.await(t, 0); len(got) != 0 {
		t.Errorf("a heard its own forwards: %q", got)
	}
}

// A forward that could not be parsed whole on the other side is refused
// before it is sent.
func TestForwardRefusesWhatItCannotCarry(t *testing.T) {
	s := open(t)
	id := orchestrator.NewID(time.Now())
	for _, c := range []struct{ tenant, provider, transferID, note string }{
		{"", "bandwidth", id, "c-1"},
		{"acme/x", "bandwidth", id, "c-1"},
		{"acme", "", id, "c-1"},
		{"acme", "band/width", id, "c-1"},
		{"acme", "bandwidth", "", "c-1"},
		{"acme", "bandwidth", id, ""},
		{"acme", "bandwidth", id, "c-1 USER_BUSY"},
		{"acme", "bandwidth", id, strings.Repeat("x", 8000)},
	} {
		if err := s.ForwardCallback(context.Background(), c.tenant, c.provider, c.transferID, c.note); err == nil {
			t.Errorf("forwarded %+v", c)
		}
	}
}

// A replica's word that it saved a transfer's notes (AnnounceNotesSaved)
// reaches the other replicas' ListenNotesSaved, and not its own; their
// callbacks listeners and event streams hear nothing of it (an older
// replica's listener reads one word, and ignores it).
func TestNotesSavedReachTheOtherReplicas(t *testing.T) {
	ctx := context.Background()
	a, b, _ := replicas(t)
	var mu sync.Mutex
	heard := map[*postgres.Store][]string{}
	bell := make(chan struct{}, 1)
	for _, s := range []*postgres.Store{a, b} {
		s.ListenNotesSaved(func(id string) {
			mu.Lock()
			heard[s] = append(heard[s], id)
			mu.Unlock()
			select {
			case bell <- struct{}{}:
			default:
			}
		})
	}
	fb := hearForwards(b)
	hb := listenTo(b)
	hb.started(t)
	listening(t, a)
	listening(t, b)
	n := hb.count()

	id := orchestrator.NewID(time.Now())
	if err := a.AnnounceNotesSaved(ctx, id); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(heardLong)
	for {
		mu.Lock()
		got := slices.Clone(heard[b])
		mu.Unlock()
		if len(got) > 0 {
			if !slices.Equal(got, []string{id}) {
				t.Errorf("b heard notes saved of %q, want %q", got, id)
			}
			break
		}
		select {
		case <-bell:
		case <-deadline:
			t.Fatalf("b heard no word of notes saved within %s", heardLong)
		}
	}
	// Fence: a save of a's, committed after the word, is heard after it.
	ids := batchIDs{at: time.Now()}
	if err := a.Create(ctx, ofTenant(ids.transfer("670"), "initech")); err != nil {
		t.Fatal(err)
	}
	if got := hb.after(t, n, "initech"); !slices.Equal(got, []string{"initech"}) {
		t.Errorf("b's events listener heard %q after the word, want only a's save of initech", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(heard[a]) != 0 {
		t.Errorf("a heard its own word: %q", heard[a])
	}
	if got := fb.await(t, 0); len(got) != 0 {
		t.Errorf("b's callbacks listener heard %q", got)
	}
	if err := a.AnnounceNotesSaved(ctx, "a b"); err == nil {
		t.Error("a word of an id with a space was sent")
	}
}

// A forward whose note holds the mark of a word of saved notes is heard
// as the forward it is, and not as a word: what comes before that mark in
// a forward's payload holds its slashes (ForwardCallback takes any
// one-word note; Bandwidth's never hold the mark, another provider's may).
// Read as a word, the forward was lost to the replica driving its
// transfer. A's word sent after it is the fence: heard, alone.
func TestAForwardNamingTheNotesMarkIsHeardAsAForward(t *testing.T) {
	ctx := context.Background()
	a, b, _ := replicas(t)
	var mu sync.Mutex
	var words []string
	bell := make(chan struct{}, 1)
	b.ListenNotesSaved(func(id string) {
		mu.Lock()
		words = append(words, id)
		mu.Unlock()
		select {
		case bell <- struct{}{}:
		default:
		}
	})
	fb := hearForwards(b)
	listening(t, b)

	id, named, fence := orchestrator.NewID(time.Now()), orchestrator.NewID(time.Now()), orchestrator.NewID(time.Now())
	if err := a.ForwardCallback(ctx, "acme", "bandwidth", id, "c-1:notes:"+named); err != nil {
		t.Fatal(err)
	}
	if err := a.AnnounceNotesSaved(ctx, fence); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(heardLong)
	for {
		mu.Lock()
		got := slices.Clone(words)
		mu.Unlock()
		if len(got) > 0 {
			if !slices.Equal(got, []string{fence}) {
				t.Errorf("b heard words of saved notes %q, want only the fence %q", got, fence)
			}
			break
		}
		select {
		case <-bell:
		case <-deadline:
			t.Fatalf("b heard no word of saved notes within %s", heardLong)
		}
	}
	if got, want := fb.await(t, 1), []string{"acme bandwidth " + id + " c-1:notes:" + named}; !slices.Equal(got, want) {
		t.Errorf("b heard the forwards %q, want %q", got, want)
	}
}
