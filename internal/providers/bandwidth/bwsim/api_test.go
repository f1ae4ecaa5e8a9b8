package bwsim

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAuth(t *testing.T) {
	e := newEnv(t, Config{})
	for _, creds := range [][2]string{{"", ""}, {testToken, "wrong"}, {"wrong", testSecret}} {
		r := e.sendAuth(http.MethodGet, callsPath, "", creds[0], creds[1])
		b := e.wantError(r, http.StatusUnauthorized, "unauthorized", "")
		if b.Category != "authentication" || b.Message == "" {
			t.Errorf("401 body = %+v", b)
		}
		if r.header.Get("WWW-Authenticate") == "" {
			t.Error("401 without WWW-Authenticate")
		}
	}
	for _, req := range e.sim.Requests() {
		if req.Status != http.StatusUnauthorized {
			t.Errorf("recorded status %d", req.Status)
		}
	}
	reqs := e.sim.Requests()
	if len(reqs) != 3 || reqs[0].Authorization || !reqs[1].Authorization {
		t.Errorf("recorded = %+v", reqs)
	}

	// Another user id.
	e.wantError(e.send(http.MethodGet, "/users/u-other/calls", ""), http.StatusForbidden, "user-access-denied", "")

	// No credentials configured: anything goes.
	open := newEnvRaw(t, Config{})
	open.wantStatus(open.sendAuth(http.MethodGet, callsPath, "", "", ""), http.StatusOK)
	open.wantStatus(open.sendAuth(http.MethodGet, callsPath, "", "any", "thing"), http.StatusOK)
}

func TestRequestsNeverStoreCredentials(t *testing.T) {
	e := newEnv(t, Config{})
	a := e.inbound()
	e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring","transferTo":"`+target+`"}`)
	e.sendAuth(http.MethodGet, callsPath, "", testToken, "bad-secret")
	r := e.control(http.MethodGet, "/requests", "")
	e.wantStatus(r, http.StatusOK)
	for _, secret := range []string{testToken, testSecret, "bad-secret"} {
		if strings.Contains(string(r.body), secret) {
			t.Errorf("recorded requests contain %q", secret)
		}
	}
}

func TestErrorDetails(t *testing.T) {
	e := newEnv(t, Config{})
	b := e.wantError(e.send(http.MethodPost, callPath("c-xyz"), `{"state":"completed"}`), http.StatusNotFound, "call-not-found", "")
	want := map[string]string{"requestPath": "users/u-sim/calls/c-xyz", "requestMethod": "POST", "remoteAddress": "127.0.0.1"}
	if len(b.Details) != 3 {
		t.Fatalf("details = %+v", b.Details)
	}
	for i, name := range []string{"requestPath", "requestMethod", "remoteAddress"} {
		if d := b.Details[i]; d.Name != name || d.Value != want[name] {
			t.Errorf("detail %d = %+v, want %s=%s", i, d, name, want[name])
		}
	}
}

func TestLocationForms(t *testing.T) {
	t.Run("absolute derived from the mount", func(t *testing.T) {
		e := newEnv(t, Config{})
		r := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`"}`)
		if want := e.srv.URL + mount + callPath(r.id()); r.location() != want {
			t.Errorf("Location = %q, want %q", r.location(), want)
		}
	})
	t.Run("absolute from BaseURL", func(t *testing.T) {
		e := newEnv(t, Config{BaseURL: "https://api.example.test/v1/"})
		r := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`"}`)
		if want := "https://api.example.test/v1" + callPath(r.id()); r.location() != want {
			t.Errorf("Location = %q, want %q", r.location(), want)
		}
		if m := e.getCall(r.id()); m["events"] != "https://api.example.test/v1"+callPath(r.id())+"/events" {
			t.Errorf("events URL = %v", m["events"])
		}
	})
	t.Run("relative", func(t *testing.T) {
		e := newEnv(t, Config{RelativeLocation: true})
		r := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`"}`)
		if want := mount + callPath(r.id()); r.location() != want {
			t.Errorf("Location = %q, want %q", r.location(), want)
		}
		a := e.inbound()
		r = e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring","transferTo":"`+target+`"}`)
		if want := mount + callPath(r.id()); r.location() != want {
			t.Errorf("transfer Location = %q, want %q", r.location(), want)
		}
	})
	t.Run("relative with the docs' /v1 base", func(t *testing.T) {
		e := newEnv(t, Config{RelativeLocation: true})
		e.sim.SetBaseURL("http://127.0.0.1:9/v1")
		r := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`"}`)
		if want := "/v1" + callPath(r.id()); r.location() != want {
			t.Errorf("Location = %q, want %q", r.location(), want)
		}
	})
}

