package nssim_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// applied waits until every accepted action has been applied, however late.
func (h *harness) applied() {
	h.t.Helper()
	if err := h.sim.WaitApplied(h.ctx()); err != nil {
		h.t.Fatalf("WaitApplied: %v", err)
	}
}

// create sends a CallRequest from user to target with an auto-answered callback leg.
func (h *harness) create(user, target, callID string) response {
	h.t.Helper()
	return h.api(http.MethodPost, "/domains/TEST/users/"+user+"/calls", map[string]string{
		"call-id": callID, "call-term-user": target, "auto-answer-enabled": "yes",
	})
}

// truthOf returns the live session created with callID, as the switch knows it.
func truthOf(t *testing.T, sim *nssim.Sim, callID string) (nssim.SessionTruth, bool) {
	t.Helper()
	for _, s := range sim.Truth().Sessions {
		if s.ByCallID == callID {
			return s, true
		}
	}
	return nssim.SessionTruth{}, false
}

func callIDTruth(t *testing.T, sim *nssim.Sim, callID string) nssim.CallIDTruth {
	t.Helper()
	for _, c := range sim.Truth().CallIDs {
		if c.CallID == callID {
			return c
		}
	}
	t.Fatalf("call-id %s not in the truth", callID)
	return nssim.CallIDTruth{}
}

// TestActionJitter: without jitter a hold and the unhold sent after it are applied in that
// order; with jitter some unholds overtake their hold and leave the caller held.
func TestActionJitter(t *testing.T) {
	for _, jitter := range []time.Duration{0, 100 * time.Millisecond} {
		t.Run(fmt.Sprint("jitter ", jitter), func(t *testing.T) {
			h := newHarness(t, nssim.Config{Seed: 11, Chaos: nssim.Chaos{ActionJitter: jitter}})
			const n = 12
			var calls []nssim.ActiveCall
			for i := range n {
				calls = append(calls, h.placeCall(fmt.Sprint(1000+i)))
			}
			for _, c := range calls {
				wantAccepted(t, h.api(http.MethodPatch, callPath(c.TermUser, c.TermCallID, "hold"), nil))
				wantAccepted(t, h.api(http.MethodPatch, callPath(c.TermUser, c.TermCallID, "unhold"), nil))
			}
			h.applied()
			held := 0
			for _, c := range h.calls() {
				if c.OrigInfo == nssim.InfoHeld {
					held++
				}
			}
			switch {
			case jitter == 0 && held != 0:
				t.Errorf("%d of %d unholds overtook their hold without jitter", held, n)
			case jitter > 0 && held == 0:
				t.Errorf("no unhold of %d overtook its hold with jitter %v", n, jitter)
			}
		})
	}
}

func TestListingDelayHidesNewCalls(t *testing.T) {
	h := newHarness(t, nssim.Config{Chaos: nssim.Chaos{ListingDelay: time.Hour}})
	orig := h.placeCall("1000") // a call from outside is not delayed
	wantStatus(t, h.create("1000", "1010", "late-1"), http.StatusAccepted)
	h.idle()

	// The switch has the call, both legs connected...
	st, ok := truthOf(t, h.sim, "late-1")
	if !ok {
		t.Fatal("the switch has no session for the CallRequest")
	}
	if st.Listed || st.Orig.State != nssim.InfoActive || st.Term.State != nssim.InfoActive || !st.TargetAnswered {
		t.Fatalf("truth %+v, want an unlisted session with both legs active", st)
	}
	// ...and no GET shows it.
	if got := h.calls(); len(got) != 1 || got[0].SessionID != orig.SessionID {
		t.Fatalf("domain listing %+v, want only the inbound call", got)
	}
	var user []nssim.ActiveCall
	h.api(http.MethodGet, "/domains/TEST/users/1010/calls", nil).decode(t, &user)
	if len(user) != 0 {
		t.Fatalf("user listing %+v, want none", user)
	}
	if r := h.api(http.MethodGet, "/domains/TEST/calls/count", nil); string(r.body) != `{"total":1}` {
		t.Fatalf("count %s, want 1", r.body)
	}
	wantError(t, h.api(http.MethodGet, callPath("1000", "late-1", ""), nil), 404, "Call not found")

	// Actions do not find it either (UnlistedNotFound, the default).
	wantError(t, h.api(http.MethodPatch, callPath("1000", "late-1", "hold"), nil), 404, "Call not found")
	wantError(t, h.api(http.MethodDelete, callPath("1000", "late-1", ""), nil), 404, "Call not found")

	// With UnlistedFound they do, and the call stays unlisted.
	if err := h.sim.SetChaos(nssim.Chaos{ListingDelay: time.Hour, UnlistedCalls: nssim.UnlistedFound}, 0); err != nil {
		t.Fatal(err)
	}
	wantAccepted(t, h.api(http.MethodPatch, callPath("1000", "late-1", "hold"), nil))
	h.applied()
	if st, _ := truthOf(t, h.sim, "late-1"); st.Term.State != nssim.InfoHeld || st.Listed {
		t.Fatalf("truth %+v, want the target held and the call still unlisted", st)
	}
	wantError(t, h.api(http.MethodGet, callPath("1000", "late-1", ""), nil), 404, "Call not found")
	wantStatus(t, h.api(http.MethodDelete, callPath("1000", "late-1", ""), nil), http.StatusOK)
	if e := h.sim.Ended(); len(e) != 1 || e[0].Listed || e[0].Reason != nssim.EndDisconnected {
		t.Fatalf("ended %+v, want the unlisted call disconnected", e)
	}
}

