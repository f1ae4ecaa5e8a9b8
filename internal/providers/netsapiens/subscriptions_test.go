package netsapiens_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
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

func newSubRig(t *testing.T, simCfg nssim.Config, cfg netsapiens.Config, wrap ...func(http.Handler) http.Handler) *subRig {
	t.Helper()
	simCfg.APIKeys = map[string]nssim.KeyScope{apiKey: {Domain: domain}}
	if simCfg.SubscriptionLag == 0 {
		// Posts go out when the test ticks (PostSubscriptions): a lag as
		// long as the test wants.
		simCfg.SubscriptionLag = time.Hour
	}
	rig := &subRig{sim: nssim.New(simCfg)}
	mux := http.NewServeMux()
	api := rig.sim.APIHandler()
	for _, w := range wrap {
		api = w(api)
	}
	mux.Handle(basePath+"/", http.StripPrefix(basePath, api))
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

// subscribed starts a watch of the domain and waits for its subscription.
func (rig *subRig) subscribed(t *testing.T) {
	t.Helper()
	rig.client.WatchStarted("test")
	rig.waitSim(t, "a subscription", func() bool { return len(rig.sim.Subscriptions()) == 1 })
}

// closeLeavesNone closes the client and wants no subscription left after
// it; after says what was to delete it.
func (rig *subRig) closeLeavesNone(t *testing.T, after string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rig.client.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if subs := rig.sim.Subscriptions(); len(subs) != 0 {
		t.Fatalf("left after %s: %+v", after, subs)
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
	rig.subscribed(t)
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
	rig.closeLeavesNone(t, "Close")
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
	rig.subscribe(t, rig.postURL+"test")
	left := rig.sim.Subscriptions()[0]
	rig.client.WatchStarted("test")
	rig.waitSim(t, "the adoption's renewal", func() bool { return rig.count(nssim.OpSubscriptionUpdate, http.StatusAccepted) > 0 })
	if n := rig.count(nssim.OpSubscriptionCreate, http.StatusConflict); n != 1 {
		t.Fatalf("%d creates answered 409, want 1", n)
	}
	if now := rig.sim.Subscriptions(); len(now) != 1 || now[0].ID != left.ID || now[0].Expires == left.Expires {
		t.Fatalf("after adoption %+v, was %+v", now, left)
	}
	rig.closeLeavesNone(t, "Close")
}

// subscribe creates a subscription of the domain's calls posting to
// postURL, as another process would have.
func (rig *subRig) subscribe(t *testing.T, postURL string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"model": "call", "domain": "test", "user": "*", "post-url": postURL,
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
}

// A subscription left by a killed process is adopted however the PBX
// pages the listing of subscriptions: the 409 sent the adapter to
// GET /subscriptions, read on its first page only, and ours, past it
// behind other integrations' subscriptions, was "not listed": the create
// failed at every try, and the domain was never subscribed. It is now
// read page by page while a page shows one not seen before: by the limit
// asked for, by a page size of the PBX's own below it (start honoured),
// and in one answer where the PBX does not page. A PBX that pages and
// ignores start cannot show it: nothing is adopted or created, and the
// search ends at the page answered again rather than reading pages up to
// the bound (TestASubscriptionAPBXCannotListIsNotLookedForWithoutEnd).
func TestASubscriptionPastTheFirstPageIsAdopted(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sim   nssim.Config
		limit int
	}{
		{"limit honoured", nssim.Config{ListPageSize: 2}, 2},
		{"a page size of its own, start honoured", nssim.Config{ListPageSize: 2, ListParams: nssim.ListParamsStartOnly}, 0},
		{"no paging", nssim.Config{ListParams: nssim.ListParamsIgnored}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rig := newSubRig(t, tc.sim, netsapiens.Config{ListLimit: tc.limit})
			for i := range 4 {
				rig.subscribe(t, "https://other.example/"+strconv.Itoa(i))
			}
			rig.subscribe(t, rig.postURL+"test")
			subs := rig.sim.Subscriptions()
			left := subs[len(subs)-1]
			made := rig.count(nssim.OpSubscriptionCreate, http.StatusOK)
			rig.client.WatchStarted("test")
			rig.waitSim(t, "the adoption's renewal", func() bool { return rig.count(nssim.OpSubscriptionUpdate, http.StatusAccepted) > 0 })
			for _, r := range rig.sim.Requests() {
				if r.Operation == nssim.OpSubscriptionUpdate && !strings.HasSuffix(r.Path, "/"+left.ID) {
					t.Errorf("renewed %s, want ours %s", r.Path, left.ID)
				}
			}
			if n := rig.count(nssim.OpSubscriptionCreate, http.StatusOK) - made; n != 0 {
				t.Errorf("%d subscriptions created, want ours adopted", n)
			}
		})
	}
}

