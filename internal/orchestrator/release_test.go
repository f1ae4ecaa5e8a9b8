package orchestrator_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/store/sqlite"
)

// A replica that shuts down ends its heartbeat once it has stopped every
// step, so that another replica claims what it left at its next look,
// not once the heartbeat runs out (TRANSFERD_LEASE_TTL), with callers on
// hold meanwhile; while the shutdown still runs a step, the heartbeat
// holds. The same replica restarted resumes what it left at once.
func TestShutdownEndsTheHeartbeat(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) orchestrator.Store{
		"memory": func(*testing.T) orchestrator.Store { return memory.New() },
		"sqlite": func(t *testing.T) orchestrator.Store {
			s, err := sqlite.Open(context.Background(), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			store := open(t)
			fake := orchestratortest.NewFake("fake")
			// A lease of an hour: the heartbeat runs out only long after
			// the test, and the claims below say whether it was ended.
			const leaseTTL = time.Hour
			a := leaseReplica(t, "a", store, fake, leaseTTL)
			if err := a.Open(ctx); err != nil {
				t.Fatal(err)
			}
			r := request("fake", "1000")
			r.Completion = orchestrator.CompletionManual
			tr, err := a.Start(ctx, r, orchestrator.StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, a, tr.ID, answered)

			// The shutdown abandons the consult and is held in its hang-up,
			// then cut short: the transfer stays open in the store.
			hangup := fake.Block(orchestratortest.MethodHangupConsult)
			sctx, cut := context.WithCancel(ctx)
			stopped := make(chan error, 1)
			go func() { stopped <- a.Shutdown(sctx) }()
			<-hangup.Entered()
			// Past the margin a cut shutdown leaves (an eighth of the
			// lease), well within the heartbeat.
			later := time.Now().Add(leaseTTL / 4)
			if got, err := store.Claim(ctx, "b", "", later, false, 0); err != nil || len(got) != 0 {
				t.Fatalf("a peer claimed %v (%v) while the shutdown ran a step, want nothing", transferIDs(got), err)
			}
			cut()
			if err := <-stopped; err == nil {
				t.Fatal("Shutdown cut short returned no error")
			}
			hangup.Release()
			got, err := store.Get(ctx, tr.ID)
			if err != nil || !got.Open() || got.Owner != "a" {
				t.Fatalf("after the shutdown the transfer is %+v (%v), want open and a's", got, err)
			}
			if got, err := store.Claim(ctx, "b", "", later, false, 0); err != nil || !slices.Equal(transferIDs(got), []string{tr.ID}) {
				t.Fatalf("a peer's claim after the shutdown took %v (%v), want %s: the heartbeat still holds it", transferIDs(got), err, tr.ID)
			}

			// Given back to a by hand: its restart resumes it at once.
			if _, err := store.Claim(ctx, "a", "", later, true, 0); err != nil {
				t.Fatal(err)
			}
			fake.Block(orchestratortest.MethodHangupConsult).Release()
			again := leaseReplica(t, "a", store, fake, leaseTTL)
			if err := again.Open(ctx); err != nil {
				t.Fatal(err)
			}
			if running := again.Running(); !slices.Contains(running, tr.ID) {
				t.Fatalf("the restarted replica runs %v, want %s at once", running, tr.ID)
			}
		})
	}
}

// leaseReplica is replica with a lease TTL of its own.
func leaseReplica(t *testing.T, owner string, store orchestrator.Store, f *orchestratortest.Fake, ttl time.Duration) *orchestrator.Engine {
	t.Helper()
	return replicaWith(t, orchestrator.Config{Owner: owner, LeaseTTL: ttl}, store, f)
}

func transferIDs(ts []*orchestrator.Transfer) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.ID
	}
	return out
}
