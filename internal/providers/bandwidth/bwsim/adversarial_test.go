package bwsim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// hour is an action or listing delay no test waits for: Settle applies what it holds back,
// so the order things happen in depends on the seed, never on timing.
const hour = time.Hour

// try sends an API request on a fresh connection and returns the transport error of a
// dropped response instead of failing. A fresh connection, because net/http transparently
// retries an idempotent request dropped on a reused one, which would hide the drop.
func (e *env) try(method, p, body string) (resp, error) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(e.ctx, method, e.srv.URL+mount+p, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.SetBasicAuth(testToken, testSecret)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := client.Do(req)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return resp{}, err
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}, nil
}

// bridged places the caller A talking to the agent G in bridge b.
func (e *env) bridged() (a, g Call, b Bridge) {
	e.t.Helper()
	a, g, b, err := e.sim.PlaceCallWithAgent(InboundCall{From: customer, To: ownedMain, Agent: agent})
	if err != nil {
		e.t.Fatal(err)
	}
	return a, g, b
}

// dial creates an outbound call to the number with the given extra JSON fields.
func (e *env) dial(to, extra string) string {
	e.t.Helper()
	r := e.send(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+to+`"`+extra+`}`)
	e.wantStatus(r, http.StatusCreated)
	return r.id()
}

func (e *env) truthCall(id string) TruthCall {
	e.t.Helper()
	c, ok := e.sim.Truth().Call(id)
	if !ok {
		e.t.Fatalf("no call %s in the truth", id)
	}
	return c
}

func (e *env) settled() {
	e.t.Helper()
	if err := e.sim.WaitSettled(e.ctx); err != nil {
		e.t.Fatal(err)
	}
}

func listedIDs(t *testing.T, r resp) []string {
	t.Helper()
	var calls []struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(r.body, &calls); err != nil {
		t.Fatalf("list %s: %v", r.body, err)
	}
	ids := []string{}
	for _, c := range calls {
		ids = append(ids, c.ID)
	}
	return ids
}

func TestActionsAppliedAtOnceByDefault(t *testing.T) {
	e := newEnv(t, Config{})
	a, _, b := e.bridged()
	e.wantStatus(e.send(http.MethodPost, bridgePath(b.ID), `{"bridgeAudio":false}`), http.StatusOK)
	if got := e.bridge(b.ID); got.BridgeAudio || !e.sim.Held(a.ID) {
		t.Errorf("bridge after the 200 = %+v, held %v", got, e.sim.Held(a.ID))
	}
	acts := e.sim.Actions()
	if len(acts) != 1 || acts[0].Outcome != ActionApplied || acts[0].Order != 1 || acts[0].Delay != 0 {
		t.Errorf("actions = %+v", acts)
	}
	if tr := e.sim.Truth(); tr.PendingActions != 0 || tr.UnlistedCalls != 0 {
		t.Errorf("truth counts = %d pending, %d unlisted", tr.PendingActions, tr.UnlistedCalls)
	}
}

