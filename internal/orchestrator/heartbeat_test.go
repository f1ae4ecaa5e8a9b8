package orchestrator_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
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

// replica builds an engine named owner on a shared store and provider.
func replica(t *testing.T, owner string, store orchestrator.Store, f *orchestratortest.Fake, crash func(*orchestrator.Transfer, string)) *orchestrator.Engine {
	t.Helper()
	// Long enough that a heartbeat late by a scheduling hiccup (-race, a
	// busy machine) ends no lease: steps would pause, or those in flight
	// end (see TestLeaseRunningOutCancelsTheStepInFlight).
	return replicaWith(t, orchestrator.Config{Owner: owner, LeaseTTL: 2 * time.Second, CrashPoint: crash}, store, f)
}

// replicaWith builds an engine of cfg on a shared store and provider,
// with the replica tests' fast polling and short patience where cfg sets
// none, and shuts it down when the test ends.
func replicaWith(t *testing.T, cfg orchestrator.Config, store orchestrator.Store, f *orchestratortest.Fake) *orchestrator.Engine {
	t.Helper()
	cfg.PollInterval = cmp.Or(cfg.PollInterval, time.Millisecond)
	cfg.PollMaxInterval = cmp.Or(cfg.PollMaxInterval, 20*time.Millisecond)
	cfg.VerifyTimeout = cmp.Or(cfg.VerifyTimeout, 200*time.Millisecond)
	cfg.VisibilityWindow = cmp.Or(cfg.VisibilityWindow, 50*time.Millisecond)
	// A process that died mid-step may have sent its request until
	// StepTimeout after the step began: recovery waits that long.
	cfg.StepTimeout = cmp.Or(cfg.StepTimeout, time.Second)
	e, err := orchestrator.New(cfg, store, []orchestrator.Provider{f}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
	})
	return e
}

func waitFor(t *testing.T, e *orchestrator.Engine, id string, cond func(*orchestrator.Transfer) bool) *orchestrator.Transfer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr, err := e.Wait(ctx, id, cond)
	if err != nil {
		t.Fatal(err)
	}
	if !cond(tr) && !tr.State.Terminal() {
		t.Fatalf("condition never held; transfer is %s", tr.State)
	}
	return tr
}

// freeze simulates a replica that stops (a killed pod): once armed, its
// worker blocks at the next step boundary until released.
type freeze struct {
	mu      sync.Mutex
	armed   bool
	release chan struct{}
}

func (f *freeze) point(_ *orchestrator.Transfer, _ string) {
	f.mu.Lock()
	armed := f.armed
	f.mu.Unlock()
	if armed {
		<-f.release
	}
}

func (f *freeze) arm() {
	f.mu.Lock()
	f.armed = true
	f.mu.Unlock()
}

// pauseProvider makes every call to f wait until the returned func runs.
func pauseProvider(f *orchestratortest.Fake) (release func()) {
	var gates []*orchestratortest.Gate
	for _, m := range []string{orchestratortest.MethodLocate, orchestratortest.MethodHold, orchestratortest.MethodUnhold,
		orchestratortest.MethodDial, orchestratortest.MethodObserve, orchestratortest.MethodComplete, orchestratortest.MethodHangupConsult} {
		gates = append(gates, f.Block(m))
	}
	return func() {
		for _, g := range gates {
			g.Release()
		}
	}
}

