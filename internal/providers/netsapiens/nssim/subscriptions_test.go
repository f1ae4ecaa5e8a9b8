package nssim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// officialSchema returns a schema of the official NS API v2 spec: a component, or the
// request body of an operation.
func officialSchema(t *testing.T, name string) *openapi3.Schema {
	t.Helper()
	data, err := os.ReadFile("../testdata/netsapiens-api-v2-calls.openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(data)
	if err != nil {
		t.Fatal(err)
	}
	switch name {
	case "CreateSubscription":
		return doc.Paths.Value("/subscriptions").Post.RequestBody.Value.Content.Get("application/json").Schema.Value
	case "UpdateSubscription":
		return doc.Paths.Value("/subscriptions/{id}").Put.RequestBody.Value.Content.Get("application/json").Schema.Value
	case "DeleteSubscription":
		return doc.Paths.Value("/subscriptions/{id}").Delete.RequestBody.Value.Content.Get("application/json").Schema.Value
	}
	ref := doc.Components.Schemas[name]
	if ref == nil {
		t.Fatalf("%s missing from the official spec", name)
	}
	return ref.Value
}

// conforms checks a JSON document against a schema of the official spec.
func conforms(t *testing.T, schema *openapi3.Schema, what string, raw []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := schema.VisitJSON(v); err != nil {
		t.Errorf("%s does not match the official schema: %v\n%s", what, err, raw)
	}
}

// collector receives subscription posts.
type collector struct {
	mu    sync.Mutex
	posts [][]map[string]any
	ids   []string
	fail  bool
	got   chan struct{}
}

func newCollector(t *testing.T) (*collector, *httptest.Server) {
	c := &collector{got: make(chan struct{}, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var arr []map[string]any
		if err := json.Unmarshal(body, &arr); err != nil {
			t.Errorf("a post is not a JSON array: %s", body)
		}
		c.mu.Lock()
		fail := c.fail
		if !fail {
			c.posts = append(c.posts, arr)
			c.ids = append(c.ids, r.Header.Get("X-Correlation-ID"))
		}
		c.mu.Unlock()
		if fail {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		c.got <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	return c, srv
}

// TestSubscriptionsCRUDMatchTheOfficialSpec: what a client sends per the official schemas is
// accepted, and what the simulator answers matches them; filters are immutable, counters
// reset only to 0, DELETE needs its body, a matching subscription is a 409.
func TestSubscriptionsCRUDMatchTheOfficialSpec(t *testing.T) {
	h := newHarness(t, nssim.Config{})
	sub := officialSchema(t, "Subscription")
	create := map[string]any{"model": "call", "post-url": "https://transferd.example/callbacks/x", "domain": "TEST",
		"user": "*", "subscription-geo-support": "yes", "subscription-expires-datetime": "2030-01-02 03:04:05"}
	// The schema says format date-time for the expiry while its description (and real
	// clients) write "YYYY-MM-DD HH:MM:SS": the body is checked without it, and both forms are
	// accepted.
	checked := map[string]any{}
	for k, v := range create {
		if k != "subscription-expires-datetime" {
			checked[k] = v
		}
	}
	raw, _ := json.Marshal(checked)
	conforms(t, officialSchema(t, "CreateSubscription"), "the create body", raw)
	r := h.api("POST", "/subscriptions", create)
	if r.status != http.StatusOK {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	conforms(t, sub, "the created subscription", r.body)
	var got nssim.Subscription
	r.decode(t, &got)
	if got.Status != "pending" || got.Domain != "TEST" || got.Model != "call" || got.ErrorCount != 0 ||
		got.Expires != "2030-01-02T03:04:05Z" || got.GeoSupport != "yes" {
		t.Fatalf("created %+v", got)
	}
	if r := h.api("POST", "/subscriptions", create); r.status != http.StatusConflict {
		t.Fatalf("a matching subscription: %d, want 409", r.status)
	}
	if r := h.api("POST", "/subscriptions", map[string]any{"model": "call", "post-url": "https://x.example/", "domain": "*"}); r.status != http.StatusForbidden {
		t.Fatalf("domain * with a domain key: %d, want 403", r.status)
	}
	if r := h.api("POST", "/subscriptions", map[string]any{"model": "calls", "post-url": "https://x.example/"}); r.status != http.StatusBadRequest {
		t.Fatalf("an unknown model: %d, want 400", r.status)
	}
	r = h.api("GET", "/subscriptions", nil)
	var list []json.RawMessage
	r.decode(t, &list)
	if r.status != http.StatusOK || len(list) != 1 {
		t.Fatalf("list: %d %s", r.status, r.body)
	}
	conforms(t, sub, "a listed subscription", list[0])
	r = h.api("GET", "/subscriptions/"+got.ID, nil)
	conforms(t, sub, "a read subscription", r.body)

	update := map[string]any{"subscription-expires-datetime": "2031-01-01T00:00:00Z", "error-count": 0}
	raw, _ = json.Marshal(update)
	conforms(t, officialSchema(t, "UpdateSubscription"), "the update body", raw)
	if r := h.api("PUT", "/subscriptions/"+got.ID, update); r.status != http.StatusAccepted {
		t.Fatalf("renew: %d %s", r.status, r.body)
	} else {
		conforms(t, officialSchema(t, "SuccessResponse"), "the update's answer", r.body)
	}
	if r := h.api("PUT", "/subscriptions/"+got.ID, map[string]any{"domain": "OTHER"}); r.status != http.StatusBadRequest {
		t.Fatalf("a filter changed: %d, want 400", r.status)
	}
	if r := h.api("PUT", "/subscriptions/"+got.ID, map[string]any{"posts-count": 3}); r.status != http.StatusBadRequest {
		t.Fatalf("a counter set to 3: %d, want 400", r.status)
	}
	if subs := h.sim.Subscriptions(); subs[0].Expires != "2031-01-01T00:00:00Z" {
		t.Fatalf("after the renewal: %+v", subs[0])
	}
	if r := h.api("DELETE", "/subscriptions/"+got.ID, nil); r.status != http.StatusBadRequest {
		t.Fatalf("DELETE without its body: %d, want 400", r.status)
	}
	del := map[string]any{"subscription_id": got.ID, "domain": "TEST"}
	raw, _ = json.Marshal(del)
	conforms(t, officialSchema(t, "DeleteSubscription"), "the delete body", raw)
	if r := h.api("DELETE", "/subscriptions/"+got.ID, del); r.status != http.StatusAccepted {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := h.api("GET", "/subscriptions/"+got.ID, nil); r.status != http.StatusNotFound {
		t.Fatalf("read after delete: %d", r.status)
	}
}

// TestSubscriptionPosts: each tick posts the sessions that changed as a JSON array, a
// session's end as its last object with "remove":"yes", and counts posts and errors (a
// status above 302 is an error; three in a row make the status "error").
func TestSubscriptionPosts(t *testing.T) {
	for _, names := range []string{nssim.NamesLegacy, nssim.NamesHyphenated} {
		t.Run(names, func(t *testing.T) {
			// A lag far longer than the test: every tick is made by PostSubscriptions.
			h := newHarness(t, nssim.Config{SubscriptionLag: time.Hour, SubscriptionNames: names})
			c, rcv := newCollector(t)
			r := h.api("POST", "/subscriptions", map[string]any{"model": "call", "post-url": rcv.URL, "domain": "TEST"})
			var sub nssim.Subscription
			r.decode(t, &sub)
			call, err := h.sim.PlaceCall(nssim.InboundCall{User: "1000"})
			if err != nil {
				t.Fatal(err)
			}
			h.sim.PostSubscriptions(h.ctx())
			h.sim.PostSubscriptions(h.ctx()) // nothing changed: no post
			if err := h.sim.Hangup(call.SessionID, "orig"); err != nil {
				t.Fatal(err)
			}
			h.sim.PostSubscriptions(h.ctx())
			c.mu.Lock()
			posts, ids := c.posts, c.ids
			c.mu.Unlock()
			if len(posts) != 2 || len(posts[0]) != 1 || len(posts[1]) != 1 || ids[0] != sub.ID {
				t.Fatalf("posts %v (X-Correlation-ID %v)", posts, ids)
			}
			idKey, removeKey := "orig_callid", "remove"
			if names == nssim.NamesHyphenated {
				idKey, removeKey = "call-orig-call-id", "call-remove"
			}
			if posts[0][0][idKey] != call.OrigCallID || posts[0][0][removeKey] != nil || posts[1][0][removeKey] != "yes" {
				t.Fatalf("posts %v", posts)
			}
			got := h.sim.Subscriptions()[0]
			if got.Status != "active" || got.PostsCount != 2 || got.ErrorCount != 0 {
				t.Fatalf("after two posts: %+v", got)
			}
			c.mu.Lock()
			c.fail = true
			c.mu.Unlock()
			for range 3 {
				if _, err := h.sim.PlaceCall(nssim.InboundCall{User: "1000"}); err != nil {
					t.Fatal(err)
				}
				h.sim.PostSubscriptions(h.ctx())
			}
			if got := h.sim.Subscriptions()[0]; got.Status != "error" || got.ErrorCount != 3 || got.PostsCount != 5 {
				t.Fatalf("after three failed posts: %+v", got)
			}
		})
	}
}

// TestSubscriptionPostsOnTheirOwn: with a short lag the loop posts without being asked.
func TestSubscriptionPostsOnTheirOwn(t *testing.T) {
	h := newHarness(t, nssim.Config{SubscriptionLag: 10 * time.Millisecond})
	c, rcv := newCollector(t)
	h.api("POST", "/subscriptions", map[string]any{"model": "call", "post-url": rcv.URL, "domain": "TEST"})
	if _, err := h.sim.PlaceCall(nssim.InboundCall{User: "1000"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.got:
	case <-h.ctx().Done():
		t.Fatal("no post arrived")
	}
}

// An expiry written with no zone is read in Config.SubscriptionZone [G], and read back with
// that zone's offset: two hours east of UTC, "12:00:00" is 10:00 UTC.
func TestSubscriptionExpiryZone(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 3, 4, 9, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	h := newHarness(t, nssim.Config{SubscriptionZone: 2 * time.Hour, Now: clock})
	r := h.api("POST", "/subscriptions", map[string]any{"model": "call", "post-url": "https://transferd.example/callbacks/x",
		"domain": "TEST", "subscription-expires-datetime": "2026-03-04 12:00:00"})
	wantStatus(t, r, http.StatusOK)
	var got nssim.Subscription
	r.decode(t, &got)
	if got.Expires != "2026-03-04T12:00:00+02:00" {
		t.Fatalf("expiry read back %q, want 12:00 at +02:00", got.Expires)
	}
	if subs := h.sim.Subscriptions(); len(subs) != 1 {
		t.Fatalf("subscriptions %+v at 09:00 UTC, want the one expiring at 10:00 UTC", subs)
	}
	mu.Lock()
	now = now.Add(61 * time.Minute)
	mu.Unlock()
	if subs := h.sim.Subscriptions(); len(subs) != 0 {
		t.Fatalf("subscriptions %+v at 10:01 UTC, want none", subs)
	}
	if err := (nssim.Config{SubscriptionZone: 15 * time.Hour}).Validate(); err == nil {
		t.Error("a zone 15 hours east was accepted")
	}
}

// SubscriptionExpiryMinutes stores an expiry without its seconds, a create's and a renewal's;
// by default they are kept.
func TestSubscriptionExpiryMinutes(t *testing.T) {
	for _, minutes := range []bool{false, true} {
		h := newHarness(t, nssim.Config{SubscriptionExpiryMinutes: minutes})
		r := h.api("POST", "/subscriptions", map[string]any{"model": "call", "post-url": "https://transferd.example/callbacks/x",
			"domain": "TEST", "subscription-expires-datetime": "2099-03-04 12:00:37"})
		wantStatus(t, r, http.StatusOK)
		var got nssim.Subscription
		r.decode(t, &got)
		want := map[bool]string{false: "2099-03-04T12:00:37Z", true: "2099-03-04T12:00:00Z"}[minutes]
		if got.Expires != want {
			t.Errorf("minutes %v: the create's expiry read back %q, want %q", minutes, got.Expires, want)
		}
		wantStatus(t, h.api("PUT", "/subscriptions/"+got.ID, map[string]any{"subscription-expires-datetime": "2099-03-04 13:00:59"}), http.StatusAccepted)
		want = map[bool]string{false: "2099-03-04T13:00:59Z", true: "2099-03-04T13:00:00Z"}[minutes]
		if subs := h.sim.Subscriptions(); len(subs) != 1 || subs[0].Expires != want {
			t.Errorf("minutes %v: after a renewal %+v, want its expiry %q", minutes, subs, want)
		}
	}
}

// TestSubscriptionPostURLRendering: SubscriptionPostURL canonical answers a subscription's
// post-url normalised in the create's answer, the listing and a read, and keeps it as written
// (Sim.Subscriptions; the posts go there); verbatim, the default, answers it as written.
func TestSubscriptionPostURLRendering(t *testing.T) {
	const written, canonical = "HTTPS://Transferd.Example:443/callbacks/x", "https://transferd.example/callbacks/x/"
	for _, c := range []struct{ rendering, want string }{{"", written}, {nssim.PostURLCanonical, canonical}} {
		h := newHarness(t, nssim.Config{SubscriptionPostURL: c.rendering})
		r := h.api("POST", "/subscriptions", map[string]any{"model": "call", "post-url": written, "domain": "TEST", "user": "*"})
		var got nssim.Subscription
		r.decode(t, &got)
		var listed []nssim.Subscription
		h.api("GET", "/subscriptions", nil).decode(t, &listed)
		var read nssim.Subscription
		h.api("GET", "/subscriptions/"+got.ID, nil).decode(t, &read)
		if got.PostURL != c.want || len(listed) != 1 || listed[0].PostURL != c.want || read.PostURL != c.want {
			t.Errorf("%q: created %q, listed %+v, read %q; want %q", c.rendering, got.PostURL, listed, read.PostURL, c.want)
		}
		if subs := h.sim.Subscriptions(); len(subs) != 1 || subs[0].PostURL != written {
			t.Errorf("%q: kept %+v, want the post-url as written", c.rendering, subs)
		}
	}
	if err := (nssim.Config{SubscriptionPostURL: "lower"}).Validate(); err == nil {
		t.Error("an unknown rendering validated")
	}
}

// TestSubscriptionWriteDelay: with Config.SubscriptionWriteDelay, a create, a renewal and a
// delete are answered at once and take effect later, in the order they were answered
// (ApplySubscriptionWrites, or WaitApplied once the delay has passed); a create applied late
// that another matches by then does nothing, nor does a renewal applied after its
// subscription expired. Without it, each takes effect before its answer.
func TestSubscriptionWriteDelay(t *testing.T) {
	create := map[string]any{"model": "call", "post-url": "https://transferd.example/callbacks/x", "domain": "TEST",
		"user": "*", "subscription-expires-datetime": "2030-01-02 03:04:05"}
	t.Run("held", func(t *testing.T) {
		h := newHarness(t, nssim.Config{SubscriptionWriteDelay: time.Hour})
		r := h.api("POST", "/subscriptions", create)
		var got nssim.Subscription
		r.decode(t, &got)
		if r.status != http.StatusOK || got.ID == "" || got.Expires != "2030-01-02T03:04:05Z" {
			t.Fatalf("create: %d %s", r.status, r.body)
		}
		if r := h.api("GET", "/subscriptions/"+got.ID, nil); r.status != http.StatusNotFound {
			t.Fatalf("read before the create is applied: %d, want 404", r.status)
		}
		if n := len(h.sim.Subscriptions()); n != 0 {
			t.Fatalf("%d subscriptions before the create is applied", n)
		}
		// Not refused for a create not applied yet, and dropped when applied after it.
		if r := h.api("POST", "/subscriptions", create); r.status != http.StatusOK {
			t.Fatalf("a second create before the first is applied: %d, want 200", r.status)
		}
		h.sim.ApplySubscriptionWrites()
		if subs := h.sim.Subscriptions(); len(subs) != 1 || subs[0].ID != got.ID {
			t.Fatalf("after the creates were applied: %+v, want %s alone", subs, got.ID)
		}
		if r := h.api("POST", "/subscriptions", create); r.status != http.StatusConflict {
			t.Fatalf("a create matching one applied: %d, want 409", r.status)
		}

		for _, at := range []string{"2031-01-01 00:00:00", "2032-01-01 00:00:00"} {
			if r := h.api("PUT", "/subscriptions/"+got.ID, map[string]any{"subscription-expires-datetime": at}); r.status != http.StatusAccepted {
				t.Fatalf("renew: %d %s", r.status, r.body)
			}
		}
		var read nssim.Subscription
		h.api("GET", "/subscriptions/"+got.ID, nil).decode(t, &read)
		if read.Expires != "2030-01-02T03:04:05Z" {
			t.Fatalf("read before the renewals are applied: %s, want the expiry as created", read.Expires)
		}
		del := map[string]any{"subscription_id": got.ID, "domain": "TEST"}
		if r := h.api("DELETE", "/subscriptions/"+got.ID, del); r.status != http.StatusAccepted {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		if subs := h.sim.Subscriptions(); len(subs) != 1 || subs[0].Expires != "2030-01-02T03:04:05Z" {
			t.Fatalf("before the writes are applied: %+v", subs)
		}
		// A write is checked when it arrives: the id is still there.
		if r := h.api("PUT", "/subscriptions/nosuch", map[string]any{"subscription-expires-datetime": "2031-01-01 00:00:00"}); r.status != http.StatusNotFound {
			t.Fatalf("renewing an unknown id: %d, want 404", r.status)
		}
		h.sim.ApplySubscriptionWrites()
		if subs := h.sim.Subscriptions(); len(subs) != 0 {
			t.Fatalf("after the renewals and the delete were applied in order: %+v", subs)
		}
	})
	t.Run("late", func(t *testing.T) {
		h := newHarness(t, nssim.Config{SubscriptionWriteDelay: time.Millisecond})
		r := h.api("POST", "/subscriptions", create)
		var got nssim.Subscription
		r.decode(t, &got)
		if err := h.sim.WaitApplied(h.ctx()); err != nil {
			t.Fatal(err)
		}
		if subs := h.sim.Subscriptions(); len(subs) != 1 || subs[0].ID != got.ID {
			t.Fatalf("after the delay: %+v", subs)
		}
	})
	// A renewal applied after the subscription expired does nothing: it
	// renewed one the PBX had dropped, and brought it back.
	t.Run("expired meanwhile", func(t *testing.T) {
		var now atomic.Int64
		now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
		h := newHarness(t, nssim.Config{SubscriptionWriteDelay: time.Hour, Now: func() time.Time { return time.Unix(0, now.Load()) }})
		var got nssim.Subscription
		h.api("POST", "/subscriptions", create).decode(t, &got)
		h.sim.ApplySubscriptionWrites()
		if r := h.api("PUT", "/subscriptions/"+got.ID, map[string]any{"subscription-expires-datetime": "2031-01-01 00:00:00"}); r.status != http.StatusAccepted {
			t.Fatalf("renew: %d %s", r.status, r.body)
		}
		now.Store(time.Date(2030, 1, 2, 3, 4, 6, 0, time.UTC).UnixNano())
		h.sim.ApplySubscriptionWrites()
		if subs := h.sim.Subscriptions(); len(subs) != 0 {
			t.Fatalf("a renewal applied after the expiry: %+v, want none", subs)
		}
	})
	t.Run("off", func(t *testing.T) {
		h := newHarness(t, nssim.Config{})
		r := h.api("POST", "/subscriptions", create)
		var got nssim.Subscription
		r.decode(t, &got)
		if r := h.api("GET", "/subscriptions/"+got.ID, nil); r.status != http.StatusOK {
			t.Fatalf("read after the create: %d, want 200", r.status)
		}
		h.api("PUT", "/subscriptions/"+got.ID, map[string]any{"subscription-expires-datetime": "2031-01-01 00:00:00"})
		if subs := h.sim.Subscriptions(); len(subs) != 1 || subs[0].Expires != "2031-01-01T00:00:00Z" {
			t.Fatalf("after the renewal's answer: %+v", subs)
		}
		h.api("DELETE", "/subscriptions/"+got.ID, map[string]any{"subscription_id": got.ID, "domain": "TEST"})
		if subs := h.sim.Subscriptions(); len(subs) != 0 {
			t.Fatalf("after the delete's answer: %+v", subs)
		}
	})
}
