package netsapiens_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/orchestrator/orchestratortest"
	"github.com/transferd/transferd/internal/providers/apiclient"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
	"github.com/transferd/transferd/internal/store/memory"
)

const (
	apiKey   = "nsd_SeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCr1234abcd"
	basePath = "/pbx/ns-api/v2" // non-empty, so path joining is exercised
	domain   = "TEST"
)

// syncBuffer is a log sink safe for the engine's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type harness struct {
	sim    *nssim.Sim
	client *netsapiens.Client
	eng    *orchestrator.Engine
	logs   *syncBuffer
	reg    *prometheus.Registry
	store  *savedStore
}

// savedStore is the store the harness waits on for saves after a transfer
// ended (its cleanup).
type savedStore = orchestratortest.Saved

// waitSaved returns the stored transfer once cond holds of it.
func (h *harness) waitSaved(t *testing.T, id string, cond func(*orchestrator.Transfer) bool) *orchestrator.Transfer {
	t.Helper()
	return h.store.WaitSaved(t, id, cond)
}

func setup(t *testing.T, simCfg nssim.Config, tweak ...func(*orchestrator.Config)) *harness {
	t.Helper()
	return setupWrapped(t, simCfg, nil, tweak...)
}

// setupWrapped is setup with wrap (when not nil) around nssim's API
// handler: a middleware that plays a PBX behaviour nssim has no setting
// for.
func setupWrapped(t *testing.T, simCfg nssim.Config, wrap func(*nssim.Sim, http.Handler) http.Handler,
	tweak ...func(*orchestrator.Config)) *harness {
	t.Helper()
	sim, srv := newSimServer(t, simCfg, wrap)
	store := orchestratortest.NewSaved(memory.New())
	return newHarness(t, sim, srv, store, store, "", tweak...)
}

// newSimServer serves nssim's API, behind wrap when not nil, until the
// test ends.
func newSimServer(t *testing.T, simCfg nssim.Config, wrap func(*nssim.Sim, http.Handler) http.Handler) (*nssim.Sim, *httptest.Server) {
	t.Helper()
	if simCfg.APIKeys == nil {
		simCfg.APIKeys = map[string]nssim.KeyScope{apiKey: {Domain: domain}}
	}
	sim := nssim.New(simCfg)
	api := sim.APIHandler()
	if wrap != nil {
		api = wrap(sim, api)
	}
	mux := http.NewServeMux()
	mux.Handle(basePath+"/", http.StripPrefix(basePath, api))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { // after every engine's shutdown (cleanups run last first)
		srv.Close()
		sim.Close()
	})
	return sim, srv
}

// newHarness starts an engine (named owner, unless empty) on store,
// against the simulator srv serves; saved is the savedStore store wraps
// (or is).
func newHarness(t *testing.T, sim *nssim.Sim, srv *httptest.Server, store orchestrator.Store, saved *savedStore,
	owner string, tweak ...func(*orchestrator.Config)) *harness {
	t.Helper()
	return newHarnessWith(t, sim, srv, store, saved, owner, netsapiens.Config{}, tweak...)
}

// newHarnessWith is newHarness with the adapter's settings of nc (its
// URL, key, retries and metrics are the harness's).
func newHarnessWith(t *testing.T, sim *nssim.Sim, srv *httptest.Server, store orchestrator.Store, saved *savedStore,
	owner string, nc netsapiens.Config, tweak ...func(*orchestrator.Config)) *harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := orchestrator.Config{Owner: owner, PollInterval: time.Millisecond, PollMaxInterval: 5 * time.Millisecond,
		VerifyTimeout: 10 * time.Second, VisibilityWindow: 500 * time.Millisecond}
	for _, f := range tweak {
		f(&cfg)
	}
	nc.BaseURL, nc.APIKey, nc.RetryBase, nc.Metrics = srv.URL+basePath, apiKey, time.Millisecond, apiclient.NewMetrics(reg)
	if nc.VisibilityWindow == 0 {
		nc.VisibilityWindow = cfg.VisibilityWindow // as transferd wires it
	}
	if nc.StepTimeout == 0 {
		nc.StepTimeout = cfg.StepTimeout // zero: both take the default
	}
	client, err := netsapiens.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	eng, err := orchestrator.New(cfg, store, []orchestrator.Provider{client},
		zerolog.New(logs).Level(zerolog.DebugLevel), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = eng.Shutdown(ctx)
	})
	return &harness{sim: sim, client: client, eng: eng, logs: logs, reg: reg, store: saved}
}

