package netsapiens

import (
	"context"
	"testing"
	"time"
)

// A process that adopted another's subscription and let go of it before a
// renewal of its own left it (see delete); the domain's next watch adopts
// it again (its create refused 409), and that adoption's read before shows
// the process's own last write. Its estimate of the other's last write was
// then that write's own time: each watch moved it on, and a process whose
// watches of a domain never lasted half a TTL (short transfers, a linger of
// seconds) never deleted the subscription, at a linger or at its end, long
// after its maker was gone: after a restart overlap, every graceful end
// left it on the PBX to expire (a TTL and up to a day). The adoption now
// keeps what the process knew when it let go: the other has not written
// since, and wrote last no later than then. A maker that renewed since, or
// whose renewal is not due yet, is still waited for.
func TestASubscriptionAdoptedAgainByItsAdopterKeepsItsMakersAge(t *testing.T) {
	for _, tc := range []struct {
		name string
		// makerAgo is how long before the first adoption the maker wrote
		// last; makerRenews, that it renews (half a TTL on) before the
		// second adoption, 20 minutes after the first.
		makerAgo    time.Duration
		makerRenews bool
		deleted     bool
	}{
		{name: "the maker gone", makerAgo: 20 * time.Minute, deleted: true},
		{name: "the maker renewed since", makerAgo: 20 * time.Minute, makerRenews: true, deleted: false},
		{name: "the maker's renewal not due yet", makerAgo: 5 * time.Minute, deleted: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim, url := newSubSim(t, 0)
			t0 := time.Now()
			at := t0
			adopter := newSubClient(t, url, time.Hour, 23, func() time.Time { return at })
			maker := newSubClient(t, url, time.Hour, 7, func() time.Time { return t0.Add(-tc.makerAgo) })
			id, written, _, _, err := maker.subs.create("TEST")
			if err != nil || written == "" {
				t.Fatalf("the maker's create: %q, %q, %v", id, written, err)
			}
			adopt := func() *domainSub {
				t.Helper()
				aid, awritten, makerAt, adopted, err := adopter.subs.create("TEST")
				if err != nil || aid != id || !adopted {
					t.Fatalf("the adoption: %q, adopted %v, %v; want %s adopted", aid, adopted, err, id)
				}
				return &domainSub{id: id, written: awritten, adopted: true, makerAt: makerAt}
			}
			// The first watch ends before a renewal: left to the maker,
			// whose renewal is due within half a TTL.
			if err := adopter.subs.delete(context.Background(), "TEST", adopt()); err != nil {
				t.Fatal(err)
			}
			if len(sim.Subscriptions()) != 1 || subDeletes(sim) != 0 {
				t.Fatalf("the adopter's first end deleted the subscription under its maker")
			}
			if tc.makerRenews {
				maker.subs.now = func() time.Time { return t0.Add(-tc.makerAgo + 30*time.Minute) }
				if err := maker.subs.renew("TEST", &domainSub{id: id, written: written}); err != nil {
					t.Fatal(err)
				}
			}
			// The next watch, 20 minutes on, and its end.
			at = t0.Add(20 * time.Minute)
			if err := adopter.subs.delete(context.Background(), "TEST", adopt()); err != nil {
				t.Fatal(err)
			}
			if left := len(sim.Subscriptions()); (left == 0) != tc.deleted || (subDeletes(sim) == 1) != tc.deleted {
				t.Errorf("%d subscriptions left, %d deletions at the second end; want it deleted %v", left, subDeletes(sim), tc.deleted)
			}
		})
	}
}