// A subscription's expiry is written "YYYY-MM-DD HH:MM:SS", with no
// zone; reads answer it with an offset [C-code], and in which zone a
// write is read is not documented (nssim.Config.SubscriptionZone). It was
// written in UTC an hour ahead: a PBX reading it in a zone two hours east
// of UTC had it expired an hour before it was made, and no post ever came
// (the domain polled only; the keeper renewed a subscription the PBX had
// dropped, at half its life, with another expiry already past). The
// expiry is now written as far ahead as the easternmost zone needs, so
// that it lasts at least the TTL wherever it is read, and no more than a
// day longer in the westernmost.
func TestASubscriptionLastsItsTTLInAnyZone(t *testing.T) {
	for _, zone := range []time.Duration{0, 2 * time.Hour, 14 * time.Hour, -12 * time.Hour} {
		t.Run(zone.String(), func(t *testing.T) {
			const ttl = time.Hour
			rig := newSubRig(t, nssim.Config{SubscriptionZone: zone}, netsapiens.Config{SubscriptionTTL: ttl})
			rig.client.WatchStarted("test")
			rig.waitSim(t, "the create", func() bool { return rig.count(nssim.OpSubscriptionCreate, http.StatusOK) > 0 })
			subs := rig.sim.Subscriptions()
			if len(subs) != 1 {
				t.Fatalf("subscriptions %+v: want the one just made, not expired", subs)
			}
			expires, err := time.Parse(time.RFC3339, subs[0].Expires)
			if err != nil {
				t.Fatal(err)
			}
			// Bounds wide of any time the test takes to run.
			if left := time.Until(expires); left < ttl-10*time.Minute || left > ttl+27*time.Hour {
				t.Errorf("the subscription expires in %v, want at least the TTL %v and at most a day more", left, ttl)
			}
		})
	}
}

// A subscription deleted between two pages of the listing (another
// integration's, say) moves every row after it one back: asked from where
// the first page ended, the row first on the next page had moved onto the
// page read already and was in neither answer. Ours was that row: not
// found, and the create failed once more. A later page is asked from one
// row back, so ours is found on the first try (one 409).
func TestASubscriptionShiftedBackBetweenPagesIsFound(t *testing.T) {
	var once sync.Once
	var rig *subRig
	rig = newSubRig(t, nssim.Config{ListPageSize: 2}, netsapiens.Config{ListLimit: 2}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r)
			if r.Method == http.MethodGet && r.URL.Path == "/subscriptions" {
				once.Do(func() {
					first := rig.sim.Subscriptions()[0]
					body, _ := json.Marshal(map[string]string{"subscription_id": first.ID, "domain": first.Domain})
					del := httptest.NewRequest(http.MethodDelete, "/subscriptions/"+first.ID, bytes.NewReader(body))
					del.Header.Set("Authorization", "Bearer "+apiKey)
					del.Header.Set("Content-Type", "application/json")
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, del)
					if rec.Code != http.StatusAccepted {
						panic(fmt.Sprintf("deleting %s: %d %s", first.ID, rec.Code, rec.Body))
					}
				})
			}
		})
	})
	rig.subscribe(t, "https://other.example/0")
	rig.subscribe(t, "https://other.example/1")
	rig.subscribe(t, rig.postURL+"test") // third: first on the second page
	rig.subscribe(t, "https://other.example/3")
	rig.client.WatchStarted("test")
	rig.waitSim(t, "the adoption's renewal", func() bool { return rig.count(nssim.OpSubscriptionUpdate, http.StatusAccepted) > 0 })
	if n := rig.count(nssim.OpSubscriptionCreate, http.StatusConflict); n != 1 {
		t.Errorf("%d creates answered 409, want 1: ours found on the first try", n)
	}
}

// The other side of the paging guess: a PBX that pages by a size of its
// own and ignores start answers its first page again, and ours, past it,
// cannot be found. The search ends there (two pages read), rather than
// reading the same page up to the bound of pages, and nothing is created:
// the create is tried again after a back-off, the domain polled meanwhile.
func TestASubscriptionAPBXCannotListIsNotLookedForWithoutEnd(t *testing.T) {
	rig := newSubRig(t, nssim.Config{ListPageSize: 2, ListParams: nssim.ListParamsIgnored}, netsapiens.Config{})
	for i := range 4 {
		rig.subscribe(t, "https://other.example/"+strconv.Itoa(i))
	}
	rig.subscribe(t, rig.postURL+"test")
	made := rig.count(nssim.OpSubscriptionCreate, http.StatusOK)
	rig.client.WatchStarted("test")
	// The second try's create begins once the first try's search ended.
	rig.waitSim(t, "the create tried again", func() bool { return rig.count(nssim.OpSubscriptionCreate, http.StatusConflict) >= 2 })
	lists, creates := 0, 0
	for _, r := range rig.sim.Requests() {
		switch r.Operation {
		case nssim.OpSubscriptionCreate:
			if r.Status == http.StatusConflict {
				creates++
			}
		case nssim.OpSubscriptionList:
			if creates == 1 {
				lists++
			}
		case nssim.OpSubscriptionUpdate:
			t.Errorf("%s %s: nothing matching was listed", r.Method, r.Path)
		}
	}
	if lists != 2 {
		t.Errorf("the first try read %d pages, want 2 (the first, and the same again)", lists)
	}
	if n := rig.count(nssim.OpSubscriptionCreate, http.StatusOK) - made; n != 0 {
		t.Errorf("%d subscriptions created", n)
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
