package api_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/store/memory"
)

// noteReceiver is a callback receiver whose note is the event's body, and
// which records the notes applied to it.
type noteReceiver struct {
	mu      sync.Mutex
	applied []string // "id note"
}

func (n *noteReceiver) ReceiveCallback(r *http.Request, _ string) (string, error) {
	b, err := io.ReadAll(r.Body)
	return string(b), err
}

func (n *noteReceiver) ApplyCallbackNote(id, note string) error {
	if note == "malformed" {
		return &orchestrator.Error{Kind: orchestrator.KindInvalid, Err: errors.New("malformed note")}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.applied = append(n.applied, id+" "+note)
	return nil
}

func (n *noteReceiver) notes() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.applied)
}

// recordingForwarder records what is forwarded, failing while fail is
// set, and keeps the function ListenCallbacks was given.
type recordingForwarder struct {
	mu        sync.Mutex
	forwarded []string // "tenant provider id note"
	fail      bool
	heard     func(tenant, provider, transferID, note string)
}

func (f *recordingForwarder) ForwardCallback(_ context.Context, tenant, provider, id, note string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("the channel is down")
	}
	f.forwarded = append(f.forwarded, strings.Join([]string{tenant, provider, id, note}, " "))
	return nil
}

func (f *recordingForwarder) ListenCallbacks(heard func(tenant, provider, transferID, note string)) {
	f.heard = heard
}

func (f *recordingForwarder) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.forwarded)
}

// A callback is forwarded with what it told (its receiver's note), once
// it was taken, whether or not this replica drives its transfer; one that
// told nothing is not;
// a forward that fails still answers the provider 2xx. What the other
// replicas forward is handed to the receiver of its tenant and provider
// here, and nothing else: another provider, a malformed note. Each is
// counted by its result.
func TestCallbacksForwardedToTheReplicaThatDrivesTheTransfer(t *testing.T) {
	fake := orchestratortest.NewFake("netsapiens")
	store := memory.New()
	reg := prometheus.NewRegistry()
	eng, err := orchestrator.New(orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		VerifyTimeout: 200 * time.Millisecond, VisibilityWindow: 20 * time.Millisecond},
		store, []orchestrator.Provider{fake}, zerolog.Nop(), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = eng.Shutdown(ctx)
	})
	rcv, fwd := &noteReceiver{}, &recordingForwarder{}
	signer := mustSigner(t, newSecret)
	srv := httptest.NewServer(api.NewServer(api.Config{Idempotency: store, CallbackSigner: signer,
		Callbacks: map[string]api.CallbackReceiver{"netsapiens": rcv}, Forwarder: fwd}, eng, zerolog.Nop(), reg, reg))
	t.Cleanup(srv.Close)
	if fwd.heard == nil {
		t.Fatal("the server does not listen for forwarded callbacks")
	}
	post := func(id, body string) {
		t.Helper()
		res, err := srv.Client().Post(srv.URL+"/callbacks/netsapiens/"+id+"/"+signer.Token(api.TokenTransfer, "default", id),
			"application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNoContent {
			t.Fatalf("callback %q about %s: %d", body, id, res.StatusCode)
		}
	}

	// A transfer this replica drives: it waits for its completion.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mine, err := eng.Start(ctx, orchestrator.Request{Provider: "netsapiens", Call: orchestrator.CallRef{Domain: "acme.example", User: "1000"},
		Target: "1010", Completion: orchestrator.CompletionManual}, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tr, err := eng.Wait(ctx, mine.ID, func(x *orchestrator.Transfer) bool { return x.State == orchestrator.StateConsulting }); err != nil ||
		tr.State != orchestrator.StateConsulting {
		t.Fatalf("the transfer is not consulting: %v", err)
	}
	other := orchestrator.NewID(time.Now())

	post(mine.ID, "c-1/USER_BUSY")
	post(other, "")
	post(other, "c-2/USER_BUSY")
	fwd.mu.Lock()
	fwd.fail = true
	fwd.mu.Unlock()
	post(other, "c-3")
	if got, want := fwd.sent(), []string{"default netsapiens " + mine.ID + " c-1/USER_BUSY", "default netsapiens " + other + " c-2/USER_BUSY"}; !slices.Equal(got, want) {
		t.Errorf("forwarded %q, want %q", got, want)
	}

	fwd.heard("default", "netsapiens", mine.ID, "c-4/USER_BUSY")
	fwd.heard("default", "bandwidth", mine.ID, "c-5")
	fwd.heard("default", "netsapiens", mine.ID, "malformed")
	if got, want := rcv.notes(), []string{mine.ID + " c-4/USER_BUSY"}; !slices.Equal(got, want) {
		t.Errorf("applied %q, want %q", got, want)
	}
	want := `
# HELP transferd_callbacks_forwarded_total Provider callback notes forwarded between replicas, by result (sent, failed, applied, refused).
# TYPE transferd_callbacks_forwarded_total counter
transferd_callbacks_forwarded_total{result="applied"} 1
transferd_callbacks_forwarded_total{result="failed"} 1
transferd_callbacks_forwarded_total{result="refused"} 2
transferd_callbacks_forwarded_total{result="sent"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "transferd_callbacks_forwarded_total"); err != nil {
		t.Error(err)
	}
	// Ended, so that the engine's shutdown need not wait for it.
	if _, err := eng.Cancel(ctx, mine.ID); err != nil {
		t.Fatal(err)
	}
	if tr, err := eng.Wait(ctx, mine.ID, func(*orchestrator.Transfer) bool { return false }); err != nil || !tr.State.Terminal() {
		t.Fatalf("the transfer did not end: %v", err)
	}
}