func (h *harness) placeCall(t *testing.T) nssim.ActiveCall {
	t.Helper()
	ac, err := h.sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111"})
	if err != nil {
		t.Fatal(err)
	}
	return ac
}

func (h *harness) start(t *testing.T, completion orchestrator.Completion, timeout time.Duration) *orchestrator.Transfer {
	t.Helper()
	return h.startTo(t, "1010", completion, timeout)
}

func (h *harness) startTo(t *testing.T, target string, completion orchestrator.Completion, timeout time.Duration) *orchestrator.Transfer {
	t.Helper()
	tr, err := h.eng.Start(context.Background(), orchestrator.Request{Provider: netsapiens.Name,
		Call: orchestrator.CallRef{Domain: domain, User: "1000"}, Target: target,
		Completion: completion, ConsultTimeout: timeout}, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// wait returns the transfer once cond holds or it is terminal.
func (h *harness) wait(t *testing.T, id string, cond func(*orchestrator.Transfer) bool) *orchestrator.Transfer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := h.eng.Wait(ctx, id, cond)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func (h *harness) end(t *testing.T, id string) *orchestrator.Transfer {
	t.Helper()
	tr := h.wait(t, id, func(*orchestrator.Transfer) bool { return false })
	if !tr.State.Terminal() {
		t.Fatalf("transfer did not end: %s", tr.State)
	}
	return tr
}

// commands returns the requests that change something or are the
// guide's reads, dropping repeated polls.
func commands(reqs []nssim.Request) []string {
	var out []string
	for _, r := range reqs {
		line := r.Method + " " + r.Path
		if r.Method == http.MethodGet && len(out) > 0 && out[len(out)-1] == line {
			continue
		}
		out = append(out, line)
	}
	return out
}

func callRequestSchema(t *testing.T) *openapi3.Schema {
	t.Helper()
	data, err := os.ReadFile("testdata/netsapiens-api-v2-calls.openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		t.Fatal(err)
	}
	ref := doc.Components.Schemas["CallRequest"]
	if ref == nil || ref.Value == nil {
		t.Fatal("CallRequest schema missing from the official spec")
	}
	return ref.Value
}

func TestAutoTransferFollowsTheGuide(t *testing.T) {
	h := setup(t, nssim.Config{})
	orig := h.placeCall(t)
	tr := h.start(t, orchestrator.CompletionAuto, 0)
	tr = h.end(t, tr.ID)

	if tr.State != orchestrator.StateCompleted || tr.Outcome.Reason != orchestrator.ReasonTransferred {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	consultID := netsapiens.ConsultCallID(tr.ID)
	const user = "/domains/TEST/users/1000/calls"
	want := []string{
		"GET /domains/TEST/calls", // step 2: find the call
		// The request names no call_id, and the process has seen no page
		// longer than this one: the count says whether it is the whole
		// listing, where a second call of the agent's would be.
		"GET /domains/TEST/calls/count",
		"PATCH " + user + "/" + orig.TermCallID + "/hold", // step 3: hold with call-term-call-id
		"POST " + user,            // step 4: the consult call
		"GET /domains/TEST/calls", // step 5: find its call-session-id
		"PATCH " + user + "/" + orig.OrigCallID + "/transfer", // step 6: with call-orig-call-id
	}
	got := commands(h.sim.Requests())
	if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
		t.Fatalf("requests:\n got %q\nwant %q (then verification reads)", got, want)
	}
	for _, extra := range got[len(want):] {
		if !strings.HasPrefix(extra, "GET ") {
			t.Errorf("unexpected request after the transfer: %s", extra)
		}
	}

	var create, transfer nssim.Request
	for _, r := range h.sim.Requests() {
		switch {
		case r.Method == http.MethodPost:
			create = r
		case strings.HasSuffix(r.Path, "/transfer"):
			transfer = r
		}
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(create.Body), &body); err != nil {
		t.Fatal(err)
	}
	if err := callRequestSchema(t).VisitJSON(body); err != nil {
		t.Errorf("create body %s is not a valid CallRequest: %v", create.Body, err)
	}
	if body["call-id"] != consultID || body["call-term-user"] != "1010" || body["synchronous"] == nil {
		t.Errorf("create body = %s", create.Body)
	}
	var tb map[string]any
	if err := json.Unmarshal([]byte(transfer.Body), &tb); err != nil {
		t.Fatal(err)
	}
	wantBody := map[string]any{"hostname": orig.CoreServer, "call-destination-session-id": tr.Legs.Consult.SessionID}
	if len(tb) != 2 || tb["hostname"] != wantBody["hostname"] || tb["call-destination-session-id"] != wantBody["call-destination-session-id"] {
		t.Errorf("transfer body = %s, want exactly %v (never call-term-user)", transfer.Body, wantBody)
	}

	// The caller now talks to the target, and nobody is held.
	sessions := h.sim.Sessions(domain)
	if len(sessions) != 1 {
		t.Fatalf("sessions after transfer: %+v", sessions)
	}
	s := sessions[0]
	if s.OrigCallID != orig.OrigCallID || s.TermUser != "1010" || s.OrigInfo != "active" || s.TermInfo != "active" {
		t.Errorf("caller session after transfer: %+v", s)
	}
}

func TestManualWaitsInConsultingUntilComplete(t *testing.T) {
	h := setup(t, nssim.Config{})
	h.placeCall(t)
	tr := h.start(t, orchestrator.CompletionManual, 0)
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	if tr.State != orchestrator.StateConsulting {
		t.Fatalf("state = %s, want consulting", tr.State)
	}
	for _, r := range h.sim.Requests() {
		if strings.HasSuffix(r.Path, "/transfer") {
			t.Fatal("a manual transfer must not transfer before /complete")
		}
	}
	if _, err := h.eng.Complete(context.Background(), tr.ID); err != nil {
		t.Fatal(err)
	}
	if tr = h.end(t, tr.ID); tr.State != orchestrator.StateCompleted {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
}

// assertRestored checks the simulator: the caller talks to the agent
// again, not held, and no consult call is left.
func assertRestored(t *testing.T, h *harness, orig nssim.ActiveCall) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Unhold is applied asynchronously after its 202.
	if err := h.sim.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	sessions := h.sim.Sessions(domain)
	if len(sessions) != 1 {
		t.Fatalf("want only the caller's session, got %+v", sessions)
	}
	s := sessions[0]
	if s.SessionID != orig.SessionID || s.TermUser != "1000" || s.OrigInfo != "active" || s.TermInfo != "active" {
		t.Fatalf("caller not restored: %+v", s)
	}
}

func TestCancelHangsUpConsultAndUnholds(t *testing.T) {
	h := setup(t, nssim.Config{})
	orig := h.placeCall(t)
	tr := h.start(t, orchestrator.CompletionManual, 0)
	h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	if _, err := h.eng.Cancel(context.Background(), tr.ID); err != nil {
		t.Fatal(err)
	}
	tr = h.end(t, tr.ID)
	if tr.State != orchestrator.StateCancelled || tr.Outcome.Reason != orchestrator.ReasonCancelled || !tr.Outcome.CallerRestored {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	got := commands(h.sim.Requests())
	consult := "/domains/TEST/users/1000/calls/" + netsapiens.ConsultCallID(tr.ID)
	iDel := slices.Index(got, "DELETE "+consult)
	iUnhold := slices.Index(got, "PATCH /domains/TEST/users/1000/calls/"+orig.TermCallID+"/unhold")
	if iDel < 0 || iUnhold < 0 || iDel > iUnhold {
		t.Fatalf("want the consult disconnected, then the caller unheld; got %q", got)
	}
	assertRestored(t, h, orig)
}

func TestConsultNotAnsweredInTime(t *testing.T) {
	h := setup(t, nssim.Config{})
	orig := h.placeCall(t)
	h.sim.SetBehaviour(domain, "1010", nssim.Behaviour{Mode: "never"})
	tr := h.start(t, orchestrator.CompletionAuto, time.Second)
	tr = h.end(t, tr.ID)
	if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonNoAnswer || !tr.Outcome.CallerRestored {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	got := commands(h.sim.Requests())
	// Rejected by our call-id without a lookup: a consult never seen
	// answered is ended as a ringing call is (see
	// TestARingingConsultIsEndedWhateverDeleteDoesToARingingCall).
	if !slices.Contains(got, "DELETE /domains/TEST/users/1000/calls/"+netsapiens.ConsultCallID(tr.ID)+"/reject") {
		t.Errorf("the ringing consult must be rejected: %q", got)
	}
	if n := len(h.sim.Sessions(domain)); n != 1 {
		t.Errorf("%d sessions live, want only the caller's", n)
	}
	assertRestored(t, h, orig)
}

func TestCallMissingOrNotActiveChangesNothing(t *testing.T) {
	t.Run("not found", func(t *testing.T) {
		h := setup(t, nssim.Config{})
		tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
		if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonCallNotFound {
			t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
		}
		for _, r := range h.sim.Requests() {
			if r.Method != http.MethodGet {
				t.Errorf("changed something: %s %s", r.Method, r.Path)
			}
		}
	})
	t.Run("not active", func(t *testing.T) {
		h := setup(t, nssim.Config{})
		h.sim.SetBehaviour(domain, "1000", nssim.Behaviour{Mode: nssim.ModeManual})
		// An inbound call still ringing at the agent is not active.
		if _, err := h.sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000", From: "15555555555", To: "11111111111", Ring: true}); err != nil {
			t.Fatal(err)
		}
		tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
		if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonCallNotActive || !tr.Outcome.CallerRestored {
			t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
		}
		for _, r := range h.sim.Requests() {
			if r.Method != http.MethodGet {
				t.Errorf("changed something: %s %s", r.Method, r.Path)
			}
		}
	})
}

func TestFailureAtEachStepCompensates(t *testing.T) {
	cases := []struct {
		name     string
		fault    nssim.Fault
		reason   orchestrator.Reason
		restored bool
		undos    []string // compensation steps, in order
	}{
		{"list unavailable", nssim.Fault{Operation: "list", Status: 503}, orchestrator.ReasonProviderUnavailable, true, nil},
		{"list unauthorized", nssim.Fault{Operation: "list", Status: 401, Message: "Unauthorized"}, orchestrator.ReasonProviderError, true, nil},
		{"hold unavailable", nssim.Fault{Operation: "hold", Status: 503}, orchestrator.ReasonProviderUnavailable, true, []string{"unhold"}},
		{"hold refused", nssim.Fault{Operation: "hold", Status: 400, Message: "Bad hold"}, orchestrator.ReasonProviderError, true, []string{"unhold"}},
		{"create refused", nssim.Fault{Operation: "create", Status: 400, Message: "Missing call-term-user"}, orchestrator.ReasonProviderError, true, []string{"hangup_consult", "unhold"}},
		{"transfer refused", nssim.Fault{Operation: "transfer", Status: 400, Message: "Bad transfer"}, orchestrator.ReasonProviderError, true, []string{"hangup_consult", "unhold"}},
		{"transfer unavailable", nssim.Fault{Operation: "transfer", Status: 503}, orchestrator.ReasonProviderUnavailable, true, []string{"hangup_consult", "unhold"}},
	}
	// The step each operation's fault fails.
	steps := map[string]string{"list": orchestrator.StepLocate, "hold": orchestrator.StepHold, "transfer": orchestrator.StepTransfer}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A step the provider cannot be reached for is tried again
			// until the step timeout has passed since its first failure:
			// the clock moves past it after each failure, instead of the
			// test waiting it out.
			clock := &aheadClock{}
			sim, srv := newSimServer(t, nssim.Config{}, nil)
			store := orchestratortest.NewSaved(memory.New())
			h := newHarnessWith(t, sim, srv, store, store, "", netsapiens.Config{Now: clock.Now}, func(c *orchestrator.Config) {
				// A join whose result is unknown is verified before it is
				// undone; keep that wait short here.
				c.VerifyTimeout = 300 * time.Millisecond
				c.Clock = clock.Now
				if tc.fault.Status == http.StatusServiceUnavailable {
					c.CrashPoint = clock.lapseAfter(steps[tc.fault.Operation], orchestrator.DefaultStepTimeout)
				}
			})
			orig := h.placeCall(t)
			h.sim.InjectFault(tc.fault)
			tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
			if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != tc.reason || tr.Outcome.CallerRestored != tc.restored {
				t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
			}
			if ev := tr.Outcome.Evidence; ev == nil || ev.Status != tc.fault.Status {
				t.Errorf("evidence = %+v, want the provider's status %d", ev, tc.fault.Status)
			}
			var undos []string
			seen := map[string]bool{}
			for _, s := range tr.Steps {
				if (s.Name == "unhold" || s.Name == "hangup_consult") && !seen[s.Name] {
					seen[s.Name] = true
					undos = append(undos, s.Name)
				}
			}
			if !slices.Equal(undos, tc.undos) {
				t.Errorf("compensations = %v, want %v", undos, tc.undos)
			}
			h.sim.ClearFaults()
			if tc.undos != nil {
				assertRestored(t, h, orig)
			}
		})
	}
}