func TestActionDelay(t *testing.T) {
	t.Run("answered at once, applied later", func(t *testing.T) {
		e := newEnv(t, Config{ActionDelay: hour})
		a, g, b := e.bridged()
		e.wantStatus(e.send(http.MethodPost, bridgePath(b.ID), `{"bridgeAudio":false}`), http.StatusOK)
		e.wantStatus(e.send(http.MethodPost, callPath(g.ID), `{"state":"completed"}`), http.StatusOK)
		if !e.sim.Connected(a.ID, g.ID) {
			t.Fatal("a delayed action was applied before its delay")
		}
		tr := e.sim.Truth()
		if tr.PendingActions != 2 || !tr.Connected(a.ID, g.ID) {
			t.Errorf("truth before = %d pending, connected %v", tr.PendingActions, tr.Connected(a.ID, g.ID))
		}
		for _, act := range e.sim.Actions() {
			if act.Outcome != ActionPending || act.Delay != hour {
				t.Errorf("action before = %+v", act)
			}
		}
		// The v1 read shows the old state too: the 200 promised nothing about when.
		if got := e.getCall(g.ID)["state"]; got != StateActive {
			t.Errorf("GET agent state = %v", got)
		}
		e.sim.Settle()
		if got := e.call(g.ID); got.State != StateCompleted {
			t.Errorf("agent after Settle = %s", got.State)
		}
		if !e.sim.Held(a.ID) {
			t.Error("caller not held after Settle")
		}
		for _, act := range e.sim.Actions() {
			if act.Outcome != ActionApplied {
				t.Errorf("action after = %+v", act)
			}
		}
	})
	t.Run("applied on real timers", func(t *testing.T) {
		e := newEnv(t, Config{ActionDelay: time.Millisecond, ActionJitter: 20 * time.Millisecond, Seed: 3})
		a, g, b := e.bridged()
		e.wantStatus(e.send(http.MethodPost, bridgePath(b.ID), `{"callIds":["`+a.ID+`"]}`), http.StatusOK)
		e.settled()
		if got := e.bridge(b.ID).CallIDs; !slices.Equal(got, []string{a.ID}) {
			t.Errorf("members = %v", got)
		}
		if e.call(g.ID).BridgeID != "" {
			t.Error("agent still in the bridge")
		}
	})
	t.Run("an action no longer valid on its turn is dropped", func(t *testing.T) {
		e := newEnv(t, Config{ActionDelay: hour})
		_, g, _ := e.bridged()
		e.wantStatus(e.send(http.MethodPost, callPath(g.ID), `{"state":"completed"}`), http.StatusOK)
		if err := e.sim.Hangup(g.ID); err != nil { // the agent hangs up first
			t.Fatal(err)
		}
		e.sim.Settle()
		acts := e.sim.Actions()
		if len(acts) != 1 || acts[0].Outcome != ActionDropped || !strings.Contains(acts[0].Reason, "completed") {
			t.Errorf("actions = %+v", acts)
		}
		if c := e.call(g.ID); c.Cause != CauseNormalClearing {
			t.Errorf("agent = %+v", c)
		}
	})
	t.Run("the request is still checked at once", func(t *testing.T) {
		e := newEnv(t, Config{ActionDelay: hour})
		_, g, b := e.bridged()
		e.wantError(e.send(http.MethodPost, callPath(g.ID), `{"state":"rejected"}`), http.StatusForbidden, "call-invalid-state", "")
		e.wantError(e.send(http.MethodPost, bridgePath(b.ID), `{"callIds":["c-none"]}`), http.StatusNotFound, "call-not-found", "")
		if n := len(e.sim.Actions()); n != 0 {
			t.Errorf("refused requests made %d actions", n)
		}
	})
}

// TestActionsOutOfOrder: with jitter, actions on one bridge are applied in the order of their
// drawn delays, not the order they were accepted, and the bridge ends with the value of the
// action applied last. The same seed replays the same order.
func TestActionsOutOfOrder(t *testing.T) {
	run := func(seed uint64) []uint64 {
		e := newEnv(t, Config{ActionDelay: hour, ActionJitter: hour, Seed: seed})
		_, _, b := e.bridged()
		for i := range 12 {
			e.wantStatus(e.send(http.MethodPost, bridgePath(b.ID), fmt.Sprintf(`{"bridgeAudio":%v}`, i%2 == 1)), http.StatusOK)
		}
		e.sim.Settle()
		acts := e.sim.Actions()
		orders := make([]uint64, 0, len(acts))
		last := acts[0]
		for _, a := range acts {
			if a.Outcome != ActionApplied {
				t.Errorf("action %+v", a)
			}
			orders = append(orders, a.Order)
			if a.Order > last.Order {
				last = a
			}
		}
		want := strings.Contains(last.Body, "true")
		if got := e.bridge(b.ID).BridgeAudio; got != want {
			t.Errorf("bridgeAudio = %v, but the last applied action was %s", got, last.Body)
		}
		return orders
	}
	orders := run(42)
	if slices.IsSorted(orders) {
		t.Errorf("12 jittered actions applied in acceptance order: %v", orders)
	}
	again := run(42)
	if !slices.Equal(orders, again) {
		t.Errorf("seed 42 replayed %v, then %v", orders, again)
	}
	if other := run(43); slices.Equal(orders, other) {
		t.Errorf("seeds 42 and 43 gave the same order %v", orders)
	}
}

