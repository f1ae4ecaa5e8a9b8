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
// callbackUrls; a process restarted in the middle of a rotation of the
// callback secret signs its tokens with another secret than the process
// before it. A process stops right after its announced transfer went out,
// before the B-leg's id is saved; the target answers, and on this platform
// the caller's call then reads "active" without transferTo, so only the
// leg's callbackUrl can name it. The transfer is resumed by a process with
// another public URL, or another signing secret that accepts the first's:
// it must still know the leg by the callbackUrl the first process sent,
// and complete, not take the caller for given back while it talks to the
// target. Before, it compared whole URLs, then only its own token, found
// no leg, and failed the transfer with the caller connected.
func TestAnnouncedLegFoundByAReplicaWithAnotherPublicURL(t *testing.T) {
	oldToken := func(id string) string { return "acme.old-mac-of-" + id }
	for _, c := range []struct {
		name           string
		first, resumer func(transferID string) string // CallbackToken
		accepted       func(transferID string) []string
		resumerURL     func(firstURL string) string
	}{
		{name: "another public URL", resumerURL: func(string) string { return "http://replica-2.invalid/transferd" }},
		{name: "a rotated secret", first: oldToken,
			resumer:    func(id string) string { return "acme.new-mac-of-" + id },
			accepted:   func(id string) []string { return []string{oldToken(id)} },
			resumerURL: func(first string) string { return first }},
	} {
		t.Run(c.name, func(t *testing.T) {
			resumeAnnounced(t, c.first, c.resumerURL, bandwidth.Config{CallbackToken: c.resumer, AcceptedCallbackTokens: c.accepted})
		})
	}
}

// resumeAnnounced stops a process after its announced transfer went out
// and resumes the transfer with a client configured as second, whose
// PublicURL is publicURL of the first process's.
func resumeAnnounced(t *testing.T, firstToken func(string) string, publicURL func(string) string, second bandwidth.Config) {
	h, hit := setupStoppingAt(t, options{callbacks: true, callbackToken: firstToken, sim: bwsim.Config{ALegTransferFields: bwsim.ALegTransferFieldsNever,
		TransferredALegState: bwsim.StateActive}}, "dial:effect")
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

	// The second process: the same platform and store, its own public URL
	// and tokens (never posted to here: the first process's calls name the
	// first's).
	second.PublicURL = publicURL(h.public)
	h.restart(t, second)
	end := h.waitSaved(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() && x.Cleanup == nil })
	if end.Legs.Consult.CallID != b.ID {
		t.Errorf("the resumed transfer followed leg %q, want %s", end.Legs.Consult.CallID, b.ID)
	}
	assertTransferred(t, h, end, a, target)
	if n := len(h.requestsOf(bwsim.OpTransfer)); n != 1 {
		t.Errorf("transfers sent = %d, want 1", n)
	}
}

// restart starts another process of replica-1 on the harness's platform
// and store, its client configured as second (the platform's address and
// credentials, and the retry settings, set here), and opens it: it
// resumes the transfers the first process left. Its callbacks are none of
// the first's. engine, if any, change its engine's configuration last.
func (h *harness) restart(t *testing.T, second bandwidth.Config, engine ...func(*orchestrator.Config)) {
	t.Helper()
	second.BaseURL, second.UserID, second.APIToken, second.APISecret = h.apiURL, userID, apiToken, apiSecret
	second.Attempts, second.RetryBase, second.MaxRateLimitWait = 3, time.Millisecond, 5*time.Second
	second.Metrics = apiclient.NewMetrics(nil)
	cfg := orchestrator.Config{PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond, Owner: "replica-1"}
	shortWindows(&cfg)
	for _, f := range engine {
		f(&cfg)
	}
	if second.VisibilityWindow == 0 {
		// The deployment's window, as the engine's (cmd/transferd).
		second.VisibilityWindow = cfg.VisibilityWindow
	}
	client, err := bandwidth.New(second)
	if err != nil {
		t.Fatal(err)
	}
	resumer, err := orchestrator.New(cfg, h.store, []orchestrator.Provider{client}, zerolog.New(h.logs).Level(zerolog.DebugLevel), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = resumer.Shutdown(ctx)
	})
	if err := resumer.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// setupStoppingAt sets up the harness for replica-1 (shortWindows) whose
// process stops at the crash point: its worker blocks there until the
// test ends, and stopped is closed when it got there.
func setupStoppingAt(t *testing.T, o options, point string) (h *harness, stopped <-chan struct{}) {
	t.Helper()
	release, hit := make(chan struct{}), make(chan struct{})
	var once sync.Once
	o.engine = func(c *orchestrator.Config) {
		shortWindows(c)
		c.Owner = "replica-1"
		c.CrashPoint = func(_ *orchestrator.Transfer, p string) {
			if p == point {
				once.Do(func() { close(hit) })
				<-release // stopped from here on
			}
		}
	}
	h = setup(t, o)
	// Registered after the harness, so run before its shutdown, which waits
	// for the stopped worker.
	t.Cleanup(func() { close(release) })
	return h, hit
}
