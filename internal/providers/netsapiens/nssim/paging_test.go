package nssim_test

import (
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// sessionsOf lists path with the domain key and returns the session ids, in order.
func (h *harness) sessionsOf(path string) []string {
	h.t.Helper()
	r := h.api(http.MethodGet, path, nil)
	wantStatus(h.t, r, http.StatusOK)
	var calls []nssim.ActiveCall
	r.decode(h.t, &calls)
	ids := make([]string, len(calls))
	for i, c := range calls {
		ids[i] = c.SessionID
	}
	return ids
}

// A PBX may page its listings (ListPageSize) and honour limit and start, or some of them
// (ListParams); by default it does not page at all.
func TestListingPages(t *testing.T) {
	place := func(h *harness, n int) []string {
		var ids []string
		for i := 0; i < n; i++ {
			ids = append(ids, h.placeCall("1000").SessionID)
		}
		return ids
	}
	t.Run("default: no paging", func(t *testing.T) {
		h := newHarness(t, nssim.Config{})
		all := place(h, 5)
		if got := h.sessionsOf("/domains/TEST/calls"); !slices.Equal(got, all) {
			t.Fatalf("listing %v, want every call %v", got, all)
		}
		if got := h.sessionsOf("/domains/TEST/calls?limit=2&start=1"); !slices.Equal(got, all[1:3]) {
			t.Fatalf("limit 2 start 1: %v, want %v", got, all[1:3])
		}
	})
	t.Run("honoured", func(t *testing.T) {
		h := newHarness(t, nssim.Config{ListPageSize: 2})
		all := place(h, 5)
		for _, c := range []struct {
			query string
			want  []string
		}{
			{"", all[:2]},
			{"?start=2", all[2:4]},
			{"?start=4", all[4:]},
			{"?start=5", nil},
			{"?limit=3&start=1", all[1:4]},
			{"?limit=x&start=y", all[:2]},
		} {
			if got := h.sessionsOf("/domains/TEST/calls" + c.query); !slices.Equal(got, c.want) {
				t.Errorf("%q: %v, want %v", c.query, got, c.want)
			}
		}
		if got := h.sessionsOf("/domains/TEST/users/1000/calls?start=4"); !slices.Equal(got, all[4:]) {
			t.Errorf("a user's listing from 4: %v, want %v", got, all[4:])
		}
		var count struct{ Total int }
		h.api(http.MethodGet, "/domains/TEST/calls/count", nil).decode(t, &count)
		if count.Total != 5 {
			t.Errorf("count %d, want 5: counts are not paged", count.Total)
		}
	})
	t.Run("start only", func(t *testing.T) {
		h := newHarness(t, nssim.Config{ListPageSize: 2, ListParams: nssim.ListParamsStartOnly})
		all := place(h, 5)
		if got := h.sessionsOf("/domains/TEST/calls?limit=4&start=1"); !slices.Equal(got, all[1:3]) {
			t.Errorf("%v, want %v: the limit ignored, the start honoured", got, all[1:3])
		}
	})
	t.Run("a listing without rows", func(t *testing.T) {
		for idle, want := range map[string]string{"": "[]", nssim.EmptyListingArray: "[]", nssim.EmptyListingNull: "null", nssim.EmptyListingNone: ""} {
			h := newHarness(t, nssim.Config{ListPageSize: 2, EmptyListing: idle})
			if r := h.api(http.MethodGet, "/domains/TEST/calls", nil); r.status != http.StatusOK || string(r.body) != want {
				t.Errorf("%q: an idle domain answered %d %q, want %q", idle, r.status, r.body, want)
			}
			all := place(h, 2)
			if got := h.sessionsOf("/domains/TEST/calls"); !slices.Equal(got, all) {
				t.Errorf("%q: %v, want %v: rows are answered as they are", idle, got, all)
			}
			if r := h.api(http.MethodGet, "/domains/TEST/calls?start=2", nil); r.status != http.StatusOK || string(r.body) != want {
				t.Errorf("%q: a page past the end answered %d %q, want %q", idle, r.status, r.body, want)
			}
		}
		if err := (nssim.Config{EmptyListing: "nothing"}).Validate(); err == nil {
			t.Error("an unknown EmptyListing was accepted")
		}
	})
	t.Run("ignored", func(t *testing.T) {
		h := newHarness(t, nssim.Config{ListPageSize: 2, ListParams: nssim.ListParamsIgnored})
		all := place(h, 5)
		if got := h.sessionsOf("/domains/TEST/calls?limit=4&start=2"); !slices.Equal(got, all[:2]) {
			t.Errorf("%v, want the first page %v whatever is asked", got, all[:2])
		}
		// A user's listing alike, and its count counts the user's calls
		// (the adapter reads an agent's own listing on such a PBX).
		other := h.placeCall("1001").SessionID
		if got := h.sessionsOf("/domains/TEST/users/1001/calls?start=1"); !slices.Equal(got, []string{other}) {
			t.Errorf("a user's listing: %v, want its one call %v", got, other)
		}
		var count struct{ Total int }
		h.api(http.MethodGet, "/domains/TEST/users/1000/calls/count", nil).decode(t, &count)
		if count.Total != 5 {
			t.Errorf("a user's count %d, want 5", count.Total)
		}
	})
}

// The subscriptions' listing is paged as the calls' are: the same guesses, on the same
// query parameters.
func TestSubscriptionListingPages(t *testing.T) {
	subscribe := func(h *harness, n int) []string {
		var ids []string
		for i := 0; i < n; i++ {
			r := h.api(http.MethodPost, "/subscriptions", map[string]any{"model": "call", "domain": "TEST", "user": "*",
				"post-url": "https://transferd.example/callbacks/" + string(rune('a'+i))})
			wantStatus(h.t, r, http.StatusOK)
			var sub nssim.Subscription
			r.decode(h.t, &sub)
			ids = append(ids, sub.ID)
		}
		return ids
	}
	listed := func(h *harness, query string) []string {
		h.t.Helper()
		r := h.api(http.MethodGet, "/subscriptions"+query, nil)
		wantStatus(h.t, r, http.StatusOK)
		var subs []nssim.Subscription
		r.decode(h.t, &subs)
		if subs == nil {
			h.t.Fatalf("%q: %s, want an array", query, r.body)
		}
		ids := []string{}
		for _, sub := range subs {
			ids = append(ids, sub.ID)
		}
		return ids
	}
	for _, c := range []struct {
		cfg   nssim.Config
		query string
		want  func(all []string) []string
	}{
		{nssim.Config{}, "", func(all []string) []string { return all }},
		{nssim.Config{}, "?limit=2&start=1", func(all []string) []string { return all[1:3] }},
		{nssim.Config{ListPageSize: 2}, "", func(all []string) []string { return all[:2] }},
		{nssim.Config{ListPageSize: 2}, "?start=4", func(all []string) []string { return all[4:] }},
		{nssim.Config{ListPageSize: 2}, "?start=5", func([]string) []string { return []string{} }},
		{nssim.Config{ListPageSize: 2, ListParams: nssim.ListParamsStartOnly}, "?limit=4&start=1", func(all []string) []string { return all[1:3] }},
		{nssim.Config{ListPageSize: 2, ListParams: nssim.ListParamsIgnored}, "?limit=4&start=2", func(all []string) []string { return all[:2] }},
		{nssim.Config{ListPageSize: 2, ListParams: nssim.ListParamsLimitOnly}, "?limit=4&start=2", func(all []string) []string { return all[:4] }},
		{nssim.Config{ListPageSize: 2, ListParams: nssim.ListParamsLimitOnly}, "?start=2", func(all []string) []string { return all[:2] }},
	} {
		h := newHarness(t, c.cfg)
		all := subscribe(h, 5)
		if got, want := listed(h, c.query), c.want(all); !slices.Equal(got, want) {
			t.Errorf("%+v %q: %v, want %v", c.cfg, c.query, got, want)
		}
	}
}

func TestListingPagesConfigValidated(t *testing.T) {
	if err := (nssim.Config{ListPageSize: -1}).Validate(); err == nil {
		t.Error("a negative ListPageSize was accepted")
	}
	if err := (nssim.Config{ListParams: "some"}).Validate(); err == nil {
		t.Error("an unknown ListParams was accepted")
	}
}

// The paging is a guess, switched at run time through /config/guesses.
func TestListingPagesSwitchedAtRunTime(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	var all []string
	for i := 0; i < 3; i++ {
		all = append(all, h.placeCall("1000").SessionID)
	}
	wantStatus(t, h.ctl(http.MethodPut, "/config/guesses", map[string]any{"list_page_size": 2, "list_params": "ignored"}), http.StatusOK)
	if got := h.sessionsOf("/domains/TEST/calls?start=2"); !slices.Equal(got, all[:2]) {
		t.Errorf("%v, want the first page %v", got, all[:2])
	}
	wantStatus(t, h.ctl(http.MethodPut, "/config/guesses", map[string]any{"list_page_size": -1}), http.StatusBadRequest)
	wantStatus(t, h.ctl(http.MethodDelete, "/config/guesses", nil), http.StatusNoContent)
	if got := h.sessionsOf("/domains/TEST/calls"); !slices.Equal(got, all) {
		t.Errorf("%v, want every call once the guesses are reset", got)
	}
}

// A read served by an API node lagging LaggingNodeAge behind does not know a call younger
// than that: its listings and counts leave the call out, and a read of it by id answers 404;
// an older call, and every read once the chaos is off, are served as usual.
func TestLaggingNode(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	h := newHarness(t, nssim.Config{Now: clock})
	old := h.placeCall("1000")
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	young := h.placeCall("1020")
	if err := h.sim.SetChaos(nssim.Chaos{LaggingNodeRate: 1, LaggingNodeAge: 30 * time.Second}, 0); err != nil {
		t.Fatal(err)
	}
	if got := h.sessionsOf("/domains/TEST/calls"); !slices.Equal(got, []string{old.SessionID}) {
		t.Errorf("a lagging node lists %v, want only the call it knows, %s", got, old.SessionID)
	}
	var count struct{ Total int }
	h.api(http.MethodGet, "/domains/TEST/calls/count", nil).decode(t, &count)
	if count.Total != 1 {
		t.Errorf("a lagging node counts %d calls, want 1", count.Total)
	}
	wantError(t, h.api(http.MethodGet, callPath("1020", young.TermCallID, ""), nil), http.StatusNotFound, "Call not found")
	wantStatus(t, h.api(http.MethodGet, callPath("1000", old.TermCallID, ""), nil), http.StatusOK)

	if err := h.sim.SetChaos(nssim.Chaos{}, 0); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, h.api(http.MethodGet, callPath("1020", young.TermCallID, ""), nil), http.StatusOK)

	r := h.ctl(http.MethodPut, "/config/chaos", map[string]any{"lagging_node_rate": 0.5, "lagging_node_age": "2s"})
	wantStatus(t, r, http.StatusOK)
	if c := h.sim.Chaos(); c.LaggingNodeRate != 0.5 || c.LaggingNodeAge != 2*time.Second {
		t.Errorf("chaos %+v after PUT /config/chaos, want the lagging node's rate and age", c)
	}
	if err := (nssim.Chaos{LaggingNodeRate: 2, LaggingNodeAge: -time.Second}).Validate(); err == nil {
		t.Error("a rate above 1 and a negative age were accepted")
	}
}

