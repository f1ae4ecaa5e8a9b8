package netsapiens

import (
	"context"
	"testing"
	"time"
)

// An adopter's first renewal comes half a TTL after the adoption; its
// maker's is due half a TTL after its own last write, and may come up to
// renewSlack later. Where the maker wrote within renewSlack before the
// adoption (replicas starting together, a restart overlap, a maker whose
// renewal runs late), the adopter's renewal can come before the maker's:
// its read before shows the adopter's own write, and it took the maker
// for gone. An adopter letting go then deleted the subscription under the
// live maker, which lost its events until its renewal answered 404. Only a
// look made once the maker's renewal was due finds it gone; one made after
// that (a later renewal, or the delete's own read) still does.
func TestAnAdoptersRenewalBeforeItsMakersWasDueDoesNotFindTheMakerGone(t *testing.T) {
	for _, tc := range []struct {
		name string
		// makerRenewsAt is when, after its create, the maker renews (zero:
		// never, killed); deleteAt, when the adopter lets go.
		makerRenewsAt, deleteAt time.Duration
		deleted                 bool
	}{
		{name: "the maker's renewal late, the adopter letting go before it", deleteAt: 30*time.Minute + 20*time.Second, deleted: false},
		{name: "the maker's renewal late, the adopter letting go after it", makerRenewsAt: 31 * time.Minute, deleteAt: 31*time.Minute + 20*time.Second, deleted: false},
		{name: "the maker gone, the adopter letting go once its renewal was due", deleteAt: 32*time.Minute + 10*time.Second, deleted: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, url := newSubSim(t, 0)
			t0 := time.Now().Truncate(time.Second)
			makerClock, adopterClock := t0, t0.Add(5*time.Second)
			// The maker's expiry rounded up by nothing: its last write is
			// estimated to the second.
			maker := newSubClient(t, url, time.Hour, t0.Add(time.Hour+easternmost).Second(), func() time.Time { return makerClock })
			id, written, _, _, err := maker.subs.create("TEST")
			if err != nil || written == "" {
				t.Fatalf("the maker's create: %q, %q, %v", id, written, err)
			}
			md := &domainSub{id: id, written: written}
			adopter := newSubClient(t, url, time.Hour, (t0.Second()+23)%60, func() time.Time { return adopterClock })
			aid, awritten, makerAt, adopted, err := adopter.subs.create("TEST")
			if err != nil || aid != id || awritten == "" || !adopted || !makerAt.Equal(t0) {
				t.Fatalf("the adoption: %q, %q, maker at %v, adopted %v, %v; want %s adopted, the maker's write at %v", aid, awritten, makerAt, adopted, err, id, t0)
			}
			d := &domainSub{id: id, written: awritten, adopted: true, makerAt: makerAt, adoptedAt: adopterClock}
			// The adopter's renewal, half a TTL after the adoption: the
			// maker's, due by now, has not come yet.
			adopterClock = adopterClock.Add(30 * time.Minute)
			if err := adopter.subs.renew("TEST", d); err != nil {
				t.Fatal(err)
			}
			if tc.makerRenewsAt > 0 {
				makerClock = t0.Add(tc.makerRenewsAt)
				if err := maker.subs.renew("TEST", md); err != nil {
					t.Fatalf("the maker's renewal: %v", err)
				}
			}
			adopterClock = t0.Add(tc.deleteAt)
			if err := adopter.subs.delete(context.Background(), "TEST", d); err != nil {
				t.Fatal(err)
			}
			if left := len(sim.Subscriptions()); (left == 0) != tc.deleted || (subDeletes(sim) == 1) != tc.deleted {
				t.Errorf("%d subscriptions left, %d deletions after the adopter let go; want it deleted %v", left, subDeletes(sim), tc.deleted)
			}
			if tc.deleted {
				return
			}
			// The maker, late, renews: the subscription is there.
			makerClock = t0.Add(31*time.Minute + 30*time.Second)
			if err := maker.subs.renew("TEST", md); err != nil {
				t.Errorf("the live maker's renewal after the adopter let go: %v", err)
			}
		})
	}
}

// On a PBX applying writes late the adoption cannot tell when its maker
// wrote last (makerAt unknown), only that it was before the adoption; a
// renewal of the adopter whose read before shows the adoption's write
// (ending on its second: the PBX keeps them) looked before the maker's
// renewal was due unless half a TTL and renewSlack have passed since the
// adoption. Made sooner, it leaves the subscription adopted.
func TestAnAdoptersEarlyRenewalWithTheMakersLastWriteUnknownDoesNotFindItGone(t *testing.T) {
	for _, tc := range []struct {
		name    string
		renewAt time.Duration // after the adoption
		adopted bool
	}{
		{name: "before the maker's renewal was due", renewAt: 30 * time.Minute, adopted: true},
		{name: "once it was due", renewAt: 32 * time.Minute, adopted: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, url := newSubSim(t, time.Hour)
			maker := newSubClient(t, url, time.Hour, 7, nil)
			id, _, _, _, err := maker.subs.create("TEST")
			if err != nil {
				t.Fatal(err)
			}
			sim.ApplySubscriptionWrites()
			at := time.Now()
			adopter := newSubClient(t, url, time.Hour, 23, func() time.Time { return at })
			aid, awritten, makerAt, adopted, err := adopter.subs.create("TEST")
			if err != nil || aid != id || !adopted || !makerAt.IsZero() {
				t.Fatalf("the adoption: %q, maker at %v, adopted %v, %v; want %s adopted, the maker's last write unknown", aid, makerAt, adopted, err, id)
			}
			sim.ApplySubscriptionWrites()
			d := &domainSub{id: id, written: awritten, adopted: true, adoptedAt: at}
			at = at.Add(tc.renewAt)
			if err := adopter.subs.renew("TEST", d); err != nil {
				t.Fatal(err)
			}
			if !adopter.subs.marked.Load() {
				t.Fatal("the renewal's read before did not show the adoption's write")
			}
			if d.adopted != tc.adopted {
				t.Errorf("adopted %v after the renewal; want %v", d.adopted, tc.adopted)
			}
			sim.ApplySubscriptionWrites()
			if err := adopter.subs.delete(context.Background(), "TEST", d); err != nil {
				t.Fatal(err)
			}
			sim.ApplySubscriptionWrites()
			if left := len(sim.Subscriptions()); (left == 0) == tc.adopted {
				t.Errorf("%d subscriptions left, %d deletions; want it deleted %v", left, subDeletes(sim), !tc.adopted)
			}
		})
	}
}
