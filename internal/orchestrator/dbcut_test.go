package orchestrator_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
)

// Two replicas on PostgreSQL, each with a store of its own, and every
// connection to the database cut at once while a manual consult runs on
// a (a restart or failover of the server). The complete sent to b, which
// does not drive the transfer, is accepted once b's store reaches the
// server again (a refusal meanwhile says the signal is not known, never
// that it was lost), and a acts on it: the transfer completes, nothing
// given back, nothing sent twice, and b never drives it.
func TestEveryConnectionCutWhileAConsultRunsLosesNoSignal(t *testing.T) {
	url := postgresSchema(t)
	ctx := context.Background()
	fake := orchestratortest.NewFake("fake")
	cfg := func(owner string) orchestrator.Config {
		return orchestrator.Config{Owner: owner, LeaseTTL: 2 * time.Second, HandoverPatience: time.Minute}
	}
	a := replicaWith(t, cfg("a"), openPostgresAt(t, url), fake)
	b := replicaWith(t, cfg("b"), openPostgresAt(t, url), fake)
	openAll(t, a, b)
	tr := consultingOn(t, a, "1000")

	cutEveryConnection(t, url)
	var err error
	for try := 0; try < 50; try++ {
		if _, err = b.Complete(ctx, tr.ID); err == nil || orchestrator.KindOf(err) != orchestrator.KindUnavailable {
			break
		}
	}
	if err != nil {
		t.Fatalf("Complete through b after the cut: %v", err)
	}
	done := waitFor(t, a, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if done.State != orchestrator.StateCompleted || done.Owner != "a" {
		t.Fatalf("the transfer ended %s (%+v), owned by %q; want completed by a", done.State, done.Outcome, done.Owner)
	}
	if got, want := fake.ActionsFor(tr.ID), []string{locate, hold, dial, complete}; !slices.Equal(got, want) {
		t.Fatalf("actions %q, want %q", got, want)
	}
	if b.Drives(tr.ID) {
		t.Error("b drives the transfer a completed")
	}
}