func TestListingDelayElapses(t *testing.T) {
	h := newHarness(t, nssim.Config{Seed: 5, Chaos: nssim.Chaos{ListingDelay: time.Millisecond, ListingJitter: 5 * time.Millisecond}})
	wantStatus(t, h.create("1000", "1010", "late-2"), http.StatusAccepted)
	h.waitFor("the call to be listed", func() bool {
		st, ok := truthOf(t, h.sim, "late-2")
		return ok && st.Listed
	})
	if _, ok := findCall(h.calls(), func(c nssim.ActiveCall) bool { return c.OrigCallID == "late-2" }); !ok {
		t.Fatal("a listed call is missing from the listing")
	}
	wantAccepted(t, h.api(http.MethodPatch, callPath("1000", "late-2", "hold"), nil))
}

func TestListingImmediateWithoutDelay(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	wantStatus(t, h.create("1000", "1010", "now-1"), http.StatusAccepted)
	h.idle()
	if st, _ := truthOf(t, h.sim, "now-1"); !st.Listed {
		t.Fatal("a call is unlisted without a listing delay")
	}
	h.consult("1000", "1011", "now-2") // fails unless listed at once
}

// A synchronous CallRequest answers once the call can be read back, so it is listed at once.
func TestListingDelaySynchronous(t *testing.T) {
	h := newHarness(t, nssim.Config{Chaos: nssim.Chaos{ListingDelay: time.Hour}})
	r := h.api(http.MethodPost, "/domains/TEST/users/1000/calls", map[string]string{
		"synchronous": "yes", "call-id": "sync-1", "call-term-user": "1010",
	})
	wantStatus(t, r, http.StatusOK)
	wantStatus(t, h.api(http.MethodGet, callPath("1000", "sync-1", ""), nil), http.StatusOK)
}

// TestFailedConsultNeverListed: with a listing delay, however short, a consult whose target
// is busy or rejects ends before it is listed; without one it was listed while it lasted.
func TestFailedConsultNeverListed(t *testing.T) {
	for _, mode := range []string{nssim.ModeBusy, nssim.ModeReject} {
		for _, delay := range []time.Duration{0, time.Nanosecond} {
			t.Run(fmt.Sprint(mode, " delay ", delay), func(t *testing.T) {
				h := newHarness(t, nssim.Config{Chaos: nssim.Chaos{ListingDelay: delay}})
				h.sim.SetBehaviour("TEST", "1010", nssim.Behaviour{Mode: mode})
				wantStatus(t, h.create("1000", "1010", "fail-1"), http.StatusAccepted)
				h.idle()
				ended := h.sim.Ended()
				if len(ended) != 1 || ended[0].Call.OrigCallID != "fail-1" {
					t.Fatalf("ended %+v, want the consult", ended)
				}
				if want := delay == 0; ended[0].Listed != want {
					t.Errorf("ended consult listed %v, want %v", ended[0].Listed, want)
				}
				if ct := callIDTruth(t, h.sim, "fail-1"); ct.Sessions != 1 || ct.TargetAnswered != 0 || ct.Live != 0 {
					t.Errorf("call-id truth %+v, want one session, never answered, gone", ct)
				}
			})
		}
	}
}

