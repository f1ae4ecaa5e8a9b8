package orchestrator_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// A rolling restart, as an operator runs one: a and b serve, a is
// stopped gracefully and comes back (a new process under its name), then
// b is, and comes back. The consult begun on a is handed to b, then back
// to a's new process, and the client's complete, sent to b's new process
// that does not drive it, reaches a; a long poll on b's new process sees
// the end. The caller is never given back, nothing is sent twice, and
// the transfer is never driven by two replicas at once (each resumption
// is the only one: one "resumed by" step per hand-over).
func TestARollingRestartCarriesAConsultThrough(t *testing.T) {
	for name, open := range handoverStores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			store := open(t)
			fake := orchestratortest.NewFake("fake")
			cfg := func(owner string) orchestrator.Config {
				return orchestrator.Config{Owner: owner, LeaseTTL: 2 * time.Second, HandoverPatience: time.Minute}
			}
			a, b := handoverPair(t, store, fake, time.Minute)
			tr := consultingOn(t, a, "1000")

			if err := shutdownWithin(a); err != nil {
				t.Fatalf("Shutdown of a: %v", err)
			}
			waitFor(t, b, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "b" && saysStep(x, "resumed by b") })
			a2 := replicaWith(t, cfg("a"), store, fake)
			openAll(t, a2)

			if err := shutdownWithin(b); err != nil {
				t.Fatalf("Shutdown of b: %v", err)
			}
			waitFor(t, a2, tr.ID, func(x *orchestrator.Transfer) bool { return x.Owner == "a" && saysStep(x, "resumed by a") })
			b2 := replicaWith(t, cfg("b"), store, fake)
			openAll(t, b2)
			if b2.Drives(tr.ID) {
				t.Fatal("b's new process drives the transfer a resumed")
			}

			// The long poll on b2, which does not drive the transfer.
			ended := make(chan *orchestrator.Transfer, 1)
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			go func() {
				got, err := b2.Wait(wctx, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
				if err != nil {
					t.Errorf("the long poll on b: %v", err)
				}
				ended <- got
			}()
			if _, err := b2.Complete(ctx, tr.ID); err != nil {
				t.Fatalf("Complete through b: %v", err)
			}
			done := <-ended
			if done == nil || done.State != orchestrator.StateCompleted {
				t.Fatalf("the long poll on b answered %+v, want the transfer completed", done)
			}
			if got, want := fake.ActionsFor(tr.ID), []string{locate, hold, dial, complete}; !slices.Equal(got, want) {
				t.Fatalf("actions %q, want %q", got, want)
			}
			final, err := store.Get(ctx, tr.ID)
			if err != nil {
				t.Fatal(err)
			}
			var handed, resumed int
			for _, st := range final.Steps {
				if saysStep(&orchestrator.Transfer{Steps: []orchestrator.Step{st}}, "handed over") {
					handed++
				}
				if saysStep(&orchestrator.Transfer{Steps: []orchestrator.Step{st}}, "resumed by") {
					resumed++
				}
			}
			if handed != 2 || resumed != 2 {
				t.Errorf("%d hand-overs and %d resumptions in the steps, want 2 of each: %+v", handed, resumed, final.Steps)
			}
		})
	}
}