func TestListingDelay(t *testing.T) {
	t.Run("off: listed at once", func(t *testing.T) {
		e := newEnv(t, Config{DefaultBehaviour: Behaviour{Mode: ModeManual}})
		id := e.dial(target, "")
		if got := listedIDs(t, e.send(http.MethodGet, callsPath+"?to="+url.QueryEscape(target), "")); !slices.Equal(got, []string{id}) {
			t.Errorf("listed %v", got)
		}
	})
	t.Run("on: not listed, but readable and writable", func(t *testing.T) {
		e := newEnv(t, Config{ListingDelay: hour, DefaultBehaviour: Behaviour{Mode: ModeManual}})
		id := e.dial(target, `,"tag":"consult-1"`)
		list := callsPath + "?to=" + url.QueryEscape(target)
		if got := listedIDs(t, e.send(http.MethodGet, list, "")); len(got) != 0 {
			t.Errorf("listed before the delay: %v", got)
		}
		if got := e.getCall(id)["id"]; got != id {
			t.Errorf("GET = %v", got)
		}
		if tc := e.truthCall(id); tc.Listed || !tc.Readable || tc.State != StateStarted {
			t.Errorf("truth = %+v", tc)
		}
		if tr := e.sim.Truth(); tr.UnlistedCalls != 1 || tr.Tag("consult-1").NotEnded != 1 {
			t.Errorf("truth counts: unlisted %d, tag %+v", tr.UnlistedCalls, tr.Tag("consult-1"))
		}
		e.wantStatus(e.send(http.MethodPost, callPath(id), `{"state":"completed"}`), http.StatusOK)
		if got := e.call(id); got.State != StateCompleted {
			t.Errorf("hang-up of an unlisted call: %s", got.State)
		}
		e.sim.Settle()
		if got := listedIDs(t, e.send(http.MethodGet, list, "")); !slices.Equal(got, []string{id}) {
			t.Errorf("listed after Settle: %v", got)
		}
	})
	t.Run("on with UnlistedNotFound: single reads 404 too", func(t *testing.T) {
		e := newEnv(t, Config{ListingDelay: hour, UnlistedNotFound: true, DefaultBehaviour: Behaviour{Mode: ModeManual}})
		id := e.dial(target, "")
		e.wantError(e.send(http.MethodGet, callPath(id), ""), http.StatusNotFound, "call-not-found", "")
		e.wantError(e.send(http.MethodGet, callPath(id)+"/events", ""), http.StatusNotFound, "call-not-found", "")
		if tc := e.truthCall(id); tc.Listed || tc.Readable {
			t.Errorf("truth = %+v", tc)
		}
		e.sim.Settle()
		e.wantStatus(e.send(http.MethodGet, callPath(id), ""), http.StatusOK)
	})
	t.Run("a transfer's B-leg too, on real timers", func(t *testing.T) {
		e := newEnv(t, Config{ListingDelay: time.Millisecond, ListingJitter: 10 * time.Millisecond, UnlistedNotFound: true})
		a := e.inbound()
		r := e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring","transferTo":"`+target+`"}`)
		e.wantStatus(r, http.StatusCreated)
		e.settled()
		if tc := e.truthCall(r.id()); !tc.Listed || !tc.Readable {
			t.Errorf("truth after settling = %+v", tc)
		}
		if got := listedIDs(t, e.send(http.MethodGet, callsPath+"?to="+url.QueryEscape(target), "")); !slices.Equal(got, []string{r.id()}) {
			t.Errorf("listed %v", got)
		}
	})
}