// A consult whose callback leg rings first is visible while it rings; its target failing
// later does not unlist it.
func TestFailedConsultAfterRinging(t *testing.T) {
	h := newHarness(t, nssim.Config{Chaos: nssim.Chaos{ListingDelay: time.Nanosecond}})
	h.sim.SetBehaviour("TEST", "1000", nssim.Behaviour{Mode: nssim.ModeManual})
	h.sim.SetBehaviour("TEST", "1010", nssim.Behaviour{Mode: nssim.ModeBusy})
	wantStatus(t, h.api(http.MethodPost, "/domains/TEST/users/1000/calls",
		map[string]string{"call-id": "ring-1", "call-term-user": "1010"}), http.StatusAccepted)
	h.waitFor("the ringing consult to be listed", func() bool {
		st, ok := truthOf(t, h.sim, "ring-1")
		return ok && st.Listed
	})
	if err := h.sim.Answer("TEST", "1000"); err != nil {
		t.Fatal(err)
	}
	h.idle()
	if e := h.sim.Ended(); len(e) != 1 || e[0].Reason != nssim.EndBusy || !e[0].Listed {
		t.Fatalf("ended %+v, want the listed consult ended busy", e)
	}
}

func TestDuplicateCallIDs(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		h := newHarness(t, nssim.Config{})
		wantStatus(t, h.create("1000", "1010", "dup"), http.StatusAccepted)
		wantError(t, h.create("1000", "1010", "dup"), 409, "call-id already exists")
		h.idle()
		if ct := callIDTruth(t, h.sim, "dup"); ct.Sessions != 1 {
			t.Fatalf("call-id truth %+v, want one session", ct)
		}
	})
	t.Run("accepted", func(t *testing.T) {
		h := newHarness(t, nssim.Config{Chaos: nssim.Chaos{DuplicateCallIDs: true}})
		wantStatus(t, h.create("1000", "1010", "dup"), http.StatusAccepted)
		wantStatus(t, h.create("1000", "1010", "dup"), http.StatusAccepted)
		h.idle()
		var dups []nssim.ActiveCall
		for _, c := range h.calls() {
			if c.OrigCallID == "dup" && c.ByCallID == "dup" {
				dups = append(dups, c)
			}
		}
		if len(dups) != 2 || dups[0].SessionID == dups[1].SessionID {
			t.Fatalf("listed %+v, want two sessions with call-id dup", dups)
		}
		ct := callIDTruth(t, h.sim, "dup")
		if ct.Sessions != 2 || ct.TargetAnswered != 2 || ct.Live != 2 {
			t.Fatalf("call-id truth %+v, want two sessions, both answered and live", ct)
		}
		// An action on the call-id reaches the oldest session; repeating it reaches the next.
		for i, want := range []string{dups[0].SessionID, dups[1].SessionID} {
			wantStatus(t, h.api(http.MethodDelete, callPath("1000", "dup", ""), nil), http.StatusOK)
			if e := h.sim.Ended(); e[i].Call.SessionID != want {
				t.Fatalf("DELETE %d ended %s, want %s", i+1, e[i].Call.SessionID, want)
			}
		}
		wantError(t, h.api(http.MethodDelete, callPath("1000", "dup", ""), nil), 404, "Call not found")
		if ct := callIDTruth(t, h.sim, "dup"); ct.Live != 0 || ct.Sessions != 2 {
			t.Fatalf("call-id truth %+v, want both sessions gone", ct)
		}
	})
}