// A replica whose heartbeat expired has its open transfers claimed by
// another, which then also receives the signals clients send through any
// replica.
func TestExpiredHeartbeatTransfersAreClaimedAndGetSignals(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	fake := orchestratortest.NewFake("fake")
	dead := &freeze{release: make(chan struct{})}
	// a is never Opened: its heartbeat is written below by hand, so the
	// test decides when it expires.
	a := replica(t, "a", store, fake, dead.point)
	b := replica(t, "b", store, fake, nil)
	// Cleanups run last-registered first: release the frozen worker
	// before the engines shut down.
	t.Cleanup(func() { close(dead.release) })
	if _, err := store.Heartbeat(ctx, "a", "", time.Now(), time.Hour, true); err != nil {
		t.Fatal(err)
	}

	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	tr, err := a.Start(ctx, r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, a, tr.ID, answered)
	dead.arm()
	if err := b.Open(ctx); err != nil {
		t.Fatal(err)
	}
	// a's heartbeat is live: b's Open left its transfer alone.
	if got, err := store.Get(ctx, tr.ID); err != nil || got.Owner != "a" {
		t.Fatalf("owner %q (%v) while a's heartbeat is live, want a", got.Owner, err)
	}
	if _, err := store.Heartbeat(ctx, "a", "", time.Now().Add(-time.Hour), time.Nanosecond, true); err != nil {
		t.Fatal(err)
	}
	tr = waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "b" })
	if tr.State != orchestrator.StateConsulting {
		t.Fatalf("after the claim the transfer is %s", tr.State)
	}
	// The client's complete lands on the dead replica's API; the owner
	// acts on it.
	if _, err := a.Complete(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	tr = waitFor(t, b, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if tr.State != orchestrator.StateCompleted || tr.Outcome.Reason != orchestrator.ReasonTransferred || tr.Owner != "b" {
		t.Fatalf("state %s outcome %+v owner %s", tr.State, tr.Outcome, tr.Owner)
	}
	if c, _ := fake.State(tr.ID); c.Caller != orchestrator.CallerTransferred {
		t.Errorf("provider shows caller %v", c.Caller)
	}
	if n := countActions(fake.ActionsFor(tr.ID), orchestratortest.MethodComplete); n != 1 {
		t.Errorf("%d joins, want 1", n)
	}
	if !hasStep(tr, orchestrator.StepReconcile) {
		t.Error("the new owner did not record that it resumed the transfer")
	}
}

// A replica restarted under the same name reclaims its open transfers at
// once, although its heartbeat is still live; whatever step boundary the
// old process died at, the transfer ends with the caller either with the
// target or back with the agent, and the consult is dialled at most once.
func TestRestartedReplicaReclaimsItsTransfers(t *testing.T) {
	for _, point := range []string{"hold:intent", "hold:effect", "hold:result", "dial:intent", "dial:effect", "dial:result",
		"state:consulting", "transfer:intent", "transfer:effect", "transfer:result"} {
		t.Run(point, func(t *testing.T) {
			store := memory.New()
			fake := orchestratortest.NewFake("fake")
			release := make(chan struct{})
			hit := make(chan struct{})
			var once sync.Once
			crash := func(_ *orchestrator.Transfer, p string) {
				if p == point {
					once.Do(func() { close(hit) })
					<-release // the process is "dead" from here on
				}
			}
			first := replica(t, "x", store, fake, crash)
			if err := first.Open(context.Background()); err != nil { // a live heartbeat
				t.Fatal(err)
			}
			t.Cleanup(func() { close(release) }) // before first shuts down
			tr, err := first.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			<-hit
			// Past transfer:effect a resumed transfer may end within
			// milliseconds of Open (one reading shows the join): hold every
			// provider call until it has been counted.
			resume := pauseProvider(fake)
			second := replica(t, "x", store, fake, nil)
			if err := second.Open(context.Background()); err != nil {
				t.Fatal(err)
			}
			running := second.Running()
			resume()
			if !slices.Contains(running, tr.ID) {
				t.Fatalf("the restarted replica did not reclaim %s at once (running %q)", tr.ID, running)
			}
			tr = waitFor(t, second, tr.ID, func(*orchestrator.Transfer) bool { return false })
			c, _ := fake.State(tr.ID)
			switch tr.State {
			case orchestrator.StateCompleted:
				if c.Caller != orchestrator.CallerTransferred {
					t.Fatalf("completed but the provider shows caller %v", c.Caller)
				}
			case orchestrator.StateFailed:
				if !tr.Outcome.CallerRestored || c.Caller != orchestrator.CallerConnected {
					t.Fatalf("failed without restoring the caller: %+v, provider %v", tr.Outcome, c.Caller)
				}
			default:
				t.Fatalf("ended %s", tr.State)
			}
			// A dial or join sent by the dead process is never sent again.
			for _, m := range []string{orchestratortest.MethodDial, orchestratortest.MethodComplete} {
				if got := countActions(fake.ActionsFor(tr.ID), m); got > 1 {
					t.Errorf("%s sent %d times", m, got)
				}
			}
		})
	}
}

// A transfer claimed from a replica in the middle of a step is driven by
// its new owner only: the old owner's next save fails, and it drops the
// transfer without another provider call.
func TestClaimedTransferOldOwnerStopsOnNextSave(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	fake := orchestratortest.NewFake("fake")
	release, hit := make(chan struct{}), make(chan struct{})
	var once sync.Once
	a := replica(t, "a", store, fake, func(_ *orchestrator.Transfer, p string) {
		if p == "hold:effect" {
			once.Do(func() { close(hit) })
			<-release // the hold was made; its result is not saved yet
		}
	})
	b := replica(t, "b", store, fake, nil)
	tr, err := a.Start(ctx, request("fake", "1000"), orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-hit
	// a never wrote a heartbeat: b claims its transfer on Open.
	if err := b.Open(ctx); err != nil {
		t.Fatal(err)
	}
	tr = waitFor(t, b, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if tr.State != orchestrator.StateCompleted || tr.Owner != "b" {
		t.Fatalf("state %s owner %s, want completed by b", tr.State, tr.Owner)
	}
	before := fake.ActionsFor(tr.ID)
	close(release)
	// Shutdown waits for a's unfinished entry: it returns once a's save
	// failed and a dropped the transfer.
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown of the old owner: %v", err)
	}
	if after := fake.ActionsFor(tr.ID); !slices.Equal(after, before) {
		t.Errorf("the old owner acted after losing the transfer: %q, then %q", before, after)
	}
	if got, _ := store.Get(ctx, tr.ID); got.State != orchestrator.StateCompleted || got.Version != tr.Version {
		t.Errorf("stored %s v%d, want completed v%d: the old owner overwrote it", got.State, got.Version, tr.Version)
	}
	want := []string{locate, hold, hold, dial, complete} // the hold is repeated: it may not have been applied
	if got := fake.ActionsFor(tr.ID); !slices.Equal(got, want) {
		t.Errorf("actions %q, want %q", got, want)
	}
}

func countActions(actions []string, name string) int {
	n := 0
	for _, a := range actions {
		if a == name {
			n++
		}
	}
	return n
}

func hasStep(tr *orchestrator.Transfer, name string) bool {
	return slices.ContainsFunc(tr.Steps, func(s orchestrator.Step) bool { return s.Name == name })
}

// A replica restarted with more open transfers of its own than one claim
// batch takes them all back once: claiming its own again (they stay
// claimable by it) would bump the versions of those already adopted and
// make each lose the one it had just resumed, over and over (the webhook
// storm's restart with a hundred transfers open hung in Open that way).
func TestRestartWithManyOwnTransfersResumesEachOnce(t *testing.T) {
	store := memory.New()
	ctx := context.Background()
	const n = 250 // more than two claim batches
	now := time.Now().UTC()
	ids := make([]string, n)
	for i := range n {
		tr := &orchestrator.Transfer{ID: orchestrator.NewID(now), State: orchestrator.StatePending, Owner: "x",
			Request:   request("fake", fmt.Sprint(3000+i)),
			CreatedAt: now, UpdatedAt: now}
		// Saved as the engine's Validate leaves a request.
		tr.Request.ConsultTimeout, tr.Request.Completion, tr.Request.Mode = 30*time.Second, orchestrator.CompletionAuto, orchestrator.ModeAttended
		if err := store.Create(ctx, tr); err != nil {
			t.Fatal(err)
		}
		ids[i] = tr.ID
	}
	fake := orchestratortest.NewFake("fake")
	gate := fake.Block(orchestratortest.MethodLocate) // nothing ends before it is counted
	second := replica(t, "x", store, fake, nil)
	if err := second.Open(ctx); err != nil {
		t.Fatal(err)
	}
	got := len(second.Running())
	gate.Release()
	if got != n {
		t.Fatalf("resumed %d of %d transfers", got, n)
	}
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		tr, err := second.Wait(ctx, id, func(*orchestrator.Transfer) bool { return false })
		cancel()
		if err != nil || tr.State != orchestrator.StateCompleted {
			var steps []string
			for _, s := range tr.Steps {
				steps = append(steps, s.StartedAt.Format("05.000")+" "+s.Name+" "+string(s.Status)+" "+s.Detail)
			}
			c, _ := fake.State(id)
			t.Fatalf("%s ended %s (%+v, %v): steps %q; provider %+v; calls %q", id, tr.State, tr.Outcome, err, steps, c, fake.CallsFor(id))
		}
	}
	if calls := countActions(fake.Actions(), orchestratortest.MethodLocate); calls != n {
		t.Errorf("%d locates for %d transfers: each resumed exactly once", calls, n)
	}
}

// ambiguousStore writes its first Update that matches failOn and answers
// it with an error, as a store answers a commit whose answer was lost
// (the PostgreSQL store gives every save of a batch the error of a
// failed COMMIT round trip, which may have committed). The first Get
// after it fails too when getFails is set.
type ambiguousStore struct {
	*memory.Store
	failOn   func(*orchestrator.Transfer) bool
	getFails bool
	fired    atomic.Bool
	gets     atomic.Int32 // Gets answered with an error
}

func (s *ambiguousStore) Update(ctx context.Context, t *orchestrator.Transfer) error {
	if !s.fired.Load() && s.failOn(t) {
		v := t.Version
		if err := s.Store.Update(ctx, t); err != nil {
			return err
		}
		s.fired.Store(true)
		t.Version = v // a store sets the version only on success
		return errors.New("update " + t.ID + ": unexpected EOF")
	}
	return s.Store.Update(ctx, t)
}

func (s *ambiguousStore) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	if s.getFails && s.fired.Load() && s.gets.CompareAndSwap(0, 1) {
		return nil, errors.New("get " + id + ": connection reset")
	}
	return s.Store.Get(ctx, id)
}