func TestReadFailures(t *testing.T) {
	t.Run("on: reads fail, writes work", func(t *testing.T) {
		e := newEnv(t, Config{ReadFailureRate: 1, Seed: 5})
		a, g, b := e.bridged()
		var statuses, drops int
		for range 16 {
			r, err := e.try(http.MethodGet, callPath(a.ID), "")
			switch {
			case err != nil:
				drops++
			case r.status == http.StatusInternalServerError || r.status == http.StatusServiceUnavailable:
				statuses++
			default:
				t.Errorf("read answered %d", r.status)
			}
		}
		if drops == 0 || statuses == 0 {
			t.Errorf("16 failed reads: %d dropped, %d 5xx; want both kinds", drops, statuses)
		}
		r, err := e.try(http.MethodPost, bridgePath(b.ID), `{"callIds":["`+a.ID+`"]}`)
		if err != nil || r.status != http.StatusOK {
			t.Fatalf("write: %v %d", err, r.status)
		}
		if e.call(g.ID).BridgeID != "" {
			t.Error("write not applied")
		}
		for _, rq := range e.sim.Requests() {
			want := map[bool]string{true: faultReadDrop, false: faultReadStatus}[rq.Dropped]
			if rq.Method == http.MethodPost {
				want = ""
			}
			if rq.Fault != want {
				t.Errorf("%s dropped=%v: fault %q, want %q", rq.Method, rq.Dropped, rq.Fault, want)
			}
		}
	})
	t.Run("off: reads work", func(t *testing.T) {
		e := newEnv(t, Config{Seed: 5})
		a := e.inbound()
		for range 16 {
			if r, err := e.try(http.MethodGet, callPath(a.ID), ""); err != nil || r.status != http.StatusOK {
				t.Fatalf("read: %v %d", err, r.status)
			}
		}
	})
}

func TestVanishFailedLegs(t *testing.T) {
	for _, mode := range []string{ModeBusy, ModeReject} {
		t.Run(mode+" on: never seen", func(t *testing.T) {
			e := newEnv(t, Config{VanishFailedLegs: true})
			e.sim.SetBehaviour(target, Behaviour{Mode: mode, Delay: hour})
			id := e.dial(target, `,"tag":"consult-v"`)
			e.wantError(e.send(http.MethodGet, callPath(id), ""), http.StatusNotFound, "call-not-found", "")
			if got := listedIDs(t, e.send(http.MethodGet, callsPath, "")); len(got) != 0 {
				t.Errorf("listed %v", got)
			}
			e.wantError(e.send(http.MethodPost, callPath(id), `{"state":"completed"}`), http.StatusNotFound, "call-not-found", "")
			tc := e.truthCall(id)
			wantCause := map[string]string{ModeBusy: CauseUserBusy, ModeReject: CauseCallRejected}[mode]
			if !tc.Vanished || tc.Listed || tc.Readable || tc.State != StateCompleted || tc.Cause != wantCause || tc.Answered {
				t.Errorf("truth = %+v", tc)
			}
			if g := e.sim.Truth().Tag("consult-v"); len(g.Calls) != 1 || g.Answered != 0 || g.NotEnded != 0 {
				t.Errorf("tag = %+v", g)
			}
		})
	}
	t.Run("on: a transfer's B-leg, the A-leg ends at once", func(t *testing.T) {
		e := newEnv(t, Config{VanishFailedLegs: true})
		e.sim.SetBehaviour(target, Behaviour{Mode: ModeBusy})
		a := e.inbound()
		r := e.send(http.MethodPost, callPath(a.ID), `{"state":"transferring","transferTo":"`+target+`"}`)
		e.wantStatus(r, http.StatusCreated)
		if got := e.call(a.ID).State; got != StateCompleted {
			t.Errorf("A-leg = %s", got)
		}
		e.wantError(e.send(http.MethodGet, callPath(r.id()), ""), http.StatusNotFound, "call-not-found", "")
	})
	t.Run("off: the failed leg stays readable", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.sim.SetBehaviour(target, Behaviour{Mode: ModeBusy})
		id := e.dial(target, "")
		e.waitState(id, StateCompleted)
		if got := e.getCall(id)["state"]; got != StateCompleted {
			t.Errorf("GET state = %v", got)
		}
		if tc := e.truthCall(id); tc.Vanished || !tc.Listed {
			t.Errorf("truth = %+v", tc)
		}
	})
}