func TestReadFailures(t *testing.T) {
	reads := []string{"/domains/TEST/calls", "/domains/TEST/calls/count", "/domains/TEST/users/1000/calls"}
	t.Run("5xx", func(t *testing.T) {
		h := newHarness(t, nssim.Config{Chaos: nssim.Chaos{ReadFailureRate: 1}})
		orig := h.placeCall("1000")
		for _, p := range append(reads, callPath("1000", orig.TermCallID, "")) {
			r := h.api(http.MethodGet, p, nil)
			if r.status < 500 || r.status > 504 {
				t.Errorf("GET %s: status %d, want a 5xx", p, r.status)
			}
		}
		// Writes keep working.
		wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.TermCallID, "hold"), nil))
		h.applied()
		if s := h.sim.Sessions("TEST"); s[0].OrigInfo != nssim.InfoHeld {
			t.Fatal("the hold was not applied")
		}
		for _, r := range h.sim.Requests() {
			want := ""
			if r.Method == http.MethodGet {
				want = nssim.InjectedStatus
			}
			if r.Injected != want {
				t.Errorf("%s %s injected %q, want %q", r.Method, r.Path, r.Injected, want)
			}
		}
	})
	t.Run("dropped", func(t *testing.T) {
		h := newHarness(t, nssim.Config{Chaos: nssim.Chaos{ReadDropRate: 1}})
		orig := h.placeCall("1000")
		for _, p := range reads {
			if _, err := h.send(t.Context(), domainKey, http.MethodGet, apiBase+p, nil); err == nil {
				t.Errorf("GET %s answered through a dropped connection", p)
			}
		}
		wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.TermCallID, "hold"), nil))
	})
	t.Run("off", func(t *testing.T) {
		h := newHarness(t, nssim.Config{})
		for _, p := range reads {
			wantStatus(t, h.api(http.MethodGet, p, nil), http.StatusOK)
		}
	})
}

// TestChaosSeed: the same seed and the same requests give the same failures; some of them
// fail and some do not at a rate of one half.
func TestChaosSeed(t *testing.T) {
	run := func(seed uint64) []int {
		h := newHarness(t, nssim.Config{Seed: seed, Chaos: nssim.Chaos{ReadFailureRate: 0.5}})
		var out []int
		for range 40 {
			out = append(out, h.api(http.MethodGet, "/domains/TEST/calls", nil).status)
		}
		return out
	}
	a, b := run(42), run(42)
	if !slices.Equal(a, b) {
		t.Fatalf("seed 42 gave %v then %v", a, b)
	}
	ok := 0
	for _, st := range a {
		if st == http.StatusOK {
			ok++
		}
	}
	if ok == 0 || ok == len(a) {
		t.Fatalf("%d of %d reads succeeded at a failure rate of 0.5", ok, len(a))
	}
	if c := run(43); slices.Equal(a, c) {
		t.Errorf("seeds 42 and 43 gave the same failures %v", a)
	}
}

func TestLostResponses(t *testing.T) {
	h := newHarness(t, nssim.Config{Chaos: nssim.Chaos{LostResponseRate: 1}})
	orig := h.placeCall("1000")
	if _, err := h.send(t.Context(), domainKey, http.MethodPatch, apiBase+callPath("1000", orig.TermCallID, "hold"), nil); err == nil {
		t.Fatal("the hold was answered")
	}
	if _, err := h.send(t.Context(), domainKey, http.MethodPost, apiBase+"/domains/TEST/users/1000/calls",
		map[string]string{"call-id": "lost-1", "call-term-user": "1010"}); err == nil {
		t.Fatal("the create was answered")
	}
	h.applied()
	h.idle()
	// Reads are not affected, and show both writes applied.
	if c, _ := findCall(h.calls(), func(c nssim.ActiveCall) bool { return c.SessionID == orig.SessionID }); c.OrigInfo != nssim.InfoHeld {
		t.Error("the lost hold was not applied")
	}
	if _, ok := findCall(h.calls(), func(c nssim.ActiveCall) bool { return c.OrigCallID == "lost-1" }); !ok {
		t.Error("the lost create made no call")
	}
	for _, r := range h.sim.Requests() {
		want := nssim.InjectedAppliedDrop
		if r.Method == http.MethodGet {
			want = ""
		}
		if r.Injected != want || (want != "" && r.Status != 0) {
			t.Errorf("%s %s injected %q status %d, want %q", r.Method, r.Path, r.Injected, r.Status, want)
		}
	}
}