func TestTransferWithoutEffectIsCompensated(t *testing.T) {
	// The PBX accepts every transfer (202) and does nothing, like the
	// silent failures the reference notes describe (a join naming a core
	// server the PBX does not want is one; its second form is covered by
	// TestJoinNamesTheCoreServerThePBXWants). Verification must notice.
	h := setup(t, nssim.Config{},
		func(c *orchestrator.Config) { c.VerifyTimeout = 300 * time.Millisecond })
	orig := h.placeCall(t)
	h.sim.InjectFault(nssim.Fault{Operation: nssim.OpTransfer, Status: http.StatusAccepted})
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
	if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonProviderError || !tr.Outcome.CallerRestored {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	assertRestored(t, h, orig)
}

func TestLostCreateResponseDialsOnce(t *testing.T) {
	h := setup(t, nssim.Config{})
	h.placeCall(t)
	h.sim.InjectFault(nssim.Fault{Operation: "create", Drop: true, Apply: true, Count: 1})
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
	if tr.State != orchestrator.StateCompleted {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	posts := 0
	for _, r := range h.sim.Requests() {
		if r.Method == http.MethodPost {
			posts++
		}
	}
	if posts != 1 {
		t.Errorf("consult calls created = %d, want 1", posts)
	}
}

func TestHangupsDuringConsult(t *testing.T) {
	t.Run("target hangs up", func(t *testing.T) {
		h := setup(t, nssim.Config{})
		orig := h.placeCall(t)
		tr := h.start(t, orchestrator.CompletionManual, 0)
		tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered && x.Legs.Consult.SessionID != "" })
		if err := h.sim.Hangup(tr.Legs.Consult.SessionID, "term"); err != nil {
			t.Fatal(err)
		}
		tr = h.end(t, tr.ID)
		if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonTargetHungUp || !tr.Outcome.CallerRestored {
			t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
		}
		assertRestored(t, h, orig)
	})
	// The caller's call, gone from the listing, is read by its id under the
	// agent's user, which a PBX may answer 404 however the caller is
	// (nssim.Config.ReadOtherLeg): a caller who hung up is seen gone on
	// both sides (the agent's own leg ended with the call).
	for _, other := range []string{nssim.OtherLegFound, nssim.OtherLegNotFound} {
		t.Run("caller hangs up/read other leg "+other, func(t *testing.T) { callerHangsUpDuringConsult(t, other) })
	}
}

