package netsapiens_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
	"github.com/transferd/transferd/internal/store/memory"
)

// subRig is a simulator, a NetSapiens client keeping event subscriptions
// that post to a receiver doing what transferd's callback route does
// (ReceiveSubscription, then PokeView), and optionally an engine.
type subRig struct {
	sim    *nssim.Sim
	client *netsapiens.Client
	eng    *orchestrator.Engine
	// posts counts deliveries received; refused those ReceiveSubscription
	// refused.
	posts, refused atomic.Int64
	postURL        string
	pbxURL         string // the API root
}

func newSubRig(t *testing.T, simCfg nssim.Config, cfg netsapiens.Config) *subRig {
	t.Helper()
	simCfg.APIKeys = map[string]nssim.KeyScope{apiKey: {Domain: domain}}
	if simCfg.SubscriptionLag == 0 {
		// Posts go out when the test ticks (PostSubscriptions): a lag as
		// long as the test wants.
		simCfg.SubscriptionLag = time.Hour
	}
	rig := &subRig{sim: nssim.New(simCfg)}
	mux := http.NewServeMux()
	mux.Handle(basePath+"/", http.StripPrefix(basePath, rig.sim.APIHandler()))
	pbx := httptest.NewServer(mux)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/events/")
		rig.posts.Add(1)
		if err := rig.client.ReceiveSubscription(r, key); err != nil {
			rig.refused.Add(1)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if rig.eng != nil {
			rig.eng.PokeView(rig.client, key)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	rig.postURL = rcv.URL + "/events/"
	rig.pbxURL = pbx.URL + basePath
	cfg.BaseURL, cfg.APIKey, cfg.RetryBase = rig.pbxURL, apiKey, time.Millisecond
	cfg.EventURL = func(d string) string { return rig.postURL + d }
	c, err := netsapiens.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rig.client = c
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if rig.eng != nil {
			_ = rig.eng.Shutdown(ctx)
		}
		_ = c.Close(ctx)
		rcv.Close()
		pbx.Close()
		rig.sim.Close()
	})
	return rig
}

