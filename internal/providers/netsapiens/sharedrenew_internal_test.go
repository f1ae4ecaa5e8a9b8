package netsapiens

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// Two replicas posting to one post-url renew their shared subscription in
// turn. At the older one's end the last write may be its own (the other's
// renewal came before it): the read before the delete then shows the
// expiry it wrote, and took the subscription for its own alone. Its
// renewal, reading the subscription first, saw the other's write since
// its own: a subscription another process renewed within the last TTL is
// still that process's, and is left. One whose renewals see no other
// write is deleted, as before. (The keeper renews on the wall clock, at
// half a TTL: the renewal is called here directly.)
func TestARenewalThatSeesAnotherProcesssWriteLeavesTheSubscriptionShared(t *testing.T) {
	for _, shared := range []bool{true, false} {
		t.Run(map[bool]string{true: "renewed by another", false: "renewed by none other"}[shared], func(t *testing.T) {
			const key = "nsd_SeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCr1234abcd"
			sim := nssim.New(nssim.Config{APIKeys: map[string]nssim.KeyScope{key: {Domain: "TEST"}}, SubscriptionLag: time.Hour})
			srv := httptest.NewServer(sim.APIHandler())
			t.Cleanup(func() { srv.Close(); sim.Close() })
			eventURL := func(d string) string { return "https://transferd.example/events/" + d }
			newClient := func(ttl time.Duration) *Client {
				c, err := New(Config{BaseURL: srv.URL, APIKey: key, RetryBase: time.Millisecond, SubscriptionTTL: ttl, EventURL: eventURL})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.subs.stop() })
				return c
			}
			older, other := newClient(time.Hour), newClient(2*time.Hour)
			id, written, _, _, err := older.subs.create("TEST")
			if err != nil || written == "" {
				t.Fatalf("create: %q, %q, %v", id, written, err)
			}
			d := &domainSub{id: id, written: written}
			if shared {
				// The other replica adopts it (its create's 409) and
				// renews it; then the older one renews it after.
				if oid, _, _, _, err := other.subs.create("TEST"); err != nil || oid != id {
					t.Fatalf("the other's create: %q, %v; want %s adopted", oid, err, id)
				}
			}
			if err := older.subs.renew("TEST", d); err != nil {
				t.Fatal(err)
			}
			if err := older.subs.delete(context.Background(), "TEST", d); err != nil {
				t.Fatal(err)
			}
			left := len(sim.Subscriptions()) == 1
			if left != shared {
				t.Errorf("subscription left %v after the older process's delete; want left only if another renewed it (%v)", left, shared)
			}
			deletes := 0
			for _, r := range sim.Requests() {
				if r.Operation == nssim.OpSubscriptionDelete && r.Status == http.StatusAccepted {
					deletes++
				}
			}
			if (deletes == 0) != shared {
				t.Errorf("%d deletions; want one only if no other process renewed it", deletes)
			}
		})
	}
}
