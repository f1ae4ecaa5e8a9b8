package bandwidth_test

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/bandwidth"
	"github.com/transferd/transferd/internal/providers/bandwidth/bwsim"
)

func jsonEqualMaps(a, b map[string]any) bool { return reflect.DeepEqual(a, b) }

// requestSamples counts the request latency samples of one operation.
func requestSamples(t *testing.T, h *harness, op string) int {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() != "transferd_provider_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["provider"] == bandwidth.Name && labels["operation"] == op {
				n += int(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return n
}

// The API token and secret never appear in logs (debug level included),
// transfer records, errors or metrics (STYLE 19).
func TestCredentialsNeverLeak(t *testing.T) {
	h := setup(t, options{engine: briefWindow})
	a, g, _ := h.placeBridged(t)
	h.sim.InjectFault(bwsim.Fault{Operation: bwsim.OpCreateCall, Status: 401})
	tr := h.end(t, h.start(t, attendedReq(a, g, orchestrator.CompletionAuto)).ID)
	if tr.Outcome == nil || tr.Outcome.Reason != orchestrator.ReasonProviderError {
		t.Fatalf("outcome %+v", tr.Outcome)
	}
	record, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	var exposition strings.Builder
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		exposition.WriteString(mf.String())
	}
	var errText strings.Builder
	for _, s := range tr.Steps {
		errText.WriteString(s.Detail + "\n")
	}
	basic := base64.StdEncoding.EncodeToString([]byte(apiToken + ":" + apiSecret))
	texts := map[string]string{"logs": h.logs.String(), "transfer record": string(record),
		"metrics": exposition.String(), "step errors": errText.String()}
	for name, text := range texts {
		for _, secret := range []string{apiToken, apiSecret, apiSecret[:12], basic} {
			if strings.Contains(text, secret) {
				t.Errorf("a credential appears in %s", name)
			}
		}
	}
	if !strings.Contains(h.logs.String(), `"op":"create_call"`) || !strings.Contains(h.logs.String(), tr.ID) {
		t.Error("debug logs should show the requests, with the transfer id")
	}
	for _, r := range h.sim.Requests() {
		if !r.Authorization {
			t.Fatalf("request without credentials: %+v", r)
		}
	}
	// Nor do configuration errors.
	for _, cfg := range []bandwidth.Config{
		{BaseURL: "ftp://x", UserID: userID, APIToken: apiToken, APISecret: apiSecret},
		{BaseURL: "https://" + apiToken + ":" + apiSecret + "@api.example.com/v1", UserID: userID, APIToken: apiToken, APISecret: apiSecret},
		{UserID: "", APIToken: apiToken, APISecret: apiSecret},
		{UserID: userID, APIToken: apiToken, APISecret: apiSecret, PublicURL: "https://" + apiSecret + "@x.example/"},
	} {
		_, err := bandwidth.New(cfg)
		if err == nil {
			t.Fatalf("New(%+v) accepted a bad config", cfg.BaseURL)
		}
		if strings.Contains(err.Error(), apiToken) || strings.Contains(err.Error(), apiSecret) {
			t.Errorf("New's error leaks a credential: %v", err)
		}
	}
}

