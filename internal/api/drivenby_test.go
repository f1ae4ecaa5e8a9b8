package api_test

import (
	"context"
	"io"
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

// receivingFake is one adapter of an account: a fake provider that
// records the callbacks it received and the notes applied to it.
type receivingFake struct {
	*orchestratortest.Fake
	mu   sync.Mutex
	told []string // "id note"
}

func (f *receivingFake) ReceiveCallback(r *http.Request, id string) (string, error) {
	b, err := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.told = append(f.told, id+" "+string(b))
	return string(b), err
}

func (f *receivingFake) ApplyCallbackNote(id, note string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.told = append(f.told, id+" "+note)
	return nil
}

func (f *receivingFake) heard() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.told)
}

// swappedAccounts is a tenants file of one tenant, acme, whose one
// account a reload replaces (or removes: nil).
type swappedAccounts struct {
	mu sync.Mutex
	p  orchestrator.Provider
}

func (a *swappedAccounts) set(p orchestrator.Provider) { a.mu.Lock(); a.p = p; a.mu.Unlock() }

func (a *swappedAccounts) Provider(tenant, name string) (orchestrator.Provider, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if tenant != "acme" || a.p == nil || a.p.Name() != name {
		return nil, false
	}
	return a.p, true
}

func (a *swappedAccounts) Names(tenant string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if tenant != "acme" || a.p == nil {
		return nil
	}
	return []string{a.p.Name()}
}

// A callback about a transfer in flight reaches the account the transfer
// is driven with, also once a reload replaced the tenant's account (a
// rotated secret, another request budget: a new adapter for new
// transfers) or removed it. It reached the account in force: the hangup
// cause it told, or the leg it named, was kept where the transfer never
// reads, and its outcome said less than the provider had told (after a
// removal the callback was a 404). A note forwarded by another replica
// goes the same way.
func TestACallbackReachesTheAccountItsTransferIsDrivenWith(t *testing.T) {
	old := &receivingFake{Fake: orchestratortest.NewFake("bandwidth")}
	accounts := &swappedAccounts{p: old}
	store := memory.New()
	reg := prometheus.NewRegistry()
	eng, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		VerifyTimeout: 200 * time.Millisecond, VisibilityWindow: 20 * time.Millisecond, Accounts: accounts},
		store, nil, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = eng.Shutdown(ctx)
	})
	fwd := &recordingForwarder{}
	signer := mustSigner(t, newSecret)
	srv := httptest.NewServer(api.NewServer(api.Config{Idempotency: store, CallbackSigner: signer, Accounts: accounts, Forwarder: fwd},
		eng, zerolog.Nop(), reg, reg))
	t.Cleanup(srv.Close)
	post := func(id, body string) int {
		t.Helper()
		res, err := srv.Client().Post(srv.URL+"/callbacks/bandwidth/"+id+"/"+signer.Token(api.TokenTransfer, "acme", id),
			"application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acme := orchestrator.WithTenant(ctx, "acme")
	tr, err := eng.Start(acme, orchestrator.Request{Provider: "bandwidth", Call: orchestrator.CallRef{CallID: "c-caller"},
		Target: "+15550100", Completion: orchestrator.CompletionManual}, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := eng.Wait(acme, tr.ID, func(x *orchestrator.Transfer) bool { return x.State == orchestrator.StateConsulting }); err != nil ||
		got.State != orchestrator.StateConsulting {
		t.Fatalf("the transfer is not consulting: %v", err)
	}

	rotated := &receivingFake{Fake: orchestratortest.NewFake("bandwidth")}
	accounts.set(rotated)
	if code := post(tr.ID, "c-target/USER_BUSY"); code != http.StatusNoContent {
		t.Fatalf("callback after the rotation: %d", code)
	}
	fwd.heard("acme", "bandwidth", tr.ID, "c-target/NORMAL_CLEARING")
	accounts.set(nil)
	if code := post(tr.ID, "c-target/NO_ANSWER"); code != http.StatusNoContent {
		t.Fatalf("callback after the account's removal: %d", code)
	}
	want := []string{tr.ID + " c-target/USER_BUSY", tr.ID + " c-target/NORMAL_CLEARING", tr.ID + " c-target/NO_ANSWER"}
	if got := old.heard(); !slices.Equal(got, want) {
		t.Errorf("the account driving the transfer was told %q, want %q", got, want)
	}
	if got := rotated.heard(); len(got) != 0 {
		t.Errorf("the account that replaced it was told %q, about a transfer it does not drive", got)
	}

	// Another tenant's token for the id reaches nothing of acme's.
	res, err := srv.Client().Post(srv.URL+"/callbacks/bandwidth/"+tr.ID+"/"+signer.Token(api.TokenTransfer, "beta", tr.ID),
		"application/json", strings.NewReader("c-x"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound || len(old.heard()) != len(want) {
		t.Errorf("another tenant's callback about acme's transfer: %d, told %q", res.StatusCode, old.heard())
	}

	accounts.set(old)
	if _, err := eng.Cancel(acme, tr.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := eng.Wait(acme, tr.ID, func(*orchestrator.Transfer) bool { return false }); err != nil || !got.State.Terminal() {
		t.Fatalf("the transfer did not end: %v", err)
	}
}