// TestFaultRate: at a rate of 1 every request meets a fault, and every kind shows up.
func TestFaultRate(t *testing.T) {
	h := newHarness(t, nssim.Config{Seed: 9, Chaos: nssim.Chaos{FaultRate: 1, FaultLatency: time.Millisecond}})
	orig := h.placeCall("1000")
	for i := range 60 {
		method, path := http.MethodGet, "/domains/TEST/calls"
		if i%2 == 1 {
			method, path = http.MethodPatch, callPath("1000", orig.TermCallID, "hold")
		}
		r, err := h.send(t.Context(), domainKey, method, apiBase+path, nil)
		if err != nil {
			continue // dropped
		}
		if r.status == http.StatusTooManyRequests && r.header.Get("Retry-After") != "1" {
			t.Errorf("429 with Retry-After %q, want 1", r.header.Get("Retry-After"))
		}
	}
	h.applied()
	kinds := map[string]int{}
	for _, r := range h.sim.Requests() {
		if r.Injected == "" {
			t.Errorf("%s %s met no fault at a rate of 1", r.Method, r.Path)
		}
		kinds[r.Injected]++
		if r.Status == http.StatusTooManyRequests && r.Injected != nssim.InjectedStatus {
			t.Errorf("a 429 recorded as %q", r.Injected)
		}
	}
	for _, k := range []string{nssim.InjectedLatency, nssim.InjectedStatus, nssim.InjectedDrop, nssim.InjectedAppliedStatus, nssim.InjectedAppliedDrop} {
		if kinds[k] == 0 {
			t.Errorf("no %q fault in %v", k, kinds)
		}
	}

	h.sim.ResetRequests()
	if err := h.sim.SetChaos(nssim.Chaos{}, 0); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		wantStatus(t, h.api(http.MethodGet, "/domains/TEST/calls", nil), http.StatusOK)
	}
}

func TestAdversarialProfile(t *testing.T) {
	cfg := nssim.Adversarial(7)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := cfg.Chaos
	if cfg.Seed != 7 || !c.Enabled() || c.ActionJitter == 0 || c.ListingDelay == 0 || !c.DuplicateCallIDs ||
		c.ReadFailureRate == 0 || c.LostResponseRate == 0 || c.FaultRate != nssim.AdversarialFaultRate {
		t.Fatalf("Adversarial(7) = %+v, want every behaviour on", cfg)
	}
	if (nssim.Chaos{}).Enabled() || (nssim.Chaos{UnlistedCalls: nssim.UnlistedFound}).Enabled() {
		t.Error("a cooperative Chaos reports itself enabled")
	}
	bad := []nssim.Chaos{
		{ActionJitter: -1}, {ListingDelay: -1}, {ListingJitter: -1}, {FaultLatency: -1},
		{FaultRate: 1.5}, {ReadFailureRate: -0.1}, {UnlistedCalls: "maybe"},
	}
	for _, b := range bad {
		if err := (nssim.Config{Chaos: b}).Validate(); err == nil {
			t.Errorf("Validate accepted %+v", b)
		}
	}
}

