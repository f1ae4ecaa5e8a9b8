package orchestrator_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// countingFake is the Fake whose readings count, per transfer, how often
// the reading is read: once by the watcher per reading (to see whether it
// shows something new) and once by every reconcile that judges it
// (Engine.reading). Observes minus readings is the number of reconciles.
type countingFake struct {
	*orchestratortest.Fake
	mu       sync.Mutex
	reads    map[string]int // readings that covered the transfer
	observes map[string]int // View.Observe calls for the transfer
	// readSeen, when set, receives (without blocking) after each reading.
	readSeen chan struct{}
}

type countingView struct {
	orchestrator.View
	p *countingFake
}

func (v countingView) Observe(t *orchestrator.Transfer) (orchestrator.Observation, error) {
	v.p.mu.Lock()
	v.p.observes[t.ID]++
	v.p.mu.Unlock()
	return v.View.Observe(t)
}

func (p *countingFake) Read(ctx context.Context, key string, ts []*orchestrator.Transfer) (orchestrator.View, error) {
	v, err := p.Fake.Read(ctx, key, ts)
	if err != nil {
		return v, err
	}
	p.mu.Lock()
	for _, t := range ts {
		p.reads[t.ID]++
	}
	seen := p.readSeen
	p.mu.Unlock()
	if seen != nil {
		select {
		case seen <- struct{}{}:
		default:
		}
	}
	return countingView{v, p}, nil
}

// counts returns the readings that covered id and the reconciles that
// judged one.
func (p *countingFake) counts(id string) (reads, reconciles int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reads[id], p.observes[id] - p.reads[id]
}

// Found by review: an unverified outcome whose obligation lasts long
// (the tombstone of a consult never seen), and whose caller the agent
// then puts with the target by the agent's own transfer, as the sweeper's
// unhold goes out (no join of ours was sent, so the sweeper does not take
// that for a completed transfer). From then on every reading shows the
// caller with the target, and the sweep skips compensate; but it still
// waited for what an earlier reconcile had left due: a compensation to
// judge (judgeAt, the unhold refused), or a failed unhold to send again
// (redoUnhold, the unhold answered 503). That time once past, the wait
// was 1 ms: the parked obligation reconciled about a thousand times a
// second until its Until (TombstoneTTL, two minutes by default), though
// no reading showed anything new. Nothing of ours is owed to a caller with
// the target, and each reconcile now judges only what it computed.
func TestSweepOfACallerWithTheTargetDoesNotSpin(t *testing.T) {
	for _, tc := range []struct {
		name string
		// unholdFails: the sweeper's unhold meets a provider error, owed
		// again; otherwise it is refused (the caller is with someone else).
		unholdFails bool
	}{{"unhold refused", false}, {"unhold failed", true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.VerifyTimeout = 4 * cfg.VisibilityWindow
			cfg.TombstoneTTL = time.Hour                  // Until is far away
			cfg.PollMaxInterval = 4 * cfg.PollMaxInterval // a parked obligation is read every 20 ms
			p := &countingFake{Fake: orchestratortest.NewFake("fake"), reads: map[string]int{}, observes: map[string]int{}}
			p.SetTarget(orchestratortest.TargetRings)
			p.Defer(dial, 1)   // the consult never appears: the outcome keeps a tombstone
			p.Defer(unhold, 1) // the recovery's unhold is lost: the caller stays held
			unavailable := orchestrator.E("fake.Observe", orchestrator.KindProviderUnavailable, errors.New("HTTP 503"))
			var unholds atomic.Int32
			withTarget := make(chan struct{})
			p.Before(unhold, func(rec orchestratortest.Record) {
				switch unholds.Add(1) {
				case 1:
					// Unreadable from the recovery's unhold on: the
					// recovery ends unverified, with an obligation.
					p.FailOn(observe, unavailable, -1)
				case 2:
					if tc.unholdFails {
						// A reading begun after this unhold was decided
						// (the second to end from here), showing the
						// caller still held, is the last before its
						// failure: sent again on it, the unhold took the
						// caller back from the target (seen in CI once,
						// where such a reading fell there by chance).
						seen := make(chan struct{})
						p.mu.Lock()
						p.readSeen = seen
						p.mu.Unlock()
						<-seen
						<-seen
						p.mu.Lock()
						p.readSeen = nil
						p.mu.Unlock()
					}
					p.SetCaller(rec.TransferID, orchestrator.CallerTransferred)
					if tc.unholdFails {
						p.FailOn(unhold, orchestrator.E("fake.Unhold", orchestrator.KindProviderUnavailable, errors.New("HTTP 503")), 1)
					}
					close(withTarget)
				}
			})
			st := &recStore{Store: memory.New(), saved: make(chan struct{})}
			e := testEngine(t, cfg, st, p, nil)
			tr, err := e.Start(context.Background(), request("fake", "1000"), orchestrator.StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			id := tr.ID
			end := st.waitSaved(t, id, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
			if end.Cleanup == nil || end.Outcome.Verified {
				t.Fatalf("set-up: ended %s %+v cleanup %+v; want an unverified outcome with an obligation", end.State, end.Outcome, end.Cleanup)
			}
			p.ClearFaults() // readable again: the sweeper sees the caller held and unholds
			<-withTarget

			// The sweeper judges the caller with the target, and what was
			// due then passes (a window after the unhold).
			r0, _ := p.counts(id)
			eventually(t, "readings after the caller went to the target", func() bool { r, _ := p.counts(id); return r >= r0+10 })
			r1, c1 := p.counts(id)
			// Nothing changes from now on: a parked obligation is
			// reconciled only by what wakes it.
			eventually(t, "thirty more readings", func() bool { r, _ := p.counts(id); return r >= r1+30 })
			r2, c2 := p.counts(id)
			if c, _ := p.State(id); c.Caller != orchestrator.CallerTransferred {
				t.Fatalf("set-up: the caller is %v at the provider, want with the target", c.Caller)
			}
			if n := c2 - c1; n > 10 {
				t.Errorf("%d reconciles during %d readings that showed nothing new", n, r2-r1)
			}
			if n := unholds.Load(); n > 2 {
				t.Errorf("%d unholds: a caller with the target must not be unheld", n)
			}
		})
	}
}