func TestNewDefaults(t *testing.T) {
	c, err := bandwidth.New(bandwidth.Config{UserID: userID, APIToken: "t", APISecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name() != "bandwidth" || c.Capabilities().Events {
		t.Errorf("name %q caps %+v", c.Name(), c.Capabilities())
	}
	c, err = bandwidth.New(bandwidth.Config{UserID: userID, APIToken: "t", APISecret: "s", PublicURL: "https://transferd.example.com/"})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Capabilities().Events {
		t.Error("a PublicURL brings events")
	}
}

func TestCapabilitiesAndFlow(t *testing.T) {
	c, err := bandwidth.New(bandwidth.Config{UserID: userID, APIToken: "t", APISecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	all := orchestrator.Capabilities{Attended: true, Announced: true, CallerID: true, Whisper: true, Diversion: true, Recording: true}
	if got := c.Capabilities(); got != all {
		t.Errorf("Capabilities = %+v", got)
	}
	if got := c.CapabilitiesFor(orchestrator.ModeAnnounced); got != all {
		t.Errorf("announced = %+v", got)
	}
	att := all
	att.Whisper, att.Diversion = false, false
	if got := c.CapabilitiesFor(orchestrator.ModeAttended); got != att {
		t.Errorf("attended = %+v", got)
	}
	if f := c.Flow(&orchestrator.Request{Mode: orchestrator.ModeAnnounced}); f != (orchestrator.Flow{}) {
		t.Errorf("announced flow = %+v", f)
	}
	if f := c.Flow(&orchestrator.Request{Mode: orchestrator.ModeAttended}); f != (orchestrator.Flow{Hold: true, Join: true, HangupAgent: true}) {
		t.Errorf("attended flow = %+v", f)
	}
}

func TestValidate(t *testing.T) {
	c, err := bandwidth.New(bandwidth.Config{UserID: userID, APIToken: "t", APISecret: "s"})
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	announced := func(edit func(*orchestrator.Request)) orchestrator.Request {
		r := orchestrator.Request{Mode: orchestrator.ModeAnnounced, Call: orchestrator.CallRef{CallID: "c-qbs5kwrsyx6wsdi"}, Target: "+19192223333"}
		if edit != nil {
			edit(&r)
		}
		return r
	}
	attended := func(edit func(*orchestrator.Request)) orchestrator.Request {
		r := orchestrator.Request{Mode: orchestrator.ModeAttended,
			Call: orchestrator.CallRef{CallID: "c-qbs5kwrsyx6wsdi", AgentCallID: "c-zan4g74pprsq"}, Target: "sip:agent@pbx.example.com"}
		if edit != nil {
			edit(&r)
		}
		return r
	}
	cases := []struct {
		name string
		req  orchestrator.Request
		bad  []string
	}{
		{"announced minimal", announced(nil), nil},
		{"attended minimal", attended(nil), nil},
		{"announced everything", announced(func(r *orchestrator.Request) {
			r.CallerID = "private"
			r.Whisper = &orchestrator.Whisper{Sentence: "hi", FileURL: "https://a.example/x.wav", Gender: "female", Locale: "en", Voice: "julie"}
			r.Diversion = &orchestrator.Diversion{Treatment: "stack", Reason: "do-not-disturb"}
			r.Recording = &orchestrator.Recording{Enabled: &yes, FileFormat: "mp3"}
		}), nil},
		{"page locales", announced(func(r *orchestrator.Request) {
			r.Whisper = &orchestrator.Whisper{Sentence: "ciao", Locale: "it_IT", Voice: "Luca"}
		}), nil},
		{"netsapiens fields", announced(func(r *orchestrator.Request) { r.Call.Domain, r.Call.User = "TEST", "1000" }),
			[]string{"call.domain", "call.user"}},
		{"no call id", announced(func(r *orchestrator.Request) { r.Call.CallID = "" }), []string{"call.call_id"}},
		{"call id shape", announced(func(r *orchestrator.Request) { r.Call.CallID = "1234/../x" }), []string{"call.call_id"}},
		{"agent in announced", announced(func(r *orchestrator.Request) { r.Call.AgentCallID = "c-x" }), []string{"call.agent_call_id"}},
		{"attended without agent", attended(func(r *orchestrator.Request) { r.Call.AgentCallID = "" }), []string{"call.agent_call_id"}},
		{"attended agent is caller", attended(func(r *orchestrator.Request) { r.Call.AgentCallID = r.Call.CallID }), []string{"call.agent_call_id"}},
		{"target", announced(func(r *orchestrator.Request) { r.Target = "1010" }), []string{"target"}},
		{"target leading zero", announced(func(r *orchestrator.Request) { r.Target = "+0123" }), []string{"target"}},
		{"caller id", announced(func(r *orchestrator.Request) { r.CallerID = "anonymous" }), []string{"caller_id"}},
		{"private caller id in attended", attended(func(r *orchestrator.Request) { r.CallerID = "private" }), []string{"caller_id"}},
		{"empty whisper", announced(func(r *orchestrator.Request) { r.Whisper = &orchestrator.Whisper{Voice: "Kate"} }), []string{"whisper"}},
		{"whisper fields", announced(func(r *orchestrator.Request) {
			r.Whisper = &orchestrator.Whisper{Sentence: "x", FileURL: "ftp://a/b", Gender: "robot", Locale: "pt_BR", Voice: "Hal"}
		}), []string{"whisper.file_url", "whisper.gender", "whisper.locale", "whisper.voice"}},
		{"relative whisper file", announced(func(r *orchestrator.Request) { r.Whisper = &orchestrator.Whisper{FileURL: "/x.wav"} }),
			[]string{"whisper.file_url"}},
		{"diversion treatment", announced(func(r *orchestrator.Request) { r.Diversion = &orchestrator.Diversion{Treatment: "copy"} }),
			[]string{"diversion.treatment"}},
		{"diversion reason without stack", announced(func(r *orchestrator.Request) {
			r.Diversion = &orchestrator.Diversion{Treatment: "propagate", Reason: "away"}
		}), []string{"diversion.reason"}},
		{"diversion reason unknown", announced(func(r *orchestrator.Request) {
			r.Diversion = &orchestrator.Diversion{Treatment: "stack", Reason: "vacation"}
		}), []string{"diversion.reason"}},
		{"diversion without treatment", announced(func(r *orchestrator.Request) { r.Diversion = &orchestrator.Diversion{Reason: "away"} }),
			[]string{"diversion.treatment", "diversion.reason"}},
		{"recording format", announced(func(r *orchestrator.Request) { r.Recording = &orchestrator.Recording{FileFormat: "ogg"} }),
			[]string{"recording.file_format"}},
		{"empty recording", announced(func(r *orchestrator.Request) { r.Recording = &orchestrator.Recording{} }), []string{"recording"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := c.Validate(&tc.req)
			if len(got) != len(tc.bad) {
				t.Fatalf("problems = %v, want fields %v", got, tc.bad)
			}
			for _, f := range tc.bad {
				if got[f] == "" {
					t.Errorf("no problem on %s: %v", f, got)
				}
			}
		})
	}
}

// A provider error's status, code and message are kept as evidence.
func TestEvidenceOfCatapultErrors(t *testing.T) {
	h := setup(t, options{engine: briefWindow})
	tr := h.end(t, h.start(t, announcedReq(bwsim.Call{ID: "c-nope"}, target)).ID)
	s := tr.Steps[0]
	if s.Evidence == nil || s.Evidence.Status != 404 || s.Evidence.Code != "call-not-found" || !strings.Contains(s.Evidence.Message, "c-nope") {
		t.Fatalf("evidence = %+v", s.Evidence)
	}
	if ev := tr.Outcome.Evidence; ev == nil || *ev != *s.Evidence {
		t.Errorf("outcome evidence = %+v", ev)
	}
}
