package orchestrator_test

import (
	"context"
	"errors"
	"slices"
	"strings"
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

// restartingStore is a store whose server ends its connections while a
// replica opens (PostgreSQL's "terminating connection due to
// administrator command"): each of Open's steps fails the first time,
// the claim of the replica's own transfers after it committed, as a
// commit whose answer was lost.
type restartingStore struct {
	*memory.Store
	beats, claims, settles atomic.Int32
}

var errTerminated = errors.New("FATAL: terminating connection due to administrator command (SQLSTATE 57P01)")

func (s *restartingStore) Heartbeat(ctx context.Context, owner, token string, now time.Time, ttl time.Duration, take bool) (bool, error) {
	if s.beats.Add(1) == 1 {
		return false, errTerminated
	}
	return s.Store.Heartbeat(ctx, owner, token, now, ttl, take)
}

func (s *restartingStore) Claim(ctx context.Context, owner, token string, now time.Time, own bool, limit int) ([]*orchestrator.Transfer, error) {
	ts, err := s.Store.Claim(ctx, owner, token, now, own, limit)
	if own && s.claims.Add(1) == 1 && err == nil {
		return nil, errTerminated
	}
	return ts, err
}

func (s *restartingStore) SettleIdempotency(ctx context.Context, owner string, now, ownBefore time.Time) (int, error) {
	if s.settles.Add(1) == 1 {
		return 0, errTerminated
	}
	return s.Store.SettleIdempotency(ctx, owner, now, ownBefore)
}

// A replica restarted while its database drops its connections opens all
// the same: each of Open's steps is tried again, the transfer its
// previous life left with the caller on hold is resumed once and ends
// with the caller either with the target or back with the agent. A CI
// storm's replica exited here instead ("resuming unfinished transfers:
// ... SQLSTATE 57P01"), and its transfers waited for it to be started
// again.
func TestOpenTriesAgainWhileTheStoreFails(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	fake := orchestratortest.NewFake("fake")
	release := make(chan struct{})
	hit := make(chan struct{})
	var once sync.Once
	first := replica(t, "x", mem, fake, func(_ *orchestrator.Transfer, p string) {
		if p == "hold:result" {
			once.Do(func() { close(hit) })
			<-release // the process is "dead" from here on
		}
	})
	if err := first.Open(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(release) })
	tr, err := first.Start(ctx, request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-hit

	store := &restartingStore{Store: mem}
	second := replica(t, "x", store, fake, nil)
	if err := second.Open(ctx); err != nil {
		t.Fatalf("Open gave up at the store's first failure: %v", err)
	}
	if b, c, s := store.beats.Load(), store.claims.Load(), store.settles.Load(); b < 2 || c < 2 || s < 2 {
		t.Fatalf("heartbeats %d, claims of its own %d, settlings %d: each step should have been tried again", b, c, s)
	}
	if running := second.Running(); !slices.Contains(running, tr.ID) {
		t.Fatalf("the restarted replica did not resume %s (running %q)", tr.ID, running)
	}
	tr = waitFor(t, second, tr.ID, func(*orchestrator.Transfer) bool { return false })
	c, _ := fake.State(tr.ID)
	switch {
	case tr.State == orchestrator.StateCompleted && c.Caller == orchestrator.CallerTransferred:
	case tr.State == orchestrator.StateFailed && tr.Outcome.CallerRestored && c.Caller == orchestrator.CallerConnected:
	default:
		t.Fatalf("ended %s (%+v), the provider shows the caller %v", tr.State, tr.Outcome, c.Caller)
	}
	if n := countActions(fake.ActionsFor(tr.ID), orchestratortest.MethodDial); n != 1 {
		t.Errorf("the consult was dialled %d times, want once", n)
	}
}

// downStore is a store that cannot be reached at all.
type downStore struct {
	*memory.Store
	beats atomic.Int32
}

func (s *downStore) Heartbeat(context.Context, string, string, time.Time, time.Duration, bool) (bool, error) {
	s.beats.Add(1)
	return false, errTerminated
}

// A store that keeps failing ends Open once OpenPatience has passed, or
// at once when its context ends, with the store's error and what Open was
// doing.
func TestOpenGivesUpAfterItsPatience(t *testing.T) {
	open := func(t *testing.T, ctx context.Context, patience time.Duration) (*downStore, error) {
		store := &downStore{Store: memory.New()}
		e, err := orchestrator.New(orchestrator.Config{
			Owner: "x", OpenPatience: patience, PollInterval: time.Millisecond, PollMaxInterval: 4 * time.Millisecond,
		}, store, []orchestrator.Provider{orchestratortest.NewFake("fake")}, zerolog.Nop(), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		return store, e.Open(ctx)
	}
	t.Run("patience", func(t *testing.T) {
		store, err := open(t, context.Background(), 50*time.Millisecond)
		if !errors.Is(err, errTerminated) || !strings.Contains(err.Error(), "heartbeat") {
			t.Fatalf("Open returned %v, want the store's error naming the heartbeat", err)
		}
		if n := store.beats.Load(); n < 2 {
			t.Errorf("the heartbeat was tried %d times, want more than once", n)
		}
	})
	t.Run("context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		store, err := open(t, ctx, time.Hour)
		if !errors.Is(err, errTerminated) {
			t.Fatalf("Open returned %v, want the store's error", err)
		}
		if n := store.beats.Load(); n != 1 {
			t.Errorf("the heartbeat was tried %d times with its context ended, want once", n)
		}
	})
}