func TestCallRateLimit(t *testing.T) {
	clock := newFakeClock()
	e := newEnv(t, Config{CallRateLimit: 2, Now: clock.Now})
	body := `{"from":"` + ownedMain + `","to":"` + target + `"}`
	e.wantStatus(e.send(http.MethodPost, callsPath, body), http.StatusCreated)
	e.wantStatus(e.send(http.MethodPost, callsPath, body), http.StatusCreated)
	b := e.wantError(e.send(http.MethodPost, callsPath, body), http.StatusForbidden, "call-rate-limit",
		"You can create 2 calls per 1 seconds, calculated as the average over 1 seconds. Your rate is: 3")
	if b.Category != "limit" {
		t.Errorf("category = %q", b.Category)
	}
	// Other requests are not limited by the call limit.
	e.wantStatus(e.send(http.MethodGet, callsPath, ""), http.StatusOK)
	clock.Advance(1001 * time.Millisecond)
	e.wantStatus(e.send(http.MethodPost, callsPath, body), http.StatusCreated)
	if n := len(e.sim.Calls()); n != 3 {
		t.Errorf("%d calls, want 3", n)
	}
}

func TestRequestRateLimit(t *testing.T) {
	clock := newFakeClock()
	e := newEnv(t, Config{RequestRateLimit: 2, Now: clock.Now})
	e.wantStatus(e.send(http.MethodGet, callsPath, ""), http.StatusOK)
	clock.Advance(100 * time.Millisecond)
	e.wantStatus(e.send(http.MethodGet, bridgesPath, ""), http.StatusOK)
	r := e.send(http.MethodGet, callsPath, "")
	b := e.wantError(r, http.StatusTooManyRequests, "rate-limit-reached", "")
	want := strconv.FormatInt(newFakeClock().Now().Add(time.Second).UnixMilli(), 10)
	if got := r.header.Get("X-RateLimit-Reset"); got != want {
		t.Errorf("X-RateLimit-Reset = %q, want %q", got, want)
	}
	if b.Category != "too-many-requests" || len(b.Details) == 0 || b.Details[0].Name != "rateLimitResetTime" || b.Details[0].Value != want {
		t.Errorf("429 body = %+v", b)
	}
	clock.Advance(901 * time.Millisecond) // the first request left the window
	e.wantStatus(e.send(http.MethodGet, callsPath, ""), http.StatusOK)
}

