package netsapiens

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// An adopter leaves the subscription it adopted until a renewal of its own
// has looked for its maker's writes: the maker, if it still runs, writes
// within half a TTL of its last write, which came before the adoption. A
// renewal whose read before shows the adopter's own last write finds the
// maker gone, and the adopter's end deletes the subscription, leaving
// nothing on the PBX; one that shows another write finds it shared, and
// leaves it. (The keeper renews on the wall clock, at half a TTL: renew is
// called here directly, each write a TTL of its own, as writes of one TTL
// within a second write the same expiry where the two processes drew the
// same second to end their expiries on.)
func TestAnAdoptedSubscriptionIsDeletedOnceARenewalShowsItsMakerGone(t *testing.T) {
	for _, tc := range []struct {
		name string
		// renewed: the adopter renews before it lets go; makerRenews: the
		// maker renews between the adoption and that renewal.
		renewed, makerRenews, deleted bool
	}{
		{name: "not renewed since the adoption", deleted: false},
		{name: "renewed, the maker gone", renewed: true, deleted: true},
		{name: "renewed, the maker renewed since the adoption", renewed: true, makerRenews: true, deleted: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const key = "nsd_SeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCr1234abcd"
			sim := nssim.New(nssim.Config{APIKeys: map[string]nssim.KeyScope{key: {Domain: "TEST"}}, SubscriptionLag: time.Hour})
			srv := httptest.NewServer(sim.APIHandler())
			t.Cleanup(func() { srv.Close(); sim.Close() })
			newClient := func(ttl time.Duration) *Client {
				c, err := New(Config{BaseURL: srv.URL, APIKey: key, RetryBase: time.Millisecond, SubscriptionTTL: ttl,
					EventURL: func(d string) string { return "https://transferd.example/events/" + d }})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.subs.stop() })
				return c
			}
			maker, adopter := newClient(time.Hour), newClient(2*time.Hour)
			at := time.Now()
			adopter.subs.now = func() time.Time { return at }
			id, written, _, adopted, err := maker.subs.create("TEST")
			if err != nil || written == "" || adopted {
				t.Fatalf("the maker's create: %q, %q, adopted %v, %v", id, written, adopted, err)
			}
			md := &domainSub{id: id, written: written}
			aid, awritten, makerAt, adopted, err := adopter.subs.create("TEST")
			if err != nil || aid != id || awritten == "" || !adopted || makerAt.IsZero() {
				t.Fatalf("the adoption: %q, %q, maker at %v, adopted %v, %v; want %s adopted, both writes known", aid, awritten, makerAt, adopted, err, id)
			}
			d := &domainSub{id: id, written: awritten, adopted: true, makerAt: makerAt, adoptedAt: at}
			if tc.makerRenews {
				maker.subs.ttl = 3 * time.Hour
				if err := maker.subs.renew("TEST", md); err != nil {
					t.Fatal(err)
				}
			}
			if tc.renewed {
				// Late enough that the maker's renewal was due by then,
				// whatever the TTLs: one made before cannot find it gone.
				at = at.Add(3 * time.Hour)
				adopter.subs.ttl = 4 * time.Hour
				if err := adopter.subs.renew("TEST", d); err != nil {
					t.Fatal(err)
				}
			}
			if err := adopter.subs.delete(context.Background(), "TEST", d); err != nil {
				t.Fatal(err)
			}
			deletes := 0
			for _, r := range sim.Requests() {
				if r.Operation == nssim.OpSubscriptionDelete && r.Status == http.StatusAccepted {
					deletes++
				}
			}
			if left := len(sim.Subscriptions()); (left == 0) != tc.deleted || (deletes == 1) != tc.deleted {
				t.Errorf("%d subscriptions left, %d deletions after the adopter let go; want it deleted %v", left, deletes, tc.deleted)
			}
		})
	}
}