func TestChaosControl(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	type state struct {
		Enabled          bool    `json:"enabled"`
		Seed             uint64  `json:"seed"`
		ActionJitter     string  `json:"action_jitter"`
		ListingDelay     string  `json:"listing_delay"`
		ListingJitter    string  `json:"listing_jitter"`
		UnlistedCalls    string  `json:"unlisted_calls"`
		DuplicateCallIDs bool    `json:"duplicate_call_ids"`
		ReadFailureRate  float64 `json:"read_failure_rate"`
		ReadDropRate     float64 `json:"read_drop_rate"`
		LostResponseRate float64 `json:"lost_response_rate"`
		FaultRate        float64 `json:"fault_rate"`
		FaultLatency     string  `json:"fault_latency"`
	}
	get := func() state {
		r := h.ctl(http.MethodGet, "/config/chaos", nil)
		wantStatus(t, r, http.StatusOK)
		var s state
		r.decode(t, &s)
		return s
	}
	if s := get(); s.Enabled || s.FaultRate != 0 || s.UnlistedCalls != nssim.UnlistedNotFound {
		t.Fatalf("initial chaos %+v, want off", s)
	}

	r := h.ctl(http.MethodPut, "/config/adversarial", map[string]any{"enabled": true, "seed": 7, "fault_rate": 0.4})
	wantStatus(t, r, http.StatusOK)
	var s state
	r.decode(t, &s)
	want := state{Enabled: true, Seed: 7, ActionJitter: "1s", ListingDelay: "100ms", ListingJitter: "1.4s",
		UnlistedCalls: "notfound", DuplicateCallIDs: true, ReadFailureRate: 0.2, ReadDropRate: 0.1,
		LostResponseRate: 0.1, FaultRate: 0.4, FaultLatency: "500ms"}
	if s != want || get() != want {
		t.Fatalf("adversarial chaos %+v, want %+v", s, want)
	}
	if got := h.sim.Chaos(); got != nssim.AdversarialChaos(0.4) || h.sim.ChaosSeed() != 7 {
		t.Fatalf("Sim.Chaos %+v seed %d, want AdversarialChaos(0.4) seed 7", got, h.sim.ChaosSeed())
	}
	// fault_rate defaults to the profile's.
	wantStatus(t, h.ctl(http.MethodPut, "/config/adversarial", map[string]any{"enabled": true}), http.StatusOK)
	if got := h.sim.Chaos(); got != nssim.AdversarialChaos(nssim.AdversarialFaultRate) || h.sim.ChaosSeed() != 7 {
		t.Fatalf("Sim.Chaos %+v seed %d, want the default profile and the seed kept", got, h.sim.ChaosSeed())
	}

	wantStatus(t, h.ctl(http.MethodPut, "/config/adversarial", map[string]any{"enabled": false}), http.StatusOK)
	if get().Enabled {
		t.Fatal("enabled:false left chaos on")
	}
	wantStatus(t, h.ctl(http.MethodPut, "/config/adversarial", map[string]any{"enabled": true}), http.StatusOK)
	wantStatus(t, h.ctl(http.MethodDelete, "/config/adversarial", nil), http.StatusNoContent)
	if h.sim.Chaos().Enabled() {
		t.Fatal("DELETE left chaos on")
	}

	r = h.ctl(http.MethodPut, "/config/chaos", map[string]any{"action_jitter": "5ms", "duplicate_call_ids": true, "read_drop_rate": 0.25})
	wantStatus(t, r, http.StatusOK)
	if got := h.sim.Chaos(); got != (nssim.Chaos{ActionJitter: 5 * time.Millisecond, DuplicateCallIDs: true, ReadDropRate: 0.25, UnlistedCalls: nssim.UnlistedNotFound}) {
		t.Fatalf("PUT /config/chaos set %+v", got)
	}

	// Refused, each error naming the field as the body does (never the Go field behind it)
	// and what it accepts.
	for _, b := range []struct {
		path string
		body any
		want []string
	}{
		{"/config/adversarial", map[string]any{"seed": 1}, []string{"enabled is required"}},
		{"/config/adversarial", map[string]any{"enabled": true, "fault_rate": 5}, []string{"fault_rate 5 is not a fraction in [0, 1]"}},
		{"/config/adversarial", map[string]any{"enabled": true, "fault": 0.2}, []string{`"fault"`}},
		{"/config/adversarial", map[string]any{"enabled": "yes"}, []string{"enabled is a boolean"}},
		{"/config/chaos", map[string]any{"fault_rate": -1}, []string{"fault_rate -1 is not a fraction in [0, 1]"}},
		{"/config/chaos", map[string]any{"read_failure_rate": 2, "read_drop_rate": 3, "lost_response_rate": 4},
			[]string{"read_failure_rate 2", "read_drop_rate 3", "lost_response_rate 4"}},
		{"/config/chaos", map[string]any{"listing_delay": "soon"}, []string{`listing_delay "soon"`}},
		{"/config/chaos", map[string]any{"unlisted_calls": "maybe"}, []string{`unlisted_calls "maybe" is not one of "notfound" or "found"`}},
		{"/config/chaos", map[string]any{"enabled": true}, []string{`"enabled"`}},
	} {
		r := h.ctl(http.MethodPut, b.path, b.body)
		wantStatus(t, r, http.StatusBadRequest)
		var e struct{ Error string }
		r.decode(t, &e)
		for _, w := range b.want {
			if !strings.Contains(e.Error, w) {
				t.Errorf("PUT %s %v: error %q does not say %s", b.path, b.body, e.Error, w)
			}
		}
		for _, goName := range []string{"Rate", "UnlistedCalls", "ListingDelay", "Go struct"} {
			if strings.Contains(e.Error, goName) {
				t.Errorf("PUT %s %v: error %q names a Go field", b.path, b.body, e.Error)
			}
		}
	}
	if got := h.sim.Chaos(); got.ReadDropRate != 0.25 {
		t.Fatalf("a refused PUT changed the chaos to %+v", got)
	}
}