// With LaggingNodeWriteRate the lagging node serves writes too: one addressed to a call younger
// than its lag is answered 404, as a call that does not exist is, and does nothing; one to an
// older call is served. Without it (0, the default) only reads lag, and the same write is applied.
func TestLaggingNodeWrites(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	h := newHarness(t, nssim.Config{Now: clock})
	old := h.placeCall("1000")
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	young := h.placeCall("1020")
	infoOf := func(session string) string {
		t.Helper()
		for _, c := range h.sim.Sessions("TEST") {
			if c.SessionID == session {
				return c.OrigInfo
			}
		}
		t.Fatalf("session %s is not live", session)
		return ""
	}
	lag := nssim.Chaos{LaggingNodeRate: 1, LaggingNodeAge: 30 * time.Second}
	if err := h.sim.SetChaos(lag, 0); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, h.api(http.MethodPatch, callPath("1020", young.TermCallID, "hold"), nil), http.StatusAccepted)
	h.idle()
	if got := infoOf(young.SessionID); got != nssim.InfoHeld {
		t.Fatalf("a hold of a young call with only reads lagging left the caller %q, want held", got)
	}

	lag.LaggingNodeWriteRate = 1
	if err := h.sim.SetChaos(lag, 0); err != nil {
		t.Fatal(err)
	}
	wantError(t, h.api(http.MethodPatch, callPath("1020", young.TermCallID, "unhold"), nil), http.StatusNotFound, "Call not found")
	wantError(t, h.api(http.MethodDelete, callPath("1020", young.TermCallID, ""), nil), http.StatusNotFound, "Call not found")
	h.idle()
	if got := infoOf(young.SessionID); got != nssim.InfoHeld {
		t.Errorf("a lagging node's 404 to an unhold left the caller %q, want held still (nothing done)", got)
	}
	wantStatus(t, h.api(http.MethodPatch, callPath("1000", old.TermCallID, "hold"), nil), http.StatusAccepted)
	h.idle()
	if got := infoOf(old.SessionID); got != nssim.InfoHeld {
		t.Errorf("a hold of a call older than the lag left the caller %q, want held", got)
	}

	r := h.ctl(http.MethodPut, "/config/chaos", map[string]any{"lagging_node_rate": 1, "lagging_node_age": "30s", "lagging_node_write_rate": 0.5})
	wantStatus(t, r, http.StatusOK)
	if c := h.sim.Chaos(); c.LaggingNodeWriteRate != 0.5 {
		t.Errorf("chaos %+v after PUT /config/chaos with lagging_node_write_rate, want 0.5", c)
	}
	var state struct {
		LaggingNodeWriteRate float64 `json:"lagging_node_write_rate"`
	}
	h.ctl(http.MethodGet, "/config/chaos", nil).decode(t, &state)
	if state.LaggingNodeWriteRate != 0.5 {
		t.Errorf("GET /config/chaos does not show lagging_node_write_rate 0.5")
	}
	if err := (nssim.Chaos{LaggingNodeWriteRate: 1.5}).Validate(); err == nil {
		t.Error("a write rate above 1 was accepted")
	}
}