// A save the store answered with an error but made (the dial's intent
// here) leaves the stored record one version past the working one. The
// replica's next save conflicts with its own write: it must carry on from
// it, not take the conflict for another replica's claim and abandon the
// transfer with the caller on hold (no other replica claims a transfer
// whose owner is alive). A failed read while telling the two apart is not
// taken as a loss either: the next save asks again. The events the
// ambiguous write recorded are not recorded twice.
func TestSaveMadeDespiteItsErrorIsCarriedOn(t *testing.T) {
	for _, getFails := range []bool{false, true} {
		t.Run(fmt.Sprintf("read fails once=%t", getFails), func(t *testing.T) {
			ctx := context.Background()
			store := &ambiguousStore{Store: memory.New(), getFails: getFails, failOn: func(tr *orchestrator.Transfer) bool {
				s := tr.Steps[len(tr.Steps)-1]
				return s.Name == orchestrator.StepDial && s.Status == orchestrator.StepStarted
			}}
			fake := orchestratortest.NewFake("fake")
			e := replica(t, "a", store, fake, nil)
			tr, err := e.Start(ctx, request("fake", "1000"), orchestrator.StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			tr = waitFor(t, e, tr.ID, func(*orchestrator.Transfer) bool { return false })
			if !store.fired.Load() {
				t.Fatal("the dial's intent was never saved")
			}
			if getFails && store.gets.Load() != 1 {
				t.Fatal("the read after the conflict never failed")
			}
			if c, _ := fake.State(tr.ID); tr.State != orchestrator.StateCompleted || c.Caller != orchestrator.CallerTransferred {
				t.Fatalf("transfer %s, the provider shows the caller %v: want completed with the target", tr.State, c.Caller)
			}
			got, err := store.Get(ctx, tr.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.State != orchestrator.StateCompleted || got.Version != tr.Version {
				t.Errorf("stored %s v%d, want completed v%d", got.State, got.Version, tr.Version)
			}
			evs, err := store.Events(ctx, orchestrator.EventFilter{Tenant: orchestrator.DefaultTenant, TransferID: tr.ID})
			if err != nil {
				t.Fatal(err)
			}
			for i, ev := range evs {
				if ev.Seq != int64(i+1) {
					t.Fatalf("event %d has seq %d: the events are %v", i, ev.Seq, evs)
				}
			}
			if n := int64(len(evs)); n != got.EventSeq {
				t.Errorf("%d events stored, the record's last seq is %d", n, got.EventSeq)
			}
		})
	}
}

// partitionedStore is one replica's view of a shared store that it can be
// cut off from (a network partition, a failover, an exhausted pool):
// every call fails while cut.
type partitionedStore struct {
	*memory.Store
	cut atomic.Bool
	// unlisted: Owned fails, while the rest answers, so that a replica
	// back from a partition cannot look for the transfers others claimed
	// (Engine.lookForTakeovers) and keeps its entries of them.
	unlisted atomic.Bool
}

var errPartition = errors.New("dial tcp 10.0.0.5:5432: i/o timeout")

func (s *partitionedStore) Update(ctx context.Context, t *orchestrator.Transfer) error {
	if s.cut.Load() {
		return errPartition
	}
	return s.Store.Update(ctx, t)
}

func (s *partitionedStore) Heartbeat(ctx context.Context, owner, token string, now time.Time, ttl time.Duration, take bool) (bool, error) {
	if s.cut.Load() {
		return false, errPartition
	}
	return s.Store.Heartbeat(ctx, owner, token, now, ttl, take)
}

func (s *partitionedStore) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	if s.cut.Load() {
		return nil, errPartition
	}
	return s.Store.Get(ctx, id)
}

func (s *partitionedStore) PeekSignal(ctx context.Context, id string) (orchestrator.Signal, error) {
	if s.cut.Load() {
		return orchestrator.SignalNone, errPartition
	}
	return s.Store.PeekSignal(ctx, id)
}

func (s *partitionedStore) TakeSignal(ctx context.Context, id string) (orchestrator.Signal, error) {
	if s.cut.Load() {
		return orchestrator.SignalNone, errPartition
	}
	return s.Store.TakeSignal(ctx, id)
}

func (s *partitionedStore) Claim(ctx context.Context, owner, token string, now time.Time, own bool, limit int) ([]*orchestrator.Transfer, error) {
	if s.cut.Load() {
		return nil, errPartition
	}
	return s.Store.Claim(ctx, owner, token, now, own, limit)
}

func (s *partitionedStore) Owned(ctx context.Context, owner string) ([]string, error) {
	if s.cut.Load() || s.unlisted.Load() {
		return nil, errPartition
	}
	return s.Store.Owned(ctx, owner)
}

func (s *partitionedStore) Signalled(ctx context.Context, owner string) ([]string, error) {
	if s.cut.Load() {
		return nil, errPartition
	}
	return s.Store.Signalled(ctx, owner)
}

// writeCounter is the shared Fake as one replica sends to it: it counts
// that replica's provider writes.
type writeCounter struct {
	*orchestratortest.Fake
	writes atomic.Int32
}

func (p *writeCounter) Hold(ctx context.Context, t *orchestrator.Transfer) error {
	p.writes.Add(1)
	return p.Fake.Hold(ctx, t)
}

func (p *writeCounter) Unhold(ctx context.Context, t *orchestrator.Transfer) error {
	p.writes.Add(1)
	return p.Fake.Unhold(ctx, t)
}

func (p *writeCounter) Dial(ctx context.Context, t *orchestrator.Transfer) (orchestrator.LegRef, error) {
	p.writes.Add(1)
	return p.Fake.Dial(ctx, t)
}

func (p *writeCounter) Complete(ctx context.Context, t *orchestrator.Transfer) error {
	p.writes.Add(1)
	return p.Fake.Complete(ctx, t)
}

func (p *writeCounter) HangupConsult(ctx context.Context, t *orchestrator.Transfer) error {
	p.writes.Add(1)
	return p.Fake.HangupConsult(ctx, t)
}

// logLines keeps a logger's lines for a test to look for.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(p))
	return len(p), nil
}