func TestTruth(t *testing.T) {
	h := newHarness(t, nssim.Config{Chaos: nssim.Chaos{ListingDelay: time.Hour}})
	h.sim.SetBehaviour("TEST", "1010", nssim.Behaviour{Mode: nssim.ModeManual})
	orig := h.placeCall("1000")
	wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.TermCallID, "hold"), nil))
	wantStatus(t, h.create("1000", "1010", "xfer-1"), http.StatusAccepted)
	h.idle()
	h.applied()

	r := h.ctl(http.MethodGet, "/truth", nil)
	wantStatus(t, r, http.StatusOK)
	var tr nssim.Truth
	r.decode(t, &tr)
	if len(tr.Sessions) != 2 || tr.PendingActions != 0 {
		t.Fatalf("truth %+v, want two sessions and nothing pending", tr)
	}
	in, cons := tr.Sessions[0], tr.Sessions[1]
	if in.SessionID != orig.SessionID || !in.Listed || in.ByAction != "" ||
		in.Orig.State != nssim.InfoHeld || in.Term.State != nssim.InfoActive || in.Term.User != "1000" ||
		in.Term.CallID != orig.TermCallID || in.Call.SessionID != orig.SessionID {
		t.Errorf("inbound session %+v", in)
	}
	if cons.Listed || cons.ByAction != "CallRequest" || cons.ByCallID != "xfer-1" || cons.ByUser != "1000" ||
		cons.Orig.CallID != "xfer-1" || cons.Orig.State != nssim.InfoActive ||
		cons.Term.User != "1010" || cons.Term.State != nssim.InfoAlerting || cons.TargetAnswered {
		t.Errorf("consult session %+v", cons)
	}
	if len(tr.CallIDs) != 1 || tr.CallIDs[0].CallID != "xfer-1" || tr.CallIDs[0].Sessions != 1 ||
		tr.CallIDs[0].TargetAnswered != 0 || tr.CallIDs[0].Live != 1 || tr.CallIDs[0].SessionIDs[0] != cons.SessionID {
		t.Errorf("call-ids %+v", tr.CallIDs)
	}

	if err := h.sim.Answer("TEST", "1010"); err != nil {
		t.Fatal(err)
	}
	if err := h.sim.Hangup(cons.SessionID, "term"); err != nil {
		t.Fatal(err)
	}
	ct := callIDTruth(t, h.sim, "xfer-1")
	if ct.TargetAnswered != 1 || ct.Live != 0 {
		t.Errorf("call-id truth %+v, want the target answered once and nothing live", ct)
	}
	if e := h.sim.Truth().Ended; len(e) != 1 || e[0].Reason != nssim.EndHangup || e[0].Listed {
		t.Errorf("ended %+v, want the unlisted consult hung up", e)
	}
}

// TestCallIDHistoryBounded: the call-id truth is bounded by HistoryLimit, but never forgets a
// call-id that still has a live session.
func TestCallIDHistoryBounded(t *testing.T) {
	h := newHarness(t, nssim.Config{HistoryLimit: 2})
	h.sim.SetBehaviour("TEST", "1010", nssim.Behaviour{Mode: nssim.ModeManual})
	wantStatus(t, h.create("1000", "1010", "keep"), http.StatusAccepted)
	h.idle() // the target rings before it turns busy
	h.sim.SetBehaviour("TEST", "1010", nssim.Behaviour{Mode: nssim.ModeBusy})
	for i := range 6 {
		wantStatus(t, h.create("1000", "1010", fmt.Sprint("gone-", i)), http.StatusAccepted)
		h.idle()
	}
	ids := h.sim.Truth().CallIDs
	if len(ids) > 4 || ids[0].CallID != "keep" || ids[len(ids)-1].CallID != "gone-5" {
		t.Fatalf("call-ids %+v, want keep and the newest few", ids)
	}
}

