package orchestrator_test

import (
	"context"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// slowTake holds a process's taking heartbeat (Open's) until gate is
// closed, after the engine has read the time it stamps it with: a write
// that a slow database answers late. It counts the process's claims.
type slowTake struct {
	*memory.Store
	sent   chan struct{}
	gate   chan struct{}
	claims atomic.Int64
}

func (s *slowTake) Heartbeat(ctx context.Context, owner, token string, now time.Time, ttl time.Duration, take bool) (bool, error) {
	if take {
		close(s.sent)
		<-s.gate
	}
	return s.Store.Heartbeat(ctx, owner, token, now, ttl, take)
}

func (s *slowTake) Claim(ctx context.Context, owner, token string, now time.Time, own bool, limit int) ([]*orchestrator.Transfer, error) {
	defer s.claims.Add(1)
	return s.Store.Claim(ctx, owner, token, now, own, limit)
}

// createdBeforeTakeover saves a create as PostgreSQL saves one whose
// statement began before the takeover of its name committed: judged
// against the heartbeat as it was, which still held its process's token
// (Store.Update). Any later create of its process is refused.
type createdBeforeTakeover struct{ *heldBeats }

func (s createdBeforeTakeover) Create(ctx context.Context, t *orchestrator.Transfer) error {
	tok := t.Token
	t.Token = ""
	defer func() { t.Token = tok }()
	return s.heldBeats.Create(ctx, t)
}

// The older of two processes under one name may renew its heartbeat
// while the newer one's taking write is on its way: the older one's
// lease then runs from after the newer one read its clock for that
// write. The newer one adopts what the older one created only once the
// older one can send nothing more, so it counts a heartbeat TTL from when
// its write was answered, not from the time it stamped it with.
func TestTakeoverWaitsFromTheAnswerOfItsWrite(t *testing.T) {
	ctx := context.Background()
	const ttl = 2 * time.Second // heartbeats of a second, sends until 750ms
	base := time.Now()
	var off atomic.Int64               // the clock of both processes, moved by hand
	var runs atomic.Pointer[time.Time] // from then on, with time too
	clock := func() time.Time {
		at := base.Add(time.Duration(off.Load()))
		if from := runs.Load(); from != nil {
			at = at.Add(time.Since(*from))
		}
		return at
	}
	set := func(d time.Duration) { off.Store(int64(d)) }
	engine := func(s orchestrator.Store, f *orchestratortest.Fake) *orchestrator.Engine {
		return replicaWith(t, orchestrator.Config{Owner: "x", LeaseTTL: ttl, Clock: clock}, s, f)
	}
	mem := memory.New()
	fake := orchestratortest.NewFake("fake")
	held := &heldBeats{Store: mem, gate: make(chan struct{})}
	defer close(held.gate)
	slow := &slowTake{Store: mem, sent: make(chan struct{}), gate: make(chan struct{})}
	older, newer := engine(createdBeforeTakeover{held}, fake), engine(slow, fake)
	// Run first among the cleanups: the shutdowns wait on the clock.
	t.Cleanup(func() { now := time.Now(); runs.Store(&now) })

	opened := make(chan error, 1)
	go func() { opened <- newer.Open(ctx) }() // stamped at base
	<-slow.sent
	// Half a second passes while the newer one's write is on its way; the
	// older one writes its heartbeat meanwhile (its Open's; it renews
	// none after: held), and sends until base+1.25s.
	set(500 * time.Millisecond)
	if err := older.Open(ctx); err != nil {
		t.Fatal(err)
	}
	close(slow.gate)
	if err := <-opened; err != nil {
		t.Fatal(err)
	}
	// A create whose save was under way as the takeover committed.
	r := request("fake", "1000")
	r.Completion = orchestrator.CompletionManual
	tr, err := older.Start(ctx, r, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// A heartbeat TTL after the newer one's stamp, the older one may
	// still send: the newer one's claims leave its transfer alone. Two
	// claims: the first's round, its look for orphans included, is over.
	set(1100 * time.Millisecond)
	for n := slow.claims.Load() + 2; slow.claims.Load() < n; {
		runtime.Gosched()
	}
	if slices.Contains(newer.Running(), tr.ID) {
		t.Fatalf("the newer process adopted %s while the older one could still send for it", tr.ID)
	}
	// Once the older one can send nothing more, the newer one drives it.
	set(1600 * time.Millisecond)
	eventually(t, "the newer process drives the transfer the older one created", func() bool {
		return slices.Contains(newer.Running(), tr.ID)
	})
}
