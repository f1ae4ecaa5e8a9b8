package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/apiclient"
	"github.com/transferd/transferd/internal/providers/bandwidth"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
	"github.com/transferd/transferd/internal/store/postgres"
	"github.com/transferd/transferd/internal/wake"
)

// noteWatch is a replica's Bandwidth client as its API server sees it,
// telling applied of each note another replica forwarded once the client
// has it (while applied has room: the listener must never block).
type noteWatch struct {
	*bandwidth.Client
	applied chan string
}

func (w noteWatch) ApplyCallbackNote(id, note string) error {
	err := w.Client.ApplyCallbackNote(id, note)
	if err == nil {
		select {
		case w.applied <- note:
		default:
		}
	}
	return err
}

// Replicas behind a load balancer: replica a drives an attended
// Bandwidth transfer to a busy target, and the platform posts the
// consult's callbacks to replica b (a's public URL is b's address, as a
// balancer may choose). The platform never indexes the failed consult
// (bwsim VanishFailedLegs), so only its hangup callback tells how it
// ended. b does not drive the transfer and forwards what the callback
// told (callbackForwarder, over PostgreSQL's notifications); a's client
// then knows it, and the transfer reports busy, verified, the caller back
// with the agent, nothing left to watch. Before, the cause stayed in b's
// memory: a judged the consult one that never appeared, reported
// consult_failed, and left a tombstone watching for a leg that had ended.
// a first reads the consult once the forward reached its client.
func TestCallbackToAnotherReplicaReachesTheOneDrivingTheTransfer(t *testing.T) {
	const (
		userID, token, secret = "u-transferd", "bwtok-T0kenT0kenT0kenT0ken9876", "bwsec-S3cretS3cretS3cretS3cret1234"
		owned, customer       = "+15555550000", "+15555550100"
		agent, target         = "+15555550111", "+19195550123"
		basePath              = "/v1"
	)
	dbURL := testDatabase(t).String()
	ctx := context.Background()
	sim := bwsim.New(bwsim.Config{Token: token, Secret: secret, UserID: userID, OwnedNumbers: []string{owned},
		VanishFailedLegs: true, MaxRecords: 1 << 20})
	t.Cleanup(sim.Close)
	sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeBusy})
	a, g, _, err := sim.PlaceCallWithAgent(bwsim.InboundCall{From: customer, To: owned, Agent: agent})
	if err != nil {
		t.Fatal(err)
	}

	// a's first reading of the consult waits for the forwarded note.
	applied := make(chan string, 16)
	callPath := basePath + "/users/" + userID + "/calls/"
	simAPI := http.StripPrefix(basePath, sim.APIHandler())
	var first sync.Once
	platform := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, isCall := strings.CutPrefix(r.URL.Path, callPath)
		if r.Method == http.MethodGet && isCall && rest != "" && rest != a.ID && rest != g.ID && !strings.Contains(rest, "/") {
			first.Do(func() { awaitCause(t, applied) })
		}
		simAPI.ServeHTTP(w, r)
	}))
	t.Cleanup(platform.Close)

	signer, err := api.NewCallbackSigner([]byte("a-callback-secret-both-replicas-share-0000"))
	if err != nil {
		t.Fatal(err)
	}
	// replica starts a replica on the database with a Bandwidth client
	// whose callbacks go to publicURL, serving its API (callbacks
	// included) with receiver wrapping its client.
	replica := func(name, publicURL string, receiver func(*bandwidth.Client) api.CallbackReceiver) (*orchestrator.Engine, *httptest.Server, *postgres.Store) {
		store, err := postgres.Open(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(store.Close)
		hearOtherReplicas(store, new(wake.Tenants), nil, zerolog.Nop()) // as main does, first
		client, err := bandwidth.New(bandwidth.Config{BaseURL: platform.URL + basePath, UserID: userID, APIToken: token, APISecret: secret,
			Attempts: 3, RetryBase: time.Millisecond, MaxRateLimitWait: 5 * time.Second, PublicURL: publicURL,
			CallbackToken: func(id string) string { return signer.Token(api.TokenTransfer, orchestrator.DefaultTenant, id) },
			Metrics:       apiclient.NewMetrics(nil)})
		if err != nil {
			t.Fatal(err)
		}
		// The engine drives with the receiver where it is a provider
		// (noteWatch): a note about a transfer this replica drives is
		// applied to the adapter the transfer is driven with
		// (Engine.DrivenBy), not to the API's receiver, so a watch only
		// the API knew saw nothing of it.
		rcv := receiver(client)
		var p orchestrator.Provider = client
		if rp, ok := rcv.(orchestrator.Provider); ok {
			p = rp
		}
		reg := prometheus.NewRegistry()
		eng, err := orchestrator.New(orchestrator.Config{Owner: name, PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
			VisibilityWindow: 200 * time.Millisecond, VerifyTimeout: 500 * time.Millisecond},
			store, []orchestrator.Provider{p}, zerolog.Nop(), reg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = eng.Shutdown(ctx)
		})
		srv := httptest.NewUnstartedServer(nil)
		srv.Config.Handler = api.NewServer(api.Config{Idempotency: store, CallbackSigner: signer,
			Callbacks: map[string]api.CallbackReceiver{bandwidth.Name: rcv}, Forwarder: callbackForwarder(store)},
			eng, zerolog.Nop(), reg, reg)
		srv.Start()
		t.Cleanup(srv.Close)
		return eng, srv, store
	}
	plain := func(c *bandwidth.Client) api.CallbackReceiver { return c }
	_, srvB, storeB := replica("b", "", plain)
	engA, _, storeA := replica("a", srvB.URL, func(c *bandwidth.Client) api.CallbackReceiver { return noteWatch{c, applied} })
	awaitHearing(t, storeA.Listening)
	awaitHearing(t, storeB.Listening)

	tr, err := engA.Start(ctx, orchestrator.Request{Provider: bandwidth.Name, Mode: orchestrator.ModeAttended,
		Call: orchestrator.CallRef{CallID: a.ID, AgentCallID: g.ID}, Target: target, Completion: orchestrator.CompletionAuto,
		ConsultTimeout: time.Minute}, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	end, err := engA.Wait(wctx, tr.ID, func(*orchestrator.Transfer) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	if end.State != orchestrator.StateFailed || end.Outcome.Reason != orchestrator.ReasonBusy || !end.Outcome.Verified ||
		!end.Outcome.CallerRestored || end.Cleanup != nil {
		t.Fatalf("ended %s %+v cleanup %+v; want failed, busy, the caller restored, verified, nothing left to watch",
			end.State, end.Outcome, end.Cleanup)
	}
	// The platform's word, not transferd's.
	if c, ok := sim.Call(a.ID); !ok || c.Ended() {
		t.Errorf("the caller's call is %+v", c)
	}
}

// awaitCause waits until a note that gives a cause (the consult's
// hangup: "call/CAUSE") is applied; the notes of events that only name a
// call may come before it.
func awaitCause(t *testing.T, applied <-chan string) {
	deadline := time.After(10 * time.Second)
	for {
		select {
		case note := <-applied:
			if strings.Contains(note, "/") {
				return
			}
		case <-deadline:
			t.Error("no hangup cause reached replica a within 10s")
			return
		}
	}
}