func (rig *subRig) withEngine(t *testing.T, cfg orchestrator.Config) {
	t.Helper()
	eng, err := orchestrator.New(cfg, memory.New(), []orchestrator.Provider{rig.client}, zerolog.Nop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	rig.eng = eng
}

// waitSim waits for a condition on the simulator's state.
func (rig *subRig) waitSim(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := rig.sim.Wait(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func (rig *subRig) count(op string, status int) int {
	n := 0
	for _, r := range rig.sim.Requests() {
		if r.Operation == op && r.Status == status {
			n++
		}
	}
	return n
}

// targetRinging reports whether the consult's target leg rings.
func (rig *subRig) targetRinging() bool {
	for _, s := range rig.sim.Truth().Sessions {
		if s.Term.User == "1010" && s.Term.State == nssim.InfoAlerting {
			return true
		}
	}
	return false
}

// TestSubscriptionDeliveriesDriveAnswerDetection: with polling slower than
// the test, a consult answered on the PBX is seen when the subscription's
// post arrives (late: when the test ticks), and posts that come twice or
// in reverse order change nothing: the reading they trigger is what the
// transfer acts on, so it joins once.
func TestSubscriptionDeliveriesDriveAnswerDetection(t *testing.T) {
	for _, tc := range []struct {
		name  string
		names string
		chaos nssim.SubscriptionChaos
		shape string
	}{
		{"legacy", nssim.NamesLegacy, nssim.SubscriptionChaos{}, ""},
		{"legacy duplicated and reordered", nssim.NamesLegacy, nssim.SubscriptionChaos{Duplicate: true, Reorder: true}, ""},
		{"hyphenated duplicated and reordered", nssim.NamesHyphenated, nssim.SubscriptionChaos{Duplicate: true, Reorder: true}, ""},
		// A post per session, its object alone: refused (400) before,
		// the post was lost as the nudge it is.
		{"legacy objects alone", nssim.NamesLegacy, nssim.SubscriptionChaos{}, nssim.ShapeObject},
		{"hyphenated objects alone, duplicated", nssim.NamesHyphenated, nssim.SubscriptionChaos{Duplicate: true}, nssim.ShapeObject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rig := newSubRig(t, nssim.Config{SubscriptionNames: tc.names, SubscriptionChaos: tc.chaos, SubscriptionShape: tc.shape}, netsapiens.Config{})
			rig.sim.SetBehaviour(domain, "1010", nssim.Behaviour{Mode: nssim.ModeManual})
			rig.withEngine(t, orchestrator.Config{PollInterval: time.Hour, PollMaxInterval: time.Hour,
				VerifyTimeout: 10 * time.Second, VisibilityWindow: 50 * time.Millisecond})
			if _, err := rig.sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000"}); err != nil {
				t.Fatal(err)
			}
			tr, err := rig.eng.Start(context.Background(), orchestrator.Request{Provider: netsapiens.Name,
				Call: orchestrator.CallRef{Domain: domain, User: "1000"}, Target: "1010"}, orchestrator.StartOptions{})
			if err != nil {
				t.Fatal(err)
			}
			rig.waitSim(t, "the domain's subscription", func() bool { return len(rig.sim.Subscriptions()) == 1 })
			sub := rig.sim.Subscriptions()[0]
			if sub.Model != "call" || sub.Domain != "test" || sub.User != "*" || sub.PostURL != rig.postURL+"test" || sub.GeoSupport != "yes" {
				t.Fatalf("subscription %+v", sub)
			}
			rig.waitSim(t, "the consult ringing", rig.targetRinging)
			// A tick while it rings: posts of ringing sessions wake the
			// watcher, which sees nothing to act on.
			rig.sim.PostSubscriptions(context.Background())
			if err := rig.sim.Answer(domain, "1010"); err != nil {
				t.Fatal(err)
			}
			rig.sim.PostSubscriptions(context.Background())
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			end, err := rig.eng.Wait(ctx, tr.ID, func(*orchestrator.Transfer) bool { return false })
			if err != nil {
				t.Fatal(err)
			}
			if end.State != orchestrator.StateCompleted {
				t.Fatalf("state %s outcome %+v", end.State, end.Outcome)
			}
			if n := rig.count(nssim.OpTransfer, http.StatusAccepted) + rig.count(nssim.OpTransfer, http.StatusOK); n != 1 {
				t.Fatalf("%d transfer requests, want 1", n)
			}
			// The simulator's ground truth of the answer-to-join latency.
			var ct *nssim.CallIDTruth
			for _, c := range rig.sim.Truth().CallIDs {
				if c.CallID == netsapiens.ConsultCallID(tr.ID) {
					ct = &c
				}
			}
			if ct == nil || ct.TargetAnsweredAt == nil || ct.JoinRequestedAt == nil || ct.JoinRequestedAt.Before(*ct.TargetAnsweredAt) {
				t.Fatalf("consult truth %+v", ct)
			}
			if rig.posts.Load() == 0 || rig.refused.Load() != 0 {
				t.Fatalf("%d posts, %d refused", rig.posts.Load(), rig.refused.Load())
			}
		})
	}
}

// TestForgedDeliveryChangesNothing: a post claiming the consult answered
// while it still rings makes the watcher read, and the reading, showing
// it ringing, is what the transfer keeps.
func TestForgedDeliveryChangesNothing(t *testing.T) {
	rig := newSubRig(t, nssim.Config{}, netsapiens.Config{})
	rig.sim.SetBehaviour(domain, "1010", nssim.Behaviour{Mode: nssim.ModeManual})
	rig.withEngine(t, orchestrator.Config{PollInterval: time.Hour, PollMaxInterval: time.Hour,
		VerifyTimeout: 10 * time.Second, VisibilityWindow: 50 * time.Millisecond})
	if _, err := rig.sim.PlaceCall(nssim.InboundCall{Domain: domain, User: "1000"}); err != nil {
		t.Fatal(err)
	}
	tr, err := rig.eng.Start(context.Background(), orchestrator.Request{Provider: netsapiens.Name,
		Call: orchestrator.CallRef{Domain: domain, User: "1000"}, Target: "1010",
		Completion: orchestrator.CompletionManual}, orchestrator.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rig.waitSim(t, "the consult ringing", rig.targetRinging)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cur, err := rig.eng.Wait(ctx, tr.ID, func(x *orchestrator.Transfer) bool { return x.Legs.Consult.CallID != "" })
	if err != nil {
		t.Fatal(err)
	}
	lists := rig.count(nssim.OpList, http.StatusOK)
	forged, _ := json.Marshal([]map[string]string{{"orig_callid": cur.Legs.Consult.CallID, "term_user": "1010",
		"term_call_info": "active", "orig_call_info": "active", "time_answer": "2030-01-01 00:00:00"}})
	resp, err := http.Post(rig.postURL+"test", "application/json", bytes.NewReader(forged))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delivery answered %d", resp.StatusCode)
	}
	rig.waitSim(t, "the reading the post triggered", func() bool { return rig.count(nssim.OpList, http.StatusOK) > lists })
	// The reading has been taken, but the transfer may not have acted on
	// what the post woke yet. A cancel is acted on after it, and its end
	// is terminal: whatever the transfer ever made of the post is in its
	// record and its events by then.
	if _, err := rig.eng.Cancel(ctx, tr.ID); err != nil {
		t.Fatal(err)
	}
	cur, err = rig.eng.Wait(ctx, tr.ID, func(x *orchestrator.Transfer) bool { return x.State.Terminal() })
	if err != nil {
		t.Fatal(err)
	}
	if cur.Answered || cur.State != orchestrator.StateCancelled {
		t.Fatalf("a forged post changed the transfer: state %s answered %v", cur.State, cur.Answered)
	}
	evs, err := rig.eng.Events(ctx, orchestrator.EventFilter{TransferID: tr.ID})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Type == orchestrator.EventTargetAnswered {
			t.Fatalf("a forged post made the transfer report the target answered: %+v", ev)
		}
	}
	// The simulator's truth: the consult never answered.
	for _, c := range rig.sim.Truth().CallIDs {
		if c.TargetAnsweredAt != nil {
			t.Fatalf("the PBX shows a call answered: %+v", c)
		}
	}
}

