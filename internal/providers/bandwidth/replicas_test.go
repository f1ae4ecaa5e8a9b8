package bandwidth_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/apiclient"
	"github.com/transferd/transferd/internal/providers/bandwidth"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

// Replicas that each have a TRANSFERD_PUBLIC_URL of their own (as the
// README advises for NetSapiens' subscription posts) send different
// callbackUrls. A process stops right after its announced transfer went
// out, before the B-leg's id is saved; the target answers, and on this
// platform the caller's call then reads "active" without transferTo, so
// only the leg's callbackUrl can name it. The transfer is resumed by a
// process whose public URL is another: it must still know the leg by the
// callbackUrl the first process sent, and complete, not take the caller
// for given back while it talks to the target. Before, it compared whole
// URLs, found no leg, and failed the transfer with the caller connected.
func TestAnnouncedLegFoundByAReplicaWithAnotherPublicURL(t *testing.T) {
	release, hit := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h := setup(t, options{callbacks: true, sim: bwsim.Config{ALegTransferFields: bwsim.ALegTransferFieldsNever,
		TransferredALegState: bwsim.StateActive},
		engine: func(c *orchestrator.Config) {
			shortWindows(c)
			c.Owner = "replica-1"
			c.CrashPoint = func(_ *orchestrator.Transfer, point string) {
				if point == "dial:effect" {
					once.Do(func() { close(hit) })
					<-release // stopped from here on
				}
			}
		}})
	// Registered after the harness, so run before its shutdown, which waits
	// for the stopped worker.
	t.Cleanup(func() { close(release) })
	h.sim.SetBehaviour(target, bwsim.Behaviour{Mode: bwsim.ModeManual})
	a := h.placeCall(t)
	req := announcedReq(a, target)
	req.ConsultTimeout = time.Minute
	tr := h.start(t, req)
	<-hit
	b := transferLeg(t, h, a)
	if err := h.sim.Answer(target); err != nil {
		t.Fatal(err)
	}

	// The second process: the same platform and store, another public URL
	// (never posted to here: the first process's calls name its own).
	client, err := bandwidth.New(bandwidth.Config{BaseURL: h.apiURL, UserID: userID, APIToken: apiToken, APISecret: apiSecret,
		Attempts: 3, RetryBase: time.Millisecond, MaxRateLimitWait: 5 * time.Second,
		PublicURL: "http://replica-2.invalid/transferd", Metrics: apiclient.NewMetrics(nil)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond, Owner: "replica-1"}
	shortWindows(&cfg)
	second, err := orchestrator.New(cfg, h.store, []orchestrator.Provider{client}, zerolog.New(h.logs).Level(zerolog.DebugLevel), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = second.Shutdown(ctx)
	})
	if err := second.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	end := h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	if end.Legs.Consult.CallID != b.ID {
		t.Errorf("the resumed transfer followed leg %q, want %s", end.Legs.Consult.CallID, b.ID)
	}
	assertTransferred(t, h, end, a, target)
	if n := len(h.requestsOf(bwsim.OpTransfer)); n != 1 {
		t.Errorf("transfers sent = %d, want 1", n)
	}
}