func TestFaults(t *testing.T) {
	t.Run("status with the operation's default error", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.sim.InjectFault(Fault{Operation: OpTransfer, Status: http.StatusServiceUnavailable})
		a := e.inbound()
		e.wantError(e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring","transferTo":"`+target+`"}`),
			http.StatusServiceUnavailable, "call-transfer-error", "Call `"+a.ID+"` could not be transferred to `"+target+"`")
		if len(e.sim.Calls()) != 1 || e.call(a.ID).State != StateActive {
			t.Error("a fault without Apply must change nothing")
		}
		// Other updates are a different operation.
		e.wantStatus(e.send(http.MethodPost, callPath(a.ID), `{"tag":"x"}`), http.StatusOK)
	})
	t.Run("count", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.sim.InjectFault(Fault{Operation: OpGetCall, Status: http.StatusConflict, Code: "call-update-conflict", Category: "conflict", Message: "busy", Count: 2})
		a := e.inbound()
		for range 2 {
			e.wantError(e.send(http.MethodGet, callPath(a.ID), ""), http.StatusConflict, "call-update-conflict", "busy")
		}
		e.wantStatus(e.send(http.MethodGet, callPath(a.ID), ""), http.StatusOK)
		if len(e.sim.Faults()) != 0 {
			t.Error("used-up fault still listed")
		}
	})
	t.Run("drop", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.sim.InjectFault(Fault{Operation: OpCreateCall, Drop: true, Count: 1})
		req, _ := http.NewRequestWithContext(e.ctx, http.MethodPost, e.srv.URL+mount+callsPath,
			strings.NewReader(`{"from":"`+ownedMain+`","to":"`+target+`"}`))
		req.SetBasicAuth(testToken, testSecret)
		res, err := e.srv.Client().Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
			t.Fatalf("dropped request answered %d", res.StatusCode)
		}
		if len(e.sim.Calls()) != 0 {
			t.Error("dropped request without Apply created a call")
		}
		reqs := e.sim.Requests()
		if len(reqs) != 1 || !reqs[0].Dropped || reqs[0].Status != 0 {
			t.Errorf("recorded %+v", reqs)
		}
	})
	t.Run("apply then drop: a lost reply", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.sim.InjectFault(Fault{Operation: OpTransfer, Drop: true, Apply: true, Count: 1})
		a := e.inbound()
		req, _ := http.NewRequestWithContext(e.ctx, http.MethodPost, e.srv.URL+mount+callPath(a.ID),
			strings.NewReader(`{"state":"transferring","transferTo":"`+target+`"}`))
		req.SetBasicAuth(testToken, testSecret)
		if res, err := e.srv.Client().Do(req); err == nil {
			_ = res.Body.Close()
			t.Fatal("dropped request answered")
		}
		if c := e.call(a.ID); c.State != StateTransferring || c.TransferCallID == "" {
			t.Errorf("applied transfer did not happen: %+v", c)
		}
	})
	t.Run("apply with status", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.sim.InjectFault(Fault{Operation: OpUpdateCall, Status: http.StatusInternalServerError, Apply: true})
		a := e.inbound()
		r := e.send(http.MethodPost, callPath(a.ID), `{"state":"completed"}`)
		e.wantError(r, http.StatusInternalServerError, "internal-server-error", "")
		if got := e.call(a.ID).State; got != StateCompleted {
			t.Errorf("state = %q, want completed (applied)", got)
		}
	})
	t.Run("429 with reset, any operation, clear", func(t *testing.T) {
		clock := newFakeClock()
		e := newEnv(t, Config{Now: clock.Now})
		e.sim.InjectFault(Fault{Operation: OpAny, Status: http.StatusTooManyRequests, RateLimitReset: 3 * time.Second})
		r := e.send(http.MethodGet, bridgesPath, "")
		e.wantError(r, http.StatusTooManyRequests, "rate-limit-reached", "")
		if got, want := r.header.Get("X-RateLimit-Reset"), strconv.FormatInt(clock.Now().Add(3*time.Second).UnixMilli(), 10); got != want {
			t.Errorf("X-RateLimit-Reset = %q, want %q", got, want)
		}
		e.sim.ClearFaults()
		e.wantStatus(e.send(http.MethodGet, bridgesPath, ""), http.StatusOK)
	})
	t.Run("latency", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.sim.InjectFault(Fault{Operation: OpListCalls, Latency: time.Millisecond, Count: 1})
		e.wantStatus(e.send(http.MethodGet, callsPath, ""), http.StatusOK)
	})
}

func TestCallbacks(t *testing.T) {
	rc := newReceiver(t, http.StatusOK)
	clock := newFakeClock()
	e := newEnv(t, Config{Now: clock.Now})
	e.sim.SetBehaviour(target, Behaviour{Mode: ModeManual})
	r := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`","callbackUrl":"`+rc.srv.URL+`/cb","tag":"my-tag"}`)
	e.wantStatus(r, http.StatusCreated)
	id := r.id()
	if err := e.sim.Answer(target); err != nil {
		t.Fatal(err)
	}
	e.wantStatus(e.send(http.MethodPost, callPath(id), `{"state":"completed"}`), http.StatusOK)
	e.idle()

	got := rc.events()
	if len(got) != 2 {
		t.Fatalf("received %d callbacks: %+v", len(got), got)
	}
	for i, want := range []map[string]any{
		{"eventType": "answer", "callState": "active"},
		{"eventType": "hangup", "callState": "completed", "cause": CauseNormalClearing},
	} {
		ev := got[i]
		if ev.method != http.MethodPost || ev.header.Get("Content-Type") != "application/json; charset=utf-8" ||
			ev.header.Get("User-Agent") != "BandwidthAPI/v1 (sim)" {
			t.Errorf("callback %d: %s %v", i, ev.method, ev.header)
		}
		for k, v := range want {
			if ev.event[k] != v {
				t.Errorf("callback %d: %s = %v, want %v", i, k, ev.event[k], v)
			}
		}
		common := map[string]any{
			"callId": id, "callUri": e.srv.URL + mount + callPath(id), "from": ownedMain, "to": target,
			"tag": "my-tag", "time": "2024-03-01T12:00:00.000Z",
		}
		for k, v := range common {
			if ev.event[k] != v {
				t.Errorf("callback %d: %s = %v, want %v", i, k, ev.event[k], v)
			}
		}
	}
	cbs := e.sim.Callbacks()
	if len(cbs) != 2 || !cbs[0].Delivered() || cbs[0].EventType != "answer" || cbs[1].Status != http.StatusOK {
		t.Errorf("Callbacks() = %+v", cbs)
	}
}