func callerHangsUpDuringConsult(t *testing.T, readOtherLeg string) {
	h := setup(t, nssim.Config{ReadOtherLeg: readOtherLeg})
	orig := h.placeCall(t)
	tr := h.start(t, orchestrator.CompletionManual, 0)
	tr = h.wait(t, tr.ID, func(x *orchestrator.Transfer) bool { return x.Answered })
	if err := h.sim.Hangup(orig.SessionID, "orig"); err != nil {
		t.Fatal(err)
	}
	tr = h.end(t, tr.ID)
	if tr.State != orchestrator.StateFailed || tr.Outcome.Reason != orchestrator.ReasonCallerHungUp || tr.Outcome.CallerRestored {
		t.Fatalf("state %s outcome %+v", tr.State, tr.Outcome)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.sim.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if s := h.sim.Sessions(domain); len(s) != 0 {
		t.Errorf("the consult call must be hung up too: %+v", s)
	}
}

func TestAPIKeyNeverLeaks(t *testing.T) {
	h := setup(t, nssim.Config{})
	h.placeCall(t)
	h.sim.InjectFault(nssim.Fault{Operation: "hold", Status: 401, Message: "Unauthorized"})
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
	record, _ := json.Marshal(tr)
	var exposition strings.Builder
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		exposition.WriteString(mf.String())
	}
	for name, text := range map[string]string{"logs": h.logs.String(), "transfer record": string(record), "metrics": exposition.String()} {
		if strings.Contains(text, apiKey) || strings.Contains(text, apiKey[:20]) {
			t.Errorf("the API key appears in %s", name)
		}
	}
	if !strings.Contains(h.logs.String(), tr.ID) {
		t.Error("logs should carry the transfer id")
	}
}

