package main

import (
	"context"
	"net/http/httptest"
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

// A callback that reaches a replica not driving its transfer is answered
// once the driver has saved its note: the driver says so (notesSaved, on
// the store's notifications) and the waiting replica (hearNotesSaved)
// reads the record at once. Replica b, which hears every callback, polls
// the store only every quarter of an hour here, and waits up to a minute:
// only the driver's word answers its callbacks 204 in time for the
// platform not to post them again. Before the word, b read the store at
// once and then at its next poll (every 500 ms by default), two reads
// and about half a second for each callback.
func TestACallbackOnAnotherReplicaIsAnsweredOnTheDriversWord(t *testing.T) {
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
	platform := httptest.NewServer(sim.APIHandler())
	t.Cleanup(platform.Close)
	signer, err := api.NewCallbackSigner([]byte("a-callback-secret-both-replicas-share-0000"))
	if err != nil {
		t.Fatal(err)
	}
	replica := func(name, publicURL string, pollMax time.Duration) (*orchestrator.Engine, *httptest.Server, *postgres.Store) {
		store, err := postgres.Open(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(store.Close)
		hearOtherReplicas(store, new(wake.Tenants), nil, zerolog.Nop()) // as main does, first
		client, err := bandwidth.New(bandwidth.Config{BaseURL: platform.URL, UserID: userID, APIToken: token, APISecret: secret,
			Attempts: 3, RetryBase: time.Millisecond, MaxRateLimitWait: 5 * time.Second, PublicURL: publicURL,
			CallbackToken: func(id string) string { return signer.Token(api.TokenTransfer, orchestrator.DefaultTenant, id) },
			Metrics:       apiclient.NewMetrics(nil)})
		if err != nil {
			t.Fatal(err)
		}
		reg := prometheus.NewRegistry()
		eng, err := orchestrator.New(orchestrator.Config{Owner: name, PollInterval: time.Millisecond, PollMaxInterval: pollMax,
			VisibilityWindow: 200 * time.Millisecond, VerifyTimeout: 500 * time.Millisecond, NotesSaved: notesSaved(store, publicURL)},
			store, []orchestrator.Provider{client}, zerolog.Nop(), reg)
		if err != nil {
			t.Fatal(err)
		}
		hearNotesSaved(store, eng) // as main does
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = eng.Shutdown(ctx)
		})
		srv := httptest.NewUnstartedServer(nil)
		srv.Config.Handler = api.NewServer(api.Config{Idempotency: store, CallbackSigner: signer, CallbackKeepTimeout: time.Minute,
			Callbacks: map[string]api.CallbackReceiver{bandwidth.Name: client}, Forwarder: callbackForwarder(store)},
			eng, zerolog.Nop(), reg, reg)
		srv.Start()
		t.Cleanup(srv.Close)
		return eng, srv, store
	}
	_, srvB, storeB := replica("b", "", time.Hour)
	engA, _, storeA := replica("a", srvB.URL, 5*time.Millisecond)
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
	if end.State != orchestrator.StateFailed || end.Outcome.Reason != orchestrator.ReasonBusy {
		t.Fatalf("ended %s %+v; want failed, busy", end.State, end.Outcome)
	}
	if err := sim.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
	cbs := sim.Callbacks()
	if len(cbs) == 0 {
		t.Fatal("the platform posted no callback")
	}
	for _, cb := range cbs {
		if !cb.Delivered() || cb.Fallback || cb.Retry {
			t.Errorf("callback %s of %s answered %d (fallback %v): want each answered 2xx at its first post", cb.EventType, cb.CallID, cb.Status, cb.Fallback)
		}
	}
}

// announcer is a store that carries word of saved notes.
type announcer struct{ orchestrator.Store }

func (announcer) AnnounceNotesSaved(context.Context, string) error { return nil }
func (announcer) ListenNotesSaved(func(string))                    {}

// A replica with no public URL announces no saved notes: its legs send no
// callbacks, and its Bandwidth transfers' notes (the legs they made) would
// cost the database a notification apiece for no one.
func TestNotesAreAnnouncedOnlyWhereCallbacksCome(t *testing.T) {
	if notesSaved(announcer{}, "") != nil {
		t.Error("notes are announced with no public URL")
	}
	if notesSaved(announcer{}, "https://transferd.example.com") == nil {
		t.Error("notes are not announced with a public URL")
	}
}

// heldAnnouncer holds each word of saved notes until released, telling
// first of the word and of whether its context bounds it.
type heldAnnouncer struct {
	announcer
	told    chan string
	bounded chan bool
	release chan struct{}
}

func (a heldAnnouncer) AnnounceNotesSaved(ctx context.Context, id string) error {
	_, ok := ctx.Deadline()
	a.bounded <- ok
	a.told <- id
	<-a.release
	return nil
}

// The word of saved notes is sent off the engine's worker, which calls
// Config.NotesSaved after its save and must not wait for the database
// (a statement per word, a pool connection each), and within a bound:
// a word not sent costs a poll, no more.
func TestNotesSavedIsSentOffTheWorkerWithinABound(t *testing.T) {
	a := heldAnnouncer{told: make(chan string, 1), bounded: make(chan bool, 1), release: make(chan struct{})}
	defer close(a.release)
	tell := notesSaved(a, "https://transferd.example.com")
	returned := make(chan struct{})
	go func() {
		tell("tr_01M99000000000000000000000")
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(30 * time.Second):
		t.Fatal("NotesSaved waited for the word to be sent")
	}
	if !<-a.bounded {
		t.Error("the word is sent with no deadline")
	}
	if id := <-a.told; id != "tr_01M99000000000000000000000" {
		t.Errorf("the word told of %q", id)
	}
}
