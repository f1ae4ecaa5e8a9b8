package orchestrator_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// replacedAccount is a tenants file whose one account of tenant acme a
// reload replaces.
type replacedAccount struct {
	mu sync.Mutex
	p  orchestrator.Provider
}

func (a *replacedAccount) set(p orchestrator.Provider) { a.mu.Lock(); a.p = p; a.mu.Unlock() }

func (a *replacedAccount) Provider(tenant, name string) (orchestrator.Provider, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.p, tenant == "acme" && a.p.Name() == name
}

func (a *replacedAccount) Names(tenant string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return []string{a.p.Name()}
}

// DrivesWith tells the tenants file's reloads which replaced account may
// still be used by a transfer in flight (its rotations reach it) and which
// may be released (a NetSapiens client's subscriptions and goroutines).
func TestDrivesWithNamesTheAccountsTransfersInFlightUse(t *testing.T) {
	old, successor := orchestratortest.NewFake("fake"), orchestratortest.NewFake("fake")
	accounts := &replacedAccount{p: old}
	eng, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		VerifyTimeout: 200 * time.Millisecond, VisibilityWindow: 20 * time.Millisecond, Accounts: accounts},
		memory.New(), nil, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acme := orchestrator.WithTenant(ctx, "acme")
	tr, err := eng.Start(acme, orchestrator.Request{Provider: "fake", Call: orchestrator.CallRef{Domain: "d", User: "1000"},
		Target: "1010", Completion: orchestrator.CompletionManual}, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := eng.Wait(acme, tr.ID, func(x *orchestrator.Transfer) bool { return x.State == orchestrator.StateConsulting }); err != nil ||
		got.State != orchestrator.StateConsulting {
		t.Fatalf("the transfer is not consulting: %v", err)
	}
	accounts.set(successor)
	if !eng.DrivesWith(old) {
		t.Error("the account a consulting transfer is driven with is said unused")
	}
	if eng.DrivesWith(successor) {
		t.Error("an account no transfer was adopted with is said used")
	}
	if _, err := eng.Cancel(acme, tr.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := eng.Wait(acme, tr.ID, func(*orchestrator.Transfer) bool { return false }); err != nil || !got.State.Terminal() {
		t.Fatalf("the transfer did not end: %v", err)
	}
	// Once the engine stopped, nothing it drives remains.
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := eng.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if eng.DrivesWith(old) {
		t.Error("an account is said used after every transfer driven with it ended")
	}
}