func TestLostResponses(t *testing.T) {
	t.Run("on: writes applied, answers lost; reads untouched", func(t *testing.T) {
		e := newEnv(t, Config{LostResponseRate: 1, DefaultBehaviour: Behaviour{Mode: ModeManual}})
		if _, err := e.try(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`","tag":"lost"}`); err == nil {
			t.Fatal("a write was answered")
		}
		g := e.sim.Truth().Tag("lost")
		if len(g.Calls) != 1 {
			t.Fatalf("the lost write created %d calls", len(g.Calls))
		}
		if r, err := e.try(http.MethodGet, callPath(g.Calls[0]), ""); err != nil || r.status != http.StatusOK {
			t.Errorf("read: %v %d", err, r.status)
		}
		reqs := e.sim.Requests()
		if rq := reqs[0]; !rq.Dropped || rq.Fault != faultLostResponse || rq.Status != 0 {
			t.Errorf("recorded %+v", rq)
		}
	})
	t.Run("off: writes answered", func(t *testing.T) {
		e := newEnv(t, Config{DefaultBehaviour: Behaviour{Mode: ModeManual}})
		if r, err := e.try(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`"}`); err != nil || r.status != http.StatusCreated {
			t.Fatalf("write: %v %d", err, r.status)
		}
	})
}

// TestFaultRate: at rate 1 every request meets a fault, and a few dozen requests meet every
// kind; each kind does what it says.
func TestFaultRate(t *testing.T) {
	e := newEnv(t, Config{FaultRate: 1, MaxFaultLatency: 2 * time.Millisecond, Seed: 11, DefaultBehaviour: Behaviour{Mode: ModeManual}})
	seen := map[string]int{}
	for i := range 60 {
		method, p, body := http.MethodGet, callsPath, ""
		if i%2 == 1 {
			method, body = http.MethodPost, `{"from":"`+ownedMain+`","to":"`+target+`","tag":"f-`+fmt.Sprint(i)+`"}`
		}
		r, err := e.try(method, p, body)
		rq := e.sim.Requests()[i]
		seen[rq.Fault]++
		created := len(e.sim.Truth().Tag("f-"+fmt.Sprint(i)).Calls) == 1
		switch rq.Fault {
		case faultStatus:
			if err != nil || r.status < 500 {
				t.Errorf("%s: %v %d", rq.Fault, err, r.status)
			}
		case faultRateLimited:
			if err != nil || r.status != http.StatusTooManyRequests || r.header.Get("X-RateLimit-Reset") == "" {
				t.Errorf("%s: %v %d %v", rq.Fault, err, r.status, r.header)
			}
		case faultLatency:
			if err != nil || r.status >= 300 {
				t.Errorf("%s: %v %d", rq.Fault, err, r.status)
			}
		case faultDrop, faultDropAfterApply:
			if err == nil {
				t.Errorf("%s answered %d", rq.Fault, r.status)
			}
		case faultErrorAfterApply:
			if err != nil || r.status != http.StatusInternalServerError {
				t.Errorf("%s: %v %d", rq.Fault, err, r.status)
			}
		default:
			t.Errorf("request %d met fault %q", i, rq.Fault)
		}
		if method == http.MethodPost {
			applied := rq.Fault == faultLatency || rq.Fault == faultDropAfterApply || rq.Fault == faultErrorAfterApply
			if created != applied {
				t.Errorf("%s: created %v", rq.Fault, created)
			}
		}
	}
	for _, k := range []string{faultStatus, faultRateLimited, faultLatency, faultDrop, faultDropAfterApply, faultErrorAfterApply} {
		if seen[k] == 0 {
			t.Errorf("fault %q never met in 60 requests: %v", k, seen)
		}
	}
}