func TestTransferCallbacksGoToTheirURLs(t *testing.T) {
	aURL := newReceiver(t, http.StatusOK)
	bURL := newReceiver(t, http.StatusOK)
	e := newEnv(t, Config{})
	a, err := e.sim.PlaceCall(InboundCall{From: customer, To: ownedMain, CallbackURL: aURL.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	r := e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring","transferTo":"`+target+`","callbackUrl":"`+bURL.srv.URL+`"}`)
	e.wantStatus(r, http.StatusCreated)
	e.idle()
	if err := e.sim.Hangup(r.id()); err != nil {
		t.Fatal(err)
	}
	e.idle()
	if got := strings.Join(aURL.eventTypes(a.ID), ","); got != "incomingcall,answer,hangup" {
		t.Errorf("A events = %s", got)
	}
	if got := strings.Join(bURL.eventTypes(r.id()), ","); got != "answer,hangup" {
		t.Errorf("B events = %s", got)
	}
	// No transferStart/transferComplete for REST transfers.
	for _, rc := range []*receiver{aURL, bURL} {
		for _, ev := range rc.events() {
			if strings.HasPrefix(ev.event["eventType"].(string), "transfer") {
				t.Errorf("unexpected %v", ev.event)
			}
		}
	}
}

func TestTransferLegCallbackDefault(t *testing.T) {
	for _, tt := range []struct {
		policy string
		want   string
	}{{"", "answer"}, {TransferLegCallbackNone, ""}} {
		rc := newReceiver(t, http.StatusOK)
		e := newEnv(t, Config{TransferLegCallback: tt.policy})
		a, _ := e.sim.PlaceCall(InboundCall{From: customer, To: ownedMain, CallbackURL: rc.srv.URL})
		r := e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring","transferTo":"`+target+`"}`)
		e.wantStatus(r, http.StatusCreated)
		e.idle()
		if got := strings.Join(rc.eventTypes(r.id()), ","); got != tt.want {
			t.Errorf("policy %q: B events at the A-leg URL = %q, want %q", tt.policy, got, tt.want)
		}
	}
}

func TestCallbackFallbackAndGET(t *testing.T) {
	failing := newReceiver(t, http.StatusInternalServerError)
	fallback := newReceiver(t, http.StatusNoContent)
	e := newEnv(t, Config{})
	r := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`","callbackUrl":"`+
		strings.Replace(failing.srv.URL, "http://", "http://user:pw@", 1)+`","fallbackUrl":"`+fallback.srv.URL+`","callbackHttpMethod":"get"}`)
	e.wantStatus(r, http.StatusCreated)
	e.idle()
	if len(failing.events()) != 1 || len(fallback.events()) != 1 {
		t.Fatalf("failing got %d, fallback got %d", len(failing.events()), len(fallback.events()))
	}
	got := failing.events()[0]
	if got.method != http.MethodGet || !strings.Contains(got.query, "eventType=answer") {
		t.Errorf("GET callback = %+v", got)
	}
	if user, pass, ok := (&http.Request{Header: got.header}).BasicAuth(); !ok || user != "user" || pass != "pw" {
		t.Error("userinfo not sent as basic auth")
	}
	cbs := e.sim.Callbacks()
	if len(cbs) != 2 || cbs[0].Status != 500 || !cbs[1].Fallback || !cbs[1].Delivered() {
		t.Errorf("Callbacks() = %+v", cbs)
	}
	if strings.Contains(cbs[0].URL, "pw") {
		t.Errorf("password recorded: %s", cbs[0].URL)
	}
}

// Retries beyond the fallbackUrl's post are undocumented (a [GUESS]):
// none by default, CallbackRetries more posts to the callbackUrl while
// every post so far failed.
func TestCallbackRetries(t *testing.T) {
	for _, retries := range []int{0, 2} {
		failing := newReceiver(t, http.StatusServiceUnavailable)
		fallback := newReceiver(t, http.StatusServiceUnavailable)
		e := newEnv(t, Config{CallbackRetries: retries})
		r := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`","callbackUrl":"`+
			failing.srv.URL+`","fallbackUrl":"`+fallback.srv.URL+`"}`)
		e.wantStatus(r, http.StatusCreated)
		e.idle()
		if got := len(failing.eventTypes(r.id())); got != 1+retries {
			t.Errorf("retries %d: posts to the callbackUrl %d, want %d", retries, got, 1+retries)
		}
		if got := len(fallback.eventTypes(r.id())); got != 1 {
			t.Errorf("retries %d: posts to the fallbackUrl %d, want 1", retries, got)
		}
		cbs := e.sim.Callbacks()
		if len(cbs) != 2+retries || !cbs[1].Fallback || (retries > 0 && !cbs[len(cbs)-1].Retry) {
			t.Errorf("retries %d: Callbacks() = %+v", retries, cbs)
		}
	}
	ok := newReceiver(t, http.StatusNoContent)
	e := newEnv(t, Config{CallbackRetries: 2})
	r := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`","callbackUrl":"`+ok.srv.URL+`"}`)
	e.wantStatus(r, http.StatusCreated)
	e.idle()
	if got := len(ok.eventTypes(r.id())); got != 1 {
		t.Errorf("an event answered 2xx was posted %d times", got)
	}
	// Nor is it posted to the fallbackUrl.
	unused := newReceiver(t, http.StatusNoContent)
	r = e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`","callbackUrl":"`+ok.srv.URL+
		`","fallbackUrl":"`+unused.srv.URL+`"}`)
	e.wantStatus(r, http.StatusCreated)
	e.idle()
	if got := len(unused.eventTypes(r.id())); got != 0 {
		t.Errorf("an event answered 2xx was posted %d times to the fallbackUrl", got)
	}
}