func TestEveryTransferLogLineCarriesTheTransferID(t *testing.T) {
	h := setup(t, nssim.Config{})
	h.placeCall(t)
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
	lines := strings.Split(strings.TrimSpace(h.logs.String()), "\n")
	if len(lines) < 5 {
		t.Fatalf("too few log lines: %d", len(lines))
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %s", l)
		}
		if m["transfer_id"] != tr.ID {
			t.Errorf("line without transfer_id: %s", l)
		}
	}
}

func TestMetricsShowRequestLatencyByOperation(t *testing.T) {
	h := setup(t, nssim.Config{})
	h.placeCall(t)
	h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
	for _, op := range []string{"list_calls", "hold", "create_call", "transfer"} {
		n := 0
		mfs, _ := h.reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() != "transferd_provider_request_duration_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, lp := range m.GetLabel() {
					labels[lp.GetName()] = lp.GetValue()
				}
				if labels["provider"] == "netsapiens" && labels["operation"] == op {
					n += int(m.GetHistogram().GetSampleCount())
				}
			}
		}
		if n == 0 {
			t.Errorf("no latency samples for operation %s", op)
		}
	}
	if got := testutil.ToFloat64(mustCounter(t, h.reg, "transferd_transfers_total", "completed", "transferred")); got != 1 {
		t.Errorf("transferd_transfers_total{outcome=completed} = %v", got)
	}
}