// TestSeedReplays: one client sending one request at a time meets the same faults for the
// same seed, in a new simulator or after Reset.
func TestSeedReplays(t *testing.T) {
	cfg := Config{Seed: 9, FaultRate: 0.4, ReadFailureRate: 0.3, LostResponseRate: 0.3, MaxFaultLatency: time.Millisecond}
	run := func(e *env) []string {
		var out []string
		for i := range 30 {
			if i%3 == 0 {
				_, _ = e.try(http.MethodPost, callsPath, `{"from":"`+ownedMain+`","to":"`+target+`"}`)
			} else {
				_, _ = e.try(http.MethodGet, callsPath, "")
			}
		}
		for _, rq := range e.sim.Requests() {
			out = append(out, rq.Fault)
		}
		return out
	}
	e1 := newEnv(t, cfg)
	first := run(e1)
	if second := run(newEnv(t, cfg)); !slices.Equal(first, second) {
		t.Errorf("same seed, new simulator:\n%v\n%v", first, second)
	}
	e1.sim.Reset()
	if third := run(e1); !slices.Equal(first, third) {
		t.Errorf("same seed after Reset:\n%v\n%v", first, third)
	}
}

func TestTruth(t *testing.T) {
	e := newEnv(t, Config{})
	a, g, b1 := e.bridged()
	tr := e.sim.Truth()
	if !tr.Connected(a.ID, g.ID) || !tr.Connected(g.ID, a.ID) {
		t.Errorf("caller and agent not connected: %+v", tr.Calls)
	}
	if c, _ := tr.Call(a.ID); c.Held || !c.Up || !c.Answered || c.BridgeID != b1.ID || c.Direction != DirectionIn || c.From != customer {
		t.Errorf("caller = %+v", c)
	}

	// Hold, then consult the target from the agent (notes §8.3), then complete.
	e.wantStatus(e.send(http.MethodPost, bridgePath(b1.ID), `{"bridgeAudio":false}`), http.StatusOK)
	if c := e.truthCall(a.ID); !c.Held || len(c.ConnectedTo) != 0 {
		t.Errorf("held caller = %+v", c)
	}
	e.wantStatus(e.send(http.MethodPost, bridgePath(b1.ID), `{"callIds":["`+a.ID+`"]}`), http.StatusOK)
	r := e.send(http.MethodPost, bridgesPath, `{"callIds":["`+g.ID+`"],"bridgeAudio":true}`)
	e.wantStatus(r, http.StatusCreated)
	b2 := r.id()
	tg := e.dial(target, `,"bridgeId":"`+b2+`","tag":"xfer-1"`)
	e.idle()
	tr = e.sim.Truth()
	if !tr.Connected(g.ID, tg) || tr.Connected(a.ID, tg) {
		t.Errorf("consult: %+v", tr.Calls)
	}
	if c, _ := tr.Call(a.ID); !c.Held {
		t.Errorf("caller alone in its bridge is not held: %+v", c)
	}
	if br, _ := tr.Bridge(b2); !br.BridgeAudio || !slices.Equal(br.CallIDs, []string{g.ID, tg}) || !br.API {
		t.Errorf("consult bridge = %+v", br)
	}
	// The control surface's bridge is not one a client created.
	if br, _ := tr.Bridge(b1.ID); br.API {
		t.Errorf("placed bridge = %+v, want api false", br)
	}
	if tag := tr.Tag("xfer-1"); !slices.Equal(tag.Calls, []string{tg}) || tag.Answered != 1 || tag.NotEnded != 1 {
		t.Errorf("tag = %+v", tag)
	}
	e.wantStatus(e.send(http.MethodPost, bridgePath(b2), `{"callIds":["`+g.ID+`"]}`), http.StatusOK)
	e.wantStatus(e.send(http.MethodPost, bridgePath(b1.ID), `{"callIds":["`+a.ID+`","`+tg+`"],"bridgeAudio":true}`), http.StatusOK)
	e.wantStatus(e.send(http.MethodPost, callPath(g.ID), `{"state":"completed","tag":"done"}`), http.StatusOK)
	tr = e.sim.Truth()
	if !tr.Connected(a.ID, tg) {
		t.Errorf("caller not with the target: %+v", tr.Calls)
	}
	if c, _ := tr.Call(g.ID); c.Up || c.State != StateCompleted || !slices.Equal(c.Tags, []string{"done"}) {
		t.Errorf("agent = %+v", c)
	}
	// A re-tagged call stays counted under its first tag.
	e.wantStatus(e.send(http.MethodPost, callPath(tg), `{"tag":"xfer-1b"}`), http.StatusOK)
	tr = e.sim.Truth()
	if x, y := tr.Tag("xfer-1"), tr.Tag("xfer-1b"); len(x.Calls) != 1 || len(y.Calls) != 1 {
		t.Errorf("tags = %+v %+v", x, y)
	}
	if got := tr.Tag("none"); len(got.Calls) != 0 || got.Answered != 0 {
		t.Errorf("unknown tag = %+v", got)
	}
}