func TestWaitForAndChanged(t *testing.T) {
	e := newEnv(t, Config{AnswerDelay: 2 * time.Millisecond})
	e.sim.SetBehaviour(target, Behaviour{Mode: ModeAfter})
	r := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`"}`)
	err := e.sim.WaitFor(e.ctx, func() bool { return e.call(r.id()).State == StateActive })
	if err != nil {
		t.Fatal(err)
	}

	// A cancelled wait returns the context's error.
	e.sim.SetBehaviour(agent, Behaviour{Mode: ModeNever})
	r = e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+agent+`"}`)
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	if _, err := e.sim.WaitCallState(ctx, r.id(), StateActive); err == nil {
		t.Error("WaitCallState on a cancelled context: want an error")
	}
}

func TestResetAndClose(t *testing.T) {
	e := newEnv(t, Config{})
	e.sim.SetBehaviour(target, Behaviour{Mode: ModeNever})
	e.sim.InjectFault(Fault{Operation: OpGetCall, Status: 500})
	e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`"}`)
	e.sim.Reset()
	if len(e.sim.Calls()) != 0 || len(e.sim.Requests()) != 0 || len(e.sim.Faults()) != 0 {
		t.Error("Reset kept state")
	}
	e.idle()
	e.sim.Close()
	e.sim.Close() // idempotent
	// After Close the API still answers; nothing asynchronous happens.
	r := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+agent+`"}`)
	e.wantStatus(r, http.StatusCreated)
	if got := e.call(r.id()).State; got != StateStarted {
		t.Errorf("state after Close = %q", got)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []Config{
		{TransferFailure: "explode"},
		{TransferredALegState: "held"},
		{TransferLegCallback: "somewhere"},
		{ALegTransferFields: "sometimes"},
		{TimeoutHangupCause: "no answer"},
		{BaseURL: "/relative"},
		{RingTimeout: -1},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%+v: want an error", cfg)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Error(err)
	}
	defer func() {
		if recover() == nil {
			t.Error("New with an invalid Config must panic")
		}
	}()
	New(Config{TransferFailure: "explode"})
}

func TestConcurrentRequests(t *testing.T) {
	e := newEnv(t, Config{})
	done := make(chan error)
	for range 8 {
		go func() {
			a, err := e.sim.PlaceCall(InboundCall{From: customer, To: ownedMain})
			if err != nil {
				done <- err
				return
			}
			req, _ := http.NewRequestWithContext(e.ctx, http.MethodPost, e.srv.URL+mount+callPath(a.ID),
				strings.NewReader(`{"state":"transferring","transferTo":"`+target+`"}`))
			req.SetBasicAuth(testToken, testSecret)
			res, err := e.srv.Client().Do(req)
			if err == nil {
				_ = res.Body.Close()
				if res.StatusCode != http.StatusCreated {
					err = errors.New(res.Status)
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	e.idle()
	if n := len(e.sim.Calls()); n != 16 {
		t.Errorf("%d calls, want 16", n)
	}
}