// mustCounter finds one counter sample by outcome and reason.
func mustCounter(t *testing.T, reg *prometheus.Registry, name, outcome, reason string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["outcome"] == outcome && labels["reason"] == reason {
				return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"},
					func() float64 { return m.GetCounter().GetValue() })
			}
		}
	}
	t.Fatalf("no %s{outcome=%q,reason=%q}", name, outcome, reason)
	return nil
}

// A restart can repeat the dial before the PBX has applied the first
// create (it answers 202 and creates later): the second create finds the
// call-id taken, and that is the same consult call, not a failure.
func TestRepeatedDialBeforeThePBXCreatedTheCall(t *testing.T) {
	sim := nssim.New(nssim.Config{APIKeys: map[string]nssim.KeyScope{apiKey: {Domain: domain}}, ActionDelay: time.Hour})
	t.Cleanup(sim.Close)
	mux := http.NewServeMux()
	mux.Handle(basePath+"/", http.StripPrefix(basePath, sim.APIHandler()))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	client, err := netsapiens.New(netsapiens.Config{BaseURL: srv.URL + basePath, APIKey: apiKey})
	if err != nil {
		t.Fatal(err)
	}
	tr := &orchestrator.Transfer{ID: orchestrator.NewID(time.Now()), Request: orchestrator.Request{Provider: netsapiens.Name,
		Call: orchestrator.CallRef{Domain: domain, User: "1000"}, Target: "1010"}}
	for attempt := 1; attempt <= 2; attempt++ {
		tr.Steps = append(tr.Steps, orchestrator.Step{Name: orchestrator.StepDial, Status: orchestrator.StepStarted})
		leg, err := client.Dial(context.Background(), tr)
		if err != nil || leg.CallID != netsapiens.ConsultCallID(tr.ID) {
			t.Fatalf("attempt %d: leg %+v, err %v", attempt, leg, err)
		}
	}
	posts := 0
	for _, r := range sim.Requests() {
		if r.Method == http.MethodPost {
			posts++
			if posts == 2 && r.Status != http.StatusConflict {
				t.Errorf("the simulator answered the repeat %d, want 409 (call-id taken)", r.Status)
			}
		}
	}
	if posts != 2 {
		t.Errorf("creates sent = %d, want 2 (the first, then one the PBX refused)", posts)
	}
}

// A hold whose first answer was lost after the PBX applied it, and whose
// retry the PBX refused, took: the refusal speaks for the retry only. Taken
// for "hold refused", the transfer was given up (failed, the caller given
// back) although nothing had gone wrong.
func TestAHoldRefusedAfterItsAnswerWasLostIsNotTakenForRefused(t *testing.T) {
	h := setup(t, nssim.Config{}, func(c *orchestrator.Config) { c.VerifyTimeout = 300 * time.Millisecond })
	h.placeCall(t)
	h.sim.InjectFault(nssim.Fault{Operation: "hold", Drop: true, Apply: true, Count: 1})
	h.sim.InjectFault(nssim.Fault{Operation: "hold", Status: 400, Message: "Call already on hold", Count: 1})
	tr := h.end(t, h.start(t, orchestrator.CompletionAuto, 0).ID)
	if tr.State != orchestrator.StateCompleted {
		t.Fatalf("state %s outcome %+v, want completed", tr.State, tr.Outcome)
	}
	holds := 0
	for _, r := range h.sim.Requests() {
		if strings.HasSuffix(r.Path, "/hold") {
			holds++
		}
	}
	if holds < 2 {
		t.Errorf("holds sent = %d: the retry the test is about never happened", holds)
	}
}