func TestAdversarialControl(t *testing.T) {
	e := newEnv(t, Config{})
	get := func() adversityJSON {
		t.Helper()
		r := e.control(http.MethodGet, "/config/adversarial", "")
		e.wantStatus(r, http.StatusOK)
		return decodeJSON[adversityJSON](t, r)
	}
	if got := get(); got.Enabled || *got.FaultRate != 0 {
		t.Errorf("default = %+v", got)
	}

	r := e.control(http.MethodPut, "/config/adversarial", `{"enabled":true,"seed":7,"fault_rate":0.25}`)
	e.wantStatus(r, http.StatusOK)
	want := Adversarial(7)
	want.FaultRate = 0.25
	if got := e.sim.Adversity(); got.adversity() != want.adversity() {
		t.Errorf("adversity = %+v\nwant %+v", got.adversity(), want.adversity())
	}
	if got := decodeJSON[adversityJSON](t, r); !got.Enabled || got.Seed != 7 || *got.FaultRate != 0.25 ||
		time.Duration(*got.ListingJitter) != AdversarialListingJitter || !*got.VanishFailedLegs {
		t.Errorf("PUT answered %s", r.body)
	}

	e.wantStatus(e.control(http.MethodPut, "/config/adversarial", `{"enabled":false,"read_failure_rate":0.3,"action_delay":"5ms"}`), http.StatusOK)
	if got := e.sim.Adversity().adversity(); got != (adversity{ReadFailureRate: 0.3, ActionDelay: 5 * time.Millisecond}) {
		t.Errorf("one behaviour = %+v", got)
	}
	if got := get(); !got.Enabled {
		t.Error("a single behaviour on does not count as enabled")
	}

	for _, bad := range []string{`{"enabled":true,"fault_rate":2}`, `{"enabled":true,"action_delay":"-1s"}`, `{"enabled":true,"surprise":1}`, `[]`} {
		e.wantStatus(e.control(http.MethodPut, "/config/adversarial", bad), http.StatusBadRequest)
	}
	e.wantStatus(e.control(http.MethodDelete, "/config/adversarial", ""), http.StatusNoContent)
	if got := get(); got.Enabled {
		t.Errorf("after DELETE = %+v", got)
	}

	// The routes of the ground truth and of settling.
	e.wantStatus(e.control(http.MethodPut, "/config/adversarial", `{"enabled":false,"action_delay":"1h","listing_delay":"1h"}`), http.StatusOK)
	a, _, b := e.bridged()
	e.wantStatus(e.send(http.MethodPost, bridgePath(b.ID), `{"bridgeAudio":false}`), http.StatusOK)
	id := e.dial(target, `,"tag":"ctl"`)
	tr := decodeJSON[Truth](t, e.control(http.MethodGet, "/truth", ""))
	if tr.PendingActions != 1 || tr.UnlistedCalls != 1 || len(tr.Calls) != 3 || len(tr.Bridges) != 1 || tr.Tag("ctl").Calls[0] != id {
		t.Errorf("GET /truth = %+v", tr)
	}
	e.wantStatus(e.control(http.MethodGet, "/settled?timeout=1ms", ""), http.StatusGatewayTimeout)
	if acts := decodeJSON[[]Action](t, e.control(http.MethodGet, "/actions", "")); len(acts) != 1 || acts[0].Outcome != ActionPending {
		t.Errorf("GET /actions = %+v", acts)
	}
	e.wantStatus(e.control(http.MethodPost, "/settle", ""), http.StatusNoContent)
	e.wantStatus(e.control(http.MethodGet, "/settled?timeout=5s", ""), http.StatusNoContent)
	if tr := decodeJSON[Truth](t, e.control(http.MethodGet, "/truth", "")); !tr.Calls[0].Held || tr.Calls[0].ID != a.ID || tr.UnlistedCalls != 0 {
		t.Errorf("GET /truth after settling = %+v", tr)
	}
}