// TestSubscriptionLifecycle: a watched domain is subscribed once (two
// watches share it), renewed before it expires, kept while watched again
// within the linger, deleted with DELETE's required body once unwatched,
// and deleted by Close.
func TestSubscriptionLifecycle(t *testing.T) {
	rig := newSubRig(t, nssim.Config{}, netsapiens.Config{SubscriptionTTL: 4 * time.Second, SubscriptionLinger: time.Millisecond})
	rig.client.WatchStarted("test")
	rig.waitSim(t, "a subscription", func() bool { return len(rig.sim.Subscriptions()) == 1 })
	first := rig.sim.Subscriptions()[0]
	rig.waitSim(t, "a renewal", func() bool { return rig.count(nssim.OpSubscriptionUpdate, http.StatusAccepted) > 0 })
	if now := rig.sim.Subscriptions(); len(now) != 1 || now[0].ID != first.ID || now[0].Expires == first.Expires {
		t.Fatalf("after renewal %+v, was %+v", now, first)
	}
	rig.client.WatchStopped("test")
	rig.waitSim(t, "the deletion", func() bool { return len(rig.sim.Subscriptions()) == 0 })
	for _, r := range rig.sim.Requests() {
		if r.Operation == nssim.OpSubscriptionDelete && !strings.Contains(r.Body, `"subscription_id":"`+first.ID+`"`) {
			t.Fatalf("DELETE without the subscription_id body: %s", r.Body)
		}
	}
	rig.client.WatchStarted("test")
	rig.waitSim(t, "a new subscription", func() bool { return len(rig.sim.Subscriptions()) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rig.client.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if subs := rig.sim.Subscriptions(); len(subs) != 0 {
		t.Fatalf("left after Close: %+v", subs)
	}
	rig.client.WatchStarted("test") // after Close: nothing
	if n := rig.count(nssim.OpSubscriptionCreate, http.StatusOK); n != 2 {
		t.Fatalf("%d creates, want 2", n)
	}
}

// TestSubscriptionLeftByAKilledProcessIsAdopted: a matching subscription
// (same domain and post-url) makes the create answer 409; the client
// adopts it, renews it, and deletes it at Close, leaving none.
func TestSubscriptionLeftByAKilledProcessIsAdopted(t *testing.T) {
	rig := newSubRig(t, nssim.Config{}, netsapiens.Config{})
	body, _ := json.Marshal(map[string]string{"model": "call", "domain": "test", "user": "*", "post-url": rig.postURL + "test",
		"subscription-expires-datetime": time.Now().UTC().Add(time.Minute).Format("2006-01-02 15:04:05")})
	req, _ := http.NewRequest(http.MethodPost, rig.pbxURL+"/subscriptions", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("create answered %d", resp.StatusCode)
	}
	left := rig.sim.Subscriptions()[0]
	rig.client.WatchStarted("test")
	rig.waitSim(t, "the adoption's renewal", func() bool { return rig.count(nssim.OpSubscriptionUpdate, http.StatusAccepted) > 0 })
	if n := rig.count(nssim.OpSubscriptionCreate, http.StatusConflict); n != 1 {
		t.Fatalf("%d creates answered 409, want 1", n)
	}
	if now := rig.sim.Subscriptions(); len(now) != 1 || now[0].ID != left.ID || now[0].Expires == left.Expires {
		t.Fatalf("after adoption %+v, was %+v", now, left)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rig.client.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if subs := rig.sim.Subscriptions(); len(subs) != 0 {
		t.Fatalf("left after Close: %+v", subs)
	}
}

// TestDeliveryDecoding: both naming conventions and both removal flags are
// read, in an array of objects or one object alone (a receiver written for
// call_origid posts documents them so); anything else is refused as invalid, naming the
// body as its field (the API's validation-error lists the fields; these
// refusals named none). A null, as the body or an element, is no array
// of call objects: it was accepted as a delivery of nothing.
func TestDeliveryDecoding(t *testing.T) {
	rig := newSubRig(t, nssim.Config{}, netsapiens.Config{})
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{`[{"hostname":"core1","sessionId":"20220119004825004744","orig_callid":"a","term_call_info":"active","remove":"yes"}]`, true},
		{`[{"call-orig-call-id":"a","call-term-info":"alerting","call-remove":"yes"},{"call-term-user":1010}]`, true},
		{`[]`, true},
		{`{"orig_callid":"a"}`, true},
		{` {"call-orig-call-id":"a","call-remove":"yes"}`, true},
		{`{}`, true},
		{`{"orig_callid":"a"} x`, false},
		{`{"orig_callid":`, false},
		{`[1]`, false},
		{`"x"`, false},
		{``, false},
		{`not json`, false},
		{`null`, false},
		{`[null]`, false},
		{`[{"orig_callid":"a"}, null ]`, false},
	} {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tc.body))
		err := rig.client.ReceiveSubscription(r, "test")
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.body, err)
		}
		if err == nil {
			continue
		}
		if orchestrator.KindOf(err) != orchestrator.KindInvalid {
			t.Errorf("%s: kind %v, want invalid", tc.body, orchestrator.KindOf(err))
		}
		if fields := orchestrator.FieldsOf(err); len(fields) != 1 || fields["(body)"] == "" {
			t.Errorf("%s: fields %v, want (body) named", tc.body, fields)
		}
	}
}

// FuzzSubscriptionDelivery: no post, however malformed, panics, and
// whatever is refused is refused as invalid.
func FuzzSubscriptionDelivery(f *testing.F) {
	f.Add(`[{"orig_callid":"a","term_call_info":"active","remove":"yes"}]`)
	f.Add(`[{"call-orig-call-id":"a","call-remove":"yes","call-term-user":1010}]`)
	f.Add(`[{"orig_callid":{"x":1},"remove":["yes"]},null]`)
	c, err := netsapiens.New(netsapiens.Config{BaseURL: "http://127.0.0.1:1/ns-api/v2", APIKey: apiKey})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		if err := c.ReceiveSubscription(r, "test"); err != nil && orchestrator.KindOf(err) != orchestrator.KindInvalid {
			t.Fatalf("kind %v", orchestrator.KindOf(err))
		}
	})
}