func (l *logLines) has(parts ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// cutOffPair builds replica a, which reaches the store through aStore (one
// the test can cut off), sends to the provider through aProv and logs to
// aLog, and replica b on the shared store and provider; both shut down
// with the test.
func cutOffPair(t *testing.T, cfg func(owner string) orchestrator.Config, aStore orchestrator.Store, aProv orchestrator.Provider,
	aLog *logLines, mem *memory.Store, fake *orchestratortest.Fake) (a, b *orchestrator.Engine) {
	t.Helper()
	a, err := orchestrator.New(cfg("a"), aStore, []orchestrator.Provider{aProv}, zerolog.New(aLog), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	b, err = orchestrator.New(cfg("b"), mem, []orchestrator.Provider{fake}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []*orchestrator.Engine{a, b} {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = e.Shutdown(ctx)
		})
	}
	return a, b
}

// A replica cut off from the store cannot learn that another replica
// claimed its transfer: only a save's version conflict would tell it. So
// once its own heartbeat runs out it sends no provider request at all,
// not even a restorative one whose intent it cannot save. Here replica a
// is cut off while its manual transfer consults with the target answered;
// b claims the transfer once a's heartbeat expired, and the client's
// complete makes b send the join, which the PBX applies a moment later.
// At its own copy's consult deadline a would hang up the consult and
// unhold the caller, undoing b's join; it must hold back instead, and
// stop driving the transfer once the store tells it b owns it.
func TestReplicaCutOffFromTheStoreSendsNothingOnceItsHeartbeatRunsOut(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	fake := orchestratortest.NewFake("fake")
	aStore := &partitionedStore{Store: mem}
	aProv := &writeCounter{Fake: fake}
	aLog := &logLines{}
	cfg := func(owner string) orchestrator.Config {
		return orchestrator.Config{Owner: owner, LeaseTTL: 400 * time.Millisecond,
			PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond, StepTimeout: time.Second,
			VerifyTimeout: 10 * time.Second, VisibilityWindow: 50 * time.Millisecond}
	}
	a, b := cutOffPair(t, cfg, aStore, aProv, aLog, mem, fake)
	for _, e := range []*orchestrator.Engine{a, b} {
		if err := e.Open(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	// Far past the claim below (a's heartbeat runs 200 ms, claims come
	// every 100 ms): a's copy reaches its deadline while b owns it.
	r.ConsultTimeout = 3 * time.Second
	tr, err := a.Start(ctx, r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, a, tr.ID, answered)
	writes := aProv.writes.Load()

	aStore.cut.Store(true)
	eventually(t, "b claimed the transfer", func() bool { return slices.Contains(b.Running(), tr.ID) })
	fake.Defer(orchestratortest.MethodComplete, 1)
	if _, err := b.Complete(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b sent the join", func() bool { return fake.Deferred(tr.ID) == 1 })
	eventually(t, "a reached its consult deadline and held its undo back (or sent it)", func() bool {
		return aLog.has(tr.ID, "heartbeat ran out") || aProv.writes.Load() > writes
	})

	aStore.cut.Store(false) // a's next save conflicts: it lets the transfer go
	eventually(t, "a stopped driving the transfer", func() bool { return !slices.Contains(a.Running(), tr.ID) })
	fake.ApplyDeferred(tr.ID)
	final := waitFor(t, b, tr.ID, func(*orchestrator.Transfer) bool { return false })
	c, _ := fake.State(tr.ID)
	if n := aProv.writes.Load() - writes; n > 0 {
		t.Errorf("replica a sent %d provider request(s) after b claimed the transfer", n)
	}
	if final.State != orchestrator.StateCompleted || c.Caller != orchestrator.CallerTransferred {
		t.Errorf("the transfer the client completed ended %s (%s); the provider shows the caller %v, the consult %v",
			final.State, final.Outcome.Reason, c.Caller, c.Consult)
	}
}

// blockingPurge is a store whose purges wait until released: a purge of a
// large backlog.
type blockingPurge struct {
	*memory.Store
	release       chan struct{}
	beats, claims atomic.Int32
}

func (s *blockingPurge) Purge(ctx context.Context, before time.Time, limit int) (int, error) {
	<-s.release
	return s.Store.Purge(ctx, before, limit)
}

func (s *blockingPurge) Heartbeat(ctx context.Context, owner, token string, now time.Time, ttl time.Duration, take bool) (bool, error) {
	s.beats.Add(1)
	return s.Store.Heartbeat(ctx, owner, token, now, ttl, take)
}

func (s *blockingPurge) Claim(ctx context.Context, owner, token string, now time.Time, own bool, limit int) ([]*orchestrator.Transfer, error) {
	s.claims.Add(1)
	return s.Store.Claim(ctx, owner, token, now, own, limit)
}

// Neither the heartbeat nor the claims of stopped replicas' transfers are
// held back by a long purge (PostgreSQL's, paced, takes minutes at 1M
// stored transfers): the replica's lease would run out and its transfers
// stop (and others claim them); a stopped replica's callers would wait on
// hold for the purge to end.
func TestHeartbeatAndClaimsGoOnDuringAPurge(t *testing.T) {
	store := &blockingPurge{Store: memory.New(), release: make(chan struct{})}
	e := replica(t, "a", store, orchestratortest.NewFake("fake"), nil)
	t.Cleanup(func() { close(store.release) }) // before the engine's Shutdown
	if err := e.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "three heartbeats while the first purge runs", func() bool { return store.beats.Load() >= 4 })
	claims := store.claims.Load()
	eventually(t, "three claims while the first purge runs", func() bool { return store.claims.Load() >= claims+3 })
}

// slowCutStore is a partitionedStore that is cut off the way a network
// partition cuts it off: the first write that trips the cut fails at once
// (not written); the next write hangs, as a write to an unreachable
// database does until its i/o timeout, and then fails.
type slowCutStore struct {
	*partitionedStore
	trip    func(*orchestrator.Transfer) bool
	tripped atomic.Bool   // the partition began (once: a test ends it for good)
	hung    atomic.Bool   // the one hanging write was taken
	entered chan struct{} // closed when the hanging write starts
	release chan struct{} // its i/o timeout
}

func (s *slowCutStore) Update(ctx context.Context, t *orchestrator.Transfer) error {
	if !s.cut.Load() && s.trip(t) && s.tripped.CompareAndSwap(false, true) {
		s.cut.Store(true)
		return errPartition
	}
	if s.cut.Load() && s.hung.CompareAndSwap(false, true) {
		close(s.entered)
		<-s.release
	}
	return s.partitionedStore.Update(ctx, t)
}

// The lease is judged again when a step's request is sent, not only
// before its intent is saved: a save can hang until its i/o timeout, as a
// write to an unreachable database does, and a lapse is recorded only by
// a heartbeat that succeeds, which a replica cut off from the store never
// writes. Here a's consult deadline makes it recover: the transition is
// the first write the partition refuses (at once), so the hang-up's first
// lease check passes; its intent save then hangs. b claims the transfer
// once a's heartbeat expired and acts on the client's complete (put
// through b) with the join. When a's save finally fails, a must hold its
// hang-up back: sent, it would end the caller's call with the target.
func TestLeaseRunningOutDuringASaveHoldsTheRequestBack(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	fake := orchestratortest.NewFake("fake")
	aStore := &slowCutStore{partitionedStore: &partitionedStore{Store: mem}, entered: make(chan struct{}), release: make(chan struct{}),
		trip: func(tr *orchestrator.Transfer) bool { return tr.State == orchestrator.StateRecovering }}
	var releaseOnce sync.Once
	releaseSave := func() { releaseOnce.Do(func() { close(aStore.release) }) }
	aProv := &writeCounter{Fake: fake}
	aLog := &logLines{}
	cfg := func(owner string) orchestrator.Config {
		return orchestrator.Config{Owner: owner, LeaseTTL: 2 * time.Second,
			PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond, StepTimeout: time.Second,
			VerifyTimeout: 10 * time.Second, VisibilityWindow: 50 * time.Millisecond}
	}
	a, b := cutOffPair(t, cfg, aStore, aProv, aLog, mem, fake)
	t.Cleanup(releaseSave) // before the engines shut down
	for _, e := range []*orchestrator.Engine{a, b} {
		if err := e.Open(ctx); err != nil {
			t.Fatal(err)
		}
	}
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	r.ConsultTimeout = time.Second
	tr, err := a.Start(ctx, r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, a, tr.ID, answered)
	writes := aProv.writes.Load()

	// a reaches its consult deadline; the partition starts with the
	// transition's save, and the hang-up's intent save hangs.
	select {
	case <-aStore.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("a never tried to save the hang-up's intent")
	}
	if n := aProv.writes.Load() - writes; n != 0 {
		t.Fatalf("a sent %d request(s) before its save returned", n)
	}
	// The client's complete, through b: the stored record is still
	// consulting, answered.
	if _, err := b.Complete(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	final := waitFor(t, b, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if c, _ := fake.State(tr.ID); final.State != orchestrator.StateCompleted || final.Owner != "b" || c.Caller != orchestrator.CallerTransferred {
		t.Fatalf("b: %s owner %s, provider shows the caller %v; want completed by b, caller with the target", final.State, final.Owner, c.Caller)
	}

	// a's hanging save times out now, long after its heartbeat ran out.
	releaseSave()
	eventually(t, "a sent its hang-up or held it back", func() bool {
		return aLog.has(tr.ID, "heartbeat ran out") || aProv.writes.Load() > writes
	})
	if n := aProv.writes.Load() - writes; n > 0 {
		c, _ := fake.State(tr.ID)
		t.Errorf("replica a sent %d provider request(s) after its heartbeat ran out and b claimed and completed the transfer; "+
			"the provider now shows the caller %v (b reported completed)", n, c.Caller)
	}
	aStore.cut.Store(false) // a's next save conflicts: it lets the transfer go
	eventually(t, "a stopped driving the transfer", func() bool { return !slices.Contains(a.Running(), tr.ID) })
}

// holdUntilDone is the Fake with a hold that waits until its context
// ends, as a request to a provider that does not answer does.
type holdUntilDone struct {
	*orchestratortest.Fake
	started chan struct{}
	ended   chan error
}

func (p *holdUntilDone) Hold(ctx context.Context, t *orchestrator.Transfer) error {
	close(p.started)
	<-ctx.Done()
	p.ended <- ctx.Err()
	return ctx.Err()
}

// leaseEngine opens an engine, replica "a", with a short lease and a step
// timeout of a minute, for the tests of what a lease running out stops.
func leaseEngine(t *testing.T, store orchestrator.Store, prov orchestrator.Provider) *orchestrator.Engine {
	t.Helper()
	e, err := orchestrator.New(orchestrator.Config{Owner: "a", LeaseTTL: 400 * time.Millisecond, StepTimeout: time.Minute, VisibilityWindow: 50 * time.Millisecond,
		PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond},
		store, []orchestrator.Provider{prov}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Shutdown(ctx)
	})
	if err := e.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

// A request in flight when the heartbeat expires is cancelled, so that an
// adapter sends nothing more for it (its retries): here a hold that would
// otherwise wait for the step's minute-long timeout.
func TestLeaseRunningOutCancelsTheStepInFlight(t *testing.T) {
	ctx := context.Background()
	store := &partitionedStore{Store: memory.New()}
	prov := &holdUntilDone{Fake: orchestratortest.NewFake("fake"), started: make(chan struct{}), ended: make(chan error, 1)}
	e := leaseEngine(t, store, prov)
	if _, err := e.Start(ctx, request("fake", "1000"), orchestrator.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	<-prov.started
	store.cut.Store(true)                        // no heartbeat from now on
	t.Cleanup(func() { store.cut.Store(false) }) // before the Shutdown
	select {
	case err := <-prov.ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the hold ended with %v, want cancelled by the lease", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the hold was not cancelled when the lease ran out")
	}
}

// A replica cut off from the store keeps its entries. Another claims its
// transfer meanwhile, then is cut off in turn, and the first, back, claims
// the transfer back while it still holds its stale entry for it. That
// entry must go on from the claimed record: left alone, its next save
// would conflict with the claims and it would let the transfer go, while
// the store names it the owner, so that no replica would ever drive it.
// (The first, back, cannot list what it owns here: it would find the
// transfer taken over and let its entry go before claiming it back.)
func TestReplicaClaimsBackATransferItStillHeld(t *testing.T) {
	ctx := context.Background()
	p := claimedAcrossAPartition(t, 10*time.Second, zerolog.Nop(), prometheus.NewRegistry())
	mem, fake, a, aStore, bStore, tr := p.mem, p.fake, p.a, p.aStore, p.bStore, p.tr
	aStore.unlisted.Store(true)
	bStore.cut.Store(true)
	aStore.cut.Store(false)
	eventually(t, "a claimed it back", func() bool {
		got, err := mem.Get(ctx, tr.ID)
		return err == nil && got.Owner == "a"
	})
	if _, err := a.Complete(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	final := waitFor(t, a, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if c, _ := fake.State(tr.ID); final.State != orchestrator.StateCompleted || c.Caller != orchestrator.CallerTransferred {
		t.Fatalf("transfer %s (owner %s), the provider shows the caller %v: want completed by a", final.State, final.Owner, c.Caller)
	}
}

// partitionedPair is replicas a and b on one memory store, each through a
// partitionedStore that can cut it off from it, and the transfer tr that
// b claimed from a (claimedAcrossAPartition).
type partitionedPair struct {
	mem            *memory.Store
	fake           *orchestratortest.Fake
	a, b           *orchestrator.Engine
	aStore, bStore *partitionedStore
	tr             *orchestrator.Transfer
}

// claimedAcrossAPartition starts replicas a (logging to aLog, its metrics
// in aReg) and b, with the verify timeout verify; a starts a manual
// transfer whose target answers and is cut off from the store, and b
// claims the transfer. Both are let back at the test's end, before their
// Shutdowns.
func claimedAcrossAPartition(t *testing.T, verify time.Duration, aLog zerolog.Logger, aReg *prometheus.Registry) *partitionedPair {
	t.Helper()
	ctx := context.Background()
	p := &partitionedPair{mem: memory.New(), fake: orchestratortest.NewFake("fake")}
	p.aStore, p.bStore = &partitionedStore{Store: p.mem}, &partitionedStore{Store: p.mem}
	var engines []*orchestrator.Engine
	for _, r := range []struct {
		owner string
		store orchestrator.Store
		log   zerolog.Logger
		reg   *prometheus.Registry
	}{{"a", p.aStore, aLog, aReg}, {"b", p.bStore, zerolog.Nop(), prometheus.NewRegistry()}} {
		cfg := orchestrator.Config{Owner: r.owner, LeaseTTL: 400 * time.Millisecond,
			PollInterval: time.Millisecond, PollMaxInterval: 20 * time.Millisecond, StepTimeout: time.Second,
			VerifyTimeout: verify, VisibilityWindow: 50 * time.Millisecond}
		e, err := orchestrator.New(cfg, r.store, []orchestrator.Provider{p.fake}, r.log, r.reg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = e.Shutdown(ctx)
		})
		if err := e.Open(ctx); err != nil {
			t.Fatal(err)
		}
		engines = append(engines, e)
	}
	p.a, p.b = engines[0], engines[1]
	t.Cleanup(func() { p.aStore.cut.Store(false); p.bStore.cut.Store(false) }) // before the Shutdowns
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	r.ConsultTimeout = time.Minute
	tr, err := p.a.Start(ctx, r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, p.a, tr.ID, answered)

	p.aStore.cut.Store(true)
	eventually(t, "b claimed the transfer", func() bool { return slices.Contains(p.b.Running(), tr.ID) })
	p.tr = tr
	return p
}