func TestAdversarialConfigValidate(t *testing.T) {
	for _, c := range []Config{{FaultRate: -0.1}, {ReadFailureRate: 1.5}, {ActionJitter: -time.Second}, {ListingDelay: -1}} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c.adversity())
		}
		if err := New(Config{}).SetAdversity(c); err == nil {
			t.Errorf("SetAdversity(%+v) accepted", c.adversity())
		}
	}
	if err := Adversarial(1).Validate(); err != nil {
		t.Error(err)
	}
}

// TestAdversarialStorm drives the whole profile with a sequence of attended-transfer steps
// that ignore every failure, then checks the simulator's own consistency once settled: each
// bridge's members point back at it, no call is in two bridges, ended calls are in none, a
// bridge is completed exactly when it lost every member, and every action was applied or
// dropped.
func TestAdversarialStorm(t *testing.T) {
	cfg := Adversarial(2024)
	// The profile's magnitudes, but faster, so the test does not wait seconds.
	cfg.ActionDelay, cfg.ActionJitter = time.Millisecond, 30*time.Millisecond
	cfg.ListingDelay, cfg.ListingJitter = time.Millisecond, 40*time.Millisecond
	cfg.MaxFaultLatency = 5 * time.Millisecond
	e := newEnv(t, cfg)
	e.sim.SetBehaviour(target, Behaviour{Mode: ModeBusy})
	for i := range 8 {
		a, g, b1 := e.bridged()
		to := agent
		if i%2 == 0 {
			to = target
		}
		steps := []struct{ method, path, body string }{
			{http.MethodPost, bridgePath(b1.ID), `{"bridgeAudio":false}`},
			{http.MethodPost, bridgePath(b1.ID), `{"callIds":["` + a.ID + `"]}`},
			{http.MethodPost, bridgesPath, `{"callIds":["` + g.ID + `"],"bridgeAudio":true}`},
			{http.MethodPost, callsPath, `{"from":"` + ownedMain + `","to":"` + to + `","tag":"storm-` + fmt.Sprint(i) + `"}`},
			{http.MethodGet, callsPath + "?to=" + url.QueryEscape(to), ""},
			{http.MethodPost, bridgePath(b1.ID), `{"callIds":["` + a.ID + `","` + g.ID + `"],"bridgeAudio":true}`},
			{http.MethodPost, callPath(g.ID), `{"state":"completed"}`},
		}
		for _, s := range steps {
			_, _ = e.try(s.method, s.path, s.body) // failures are the point
		}
	}
	e.settled()
	tr := e.sim.Truth()
	member := map[string]string{}
	for _, b := range tr.Bridges {
		for _, id := range b.CallIDs {
			if prev, dup := member[id]; dup {
				t.Errorf("call %s in bridges %s and %s", id, prev, b.ID)
			}
			member[id] = b.ID
		}
		if b.State == BridgeCompleted && len(b.CallIDs) != 0 {
			t.Errorf("completed bridge with members %+v", b)
		}
	}
	for _, c := range tr.Calls {
		if member[c.ID] != c.BridgeID {
			t.Errorf("call %s says bridge %q, bridges say %q", c.ID, c.BridgeID, member[c.ID])
		}
		if c.BridgeID != "" && (c.State == StateCompleted || c.State == StateRejected) {
			t.Errorf("ended call %s still in bridge %s", c.ID, c.BridgeID)
		}
		if !c.Vanished && !c.Listed {
			t.Errorf("settled call %s not listed", c.ID)
		}
		if c.Vanished && (c.To != target || c.Answered) {
			t.Errorf("vanished call %+v", c)
		}
	}
	for _, a := range e.sim.Actions() {
		if a.Outcome == ActionPending {
			t.Errorf("settled with a pending action %+v", a)
		}
	}
	faults := map[string]int{}
	for _, rq := range e.sim.Requests() {
		faults[rq.Fault]++
	}
	if faults[""] == 0 || len(faults) < 3 {
		t.Errorf("faults met = %v", faults)
	}
}