// TestAdversarialConsult runs the guide's consult under the whole profile (without random
// faults, so the steps are certain to be accepted) and checks it converges.
func TestAdversarialConsult(t *testing.T) {
	cfg := nssim.Adversarial(3)
	cfg.Chaos = nssim.AdversarialChaos(0)
	cfg.ActionJitter = 20 * time.Millisecond
	cfg.ListingDelay, cfg.ListingJitter = time.Millisecond, 20*time.Millisecond
	h := newHarness(t, cfg)
	orig := h.placeCall("1000")
	wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.TermCallID, "hold"), nil))
	wantStatus(t, h.create("1000", "1010", "adv-1"), http.StatusAccepted)
	h.waitFor("the consult to be listed and answered", func() bool {
		st, ok := truthOf(t, h.sim, "adv-1")
		return ok && st.Listed && st.Term.State == nssim.InfoActive
	})
	cons, ok := findCall(h.calls(), func(c nssim.ActiveCall) bool { return c.OrigCallID == "adv-1" })
	if !ok {
		t.Fatal("the listed consult is missing from the listing")
	}
	h.applied()
	wantAccepted(t, h.api(http.MethodPatch, callPath("1000", orig.OrigCallID, "transfer"), map[string]string{
		"hostname": orig.CoreServer, "call-destination-session-id": cons.SessionID,
	}))
	h.applied()
	tr := h.sim.Truth()
	if len(tr.Sessions) != 1 || tr.Sessions[0].Term.User != "1010" || tr.Sessions[0].Orig.State != nssim.InfoActive {
		t.Fatalf("truth %+v, want the caller with 1010", tr.Sessions)
	}
}

// TestControlChaosTakesBackWhatItShows: GET /config/chaos answers the knobs
// with "enabled", and PUT refused that field, so the chaos a client read,
// edited and put back was a 400; and "enabled":false, as /config/adversarial
// takes it, left every knob on. A newcomer who turned a lagging node on
// could not turn it off where it was set (the README listed no DELETE).
// PUT now takes what GET shows, "enabled":false turns every knob off, and
// DELETE does too.
func TestControlChaosTakesBackWhatItShows(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	wantStatus(t, h.ctl(http.MethodPut, "/config/chaos", `{"lagging_node_rate":0.5,"lagging_node_age":"2s"}`), http.StatusOK)
	shown := h.ctl(http.MethodGet, "/config/chaos", nil)
	wantStatus(t, shown, http.StatusOK)
	if r := h.ctl(http.MethodPut, "/config/chaos", string(shown.body)); r.status != http.StatusOK {
		t.Errorf("PUT of what GET showed: %d %s, want 200", r.status, r.body)
	}
	if got := h.sim.Chaos(); got.LaggingNodeRate != 0.5 || got.LaggingNodeAge != 2*time.Second {
		t.Errorf("after the PUT back, chaos %+v, want the lagging node kept", got)
	}
	if r := h.ctl(http.MethodPut, "/config/chaos", `{"enabled":false,"lagging_node_rate":0.5}`); r.status != http.StatusOK {
		t.Errorf(`PUT {"enabled":false}: %d %s, want 200`, r.status, r.body)
	}
	if got := h.sim.Chaos(); got.Enabled() {
		t.Errorf(`after "enabled":false, chaos %+v, want every knob off`, got)
	}
	wantStatus(t, h.ctl(http.MethodPut, "/config/chaos", `{"read_failure_rate":0.5}`), http.StatusOK)
	wantStatus(t, h.ctl(http.MethodDelete, "/config/chaos", nil), http.StatusNoContent)
	if got := h.sim.Chaos(); got.Enabled() {
		t.Errorf("after DELETE, chaos %+v, want every knob off", got)
	}
}
