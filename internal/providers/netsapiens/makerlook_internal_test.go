package netsapiens

import (
	"context"
	"testing"
	"time"
)

// Each process draws the second of the minute its expiries end on, for a
// TTL of markTTL or more; a shorter TTL's expiries follow the clock (its
// renewals would write the same expiry within a minute).
func TestEachProcessDrawsTheSecondItsExpiriesEndOn(t *testing.T) {
	for _, ttl := range []time.Duration{markTTL, markTTL - time.Second} {
		c, err := New(Config{BaseURL: "http://pbx.invalid", APIKey: subTestKey, SubscriptionTTL: ttl,
			EventURL: func(d string) string { return "https://transferd.example/events/" + d }})
		if err != nil {
			t.Fatal(err)
		}
		s := c.subs
		s.stop()
		if drawn := s.mark >= 0 && s.mark < 60; drawn != (ttl >= markTTL) {
			t.Fatalf("TTL %v: mark %d", ttl, s.mark)
		}
		t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
		for _, after := range []time.Duration{0, 17 * time.Second, 43 * time.Second, 59 * time.Second} {
			at := t0.Add(after)
			s.now = func() time.Time { return at }
			e, ok := parseExpiry(s.expiry())
			if !ok {
				t.Fatalf("TTL %v: expiry %q", ttl, s.expiry())
			}
			least := at.Add(ttl + easternmost)
			want := least.Second()
			if ttl >= markTTL {
				want = s.mark
			}
			if e.Second() != want || e.Before(least) || !e.Before(least.Add(time.Minute)) {
				t.Errorf("TTL %v, written at %v: expiry %v; want one ending on second %d, within a minute of %v", ttl, at, e, want, least)
			}
		}
	}
}

// Two processes that drew the same second are told apart as before the
// seconds were drawn: by the expiry each read after its own write, where
// their writes differ (another TTL, another minute). The maker, reading
// the adopter's write, leaves the subscription to it.
func TestProcessesThatDrewTheSameSecondAreToldApartByTheirWrites(t *testing.T) {
	sim, url := newSubSim(t, 0)
	at := time.Now()
	now := func() time.Time { return at }
	maker := newSubClient(t, url, time.Hour, 7, now)
	id, written, _, _, err := maker.subs.create("TEST")
	if err != nil || written == "" {
		t.Fatalf("the maker's create: %q, %q, %v", id, written, err)
	}
	adopter := newSubClient(t, url, 2*time.Hour, 7, now)
	if aid, awritten, _, adopted, err := adopter.subs.create("TEST"); err != nil || aid != id || !adopted || awritten == "" {
		t.Fatalf("the adoption: %q, %q, adopted %v, %v; want %s adopted, its write known", aid, awritten, adopted, err, id)
	}
	if err := maker.subs.delete(context.Background(), "TEST", &domainSub{id: id, written: written}); err != nil {
		t.Fatal(err)
	}
	if left := len(sim.Subscriptions()); left != 1 || subDeletes(sim) != 0 {
		t.Errorf("%d subscriptions left, %d deletions: the maker took the adopter's write for its own", left, subDeletes(sim))
	}
}

// A subscription whose maker, as the adoption's reads tell, wrote it last
// more than half a TTL and renewSlack before (a killed process's) is not
// waited for: the adopter letting go before a renewal of its own deletes
// it. One written since is waited for.
func TestAnAdopterDeletesASubscriptionItsMakerLeftOverHalfATTLAgo(t *testing.T) {
	for _, tc := range []struct {
		makerAgo time.Duration
		deleted  bool
	}{
		{makerAgo: 40 * time.Minute, deleted: true},
		{makerAgo: 25 * time.Minute, deleted: false},
	} {
		t.Run(tc.makerAgo.String(), func(t *testing.T) {
			sim, url := newSubSim(t, 0)
			t0 := time.Now()
			maker := newSubClient(t, url, time.Hour, 7, func() time.Time { return t0.Add(-tc.makerAgo) })
			if _, _, _, _, err := maker.subs.create("TEST"); err != nil {
				t.Fatal(err)
			}
			adopter := newSubClient(t, url, time.Hour, 23, func() time.Time { return t0 })
			id, written, makerAt, adopted, err := adopter.subs.create("TEST")
			if err != nil || !adopted || makerAt.IsZero() {
				t.Fatalf("the adoption: %q, maker at %v, adopted %v, %v", id, makerAt, adopted, err)
			}
			if err := adopter.subs.delete(context.Background(), "TEST", &domainSub{id: id, written: written, adopted: true, makerAt: makerAt}); err != nil {
				t.Fatal(err)
			}
			if left := len(sim.Subscriptions()); (left == 0) != tc.deleted || (subDeletes(sim) == 1) != tc.deleted {
				t.Errorf("%d subscriptions left, %d deletions; want it deleted %v", left, subDeletes(sim), tc.deleted)
			}
		})
	}
}

// On a PBX applying writes late, an adoption's read after shows the
// maker's expiry still: it tells neither the adopter's write nor when the
// maker wrote last, and the adopter leaves the subscription until a
// renewal of its own has looked. A renewal whose reads could not tell
// another's write (its read before shows the maker's expiry, the adoption
// not applied yet, and no read has shown the adopter's second) has not
// looked: the subscription is left as before it.
func TestAnAdopterThatCouldNotLookForItsMakerLeavesTheSubscription(t *testing.T) {
	for _, renewed := range []bool{false, true} {
		t.Run(map[bool]string{false: "not renewed", true: "renewed, its reads telling nothing"}[renewed], func(t *testing.T) {
			sim, url := newSubSim(t, time.Hour)
			maker := newSubClient(t, url, time.Hour, 7, nil)
			id, _, _, _, err := maker.subs.create("TEST")
			if err != nil {
				t.Fatal(err)
			}
			sim.ApplySubscriptionWrites()
			adopter := newSubClient(t, url, 2*time.Hour, 23, nil)
			aid, written, makerAt, adopted, err := adopter.subs.create("TEST")
			if err != nil || aid != id || !adopted || written != "" || !makerAt.IsZero() {
				t.Fatalf("the adoption: %q, %q, maker at %v, adopted %v, %v; want %s adopted, nothing told", aid, written, makerAt, adopted, err, id)
			}
			d := &domainSub{id: id, written: written, adopted: true, makerAt: makerAt}
			if renewed {
				adopter.subs.ttl = 3 * time.Hour
				if err := adopter.subs.renew("TEST", d); err != nil {
					t.Fatal(err)
				}
			}
			sim.ApplySubscriptionWrites()
			if err := adopter.subs.delete(context.Background(), "TEST", d); err != nil {
				t.Fatal(err)
			}
			sim.ApplySubscriptionWrites()
			if left := len(sim.Subscriptions()); left != 1 || subDeletes(sim) != 0 {
				t.Errorf("%d subscriptions left, %d deletions by an adopter that never looked for its maker", left, subDeletes(sim))
			}
		})
	}
}

// The adoption's estimate of its maker's last write compares two
// expiries, each rounded up to its writer's second (up to a minute). The
// adopter's own rounding, which it knows, made the maker look up to a
// minute older, half of renewSlack: a live maker whose renewal came 70 s
// late (its reads and PUT retried) looked gone, and an adopter letting
// go before its first renewal deleted the subscription under it. Only the
// maker's rounding, which makes it look younger, is left in.
func TestTheAdoptionsEstimateLeavesOutTheAdoptersOwnRounding(t *testing.T) {
	sim, url := newSubSim(t, 0)
	t0 := time.Now().Truncate(time.Second)
	makerAt := t0.Add(-(30*time.Minute + 70*time.Second))
	// The maker's expiry rounded up by nothing, the adopter's by 59 s.
	maker := newSubClient(t, url, time.Hour, makerAt.Add(time.Hour+easternmost).Second(), func() time.Time { return makerAt })
	if _, _, _, _, err := maker.subs.create("TEST"); err != nil {
		t.Fatal(err)
	}
	adopter := newSubClient(t, url, time.Hour, (t0.Add(time.Hour+easternmost).Second()+59)%60, func() time.Time { return t0 })
	id, written, est, adopted, err := adopter.subs.create("TEST")
	if err != nil || !adopted || est.IsZero() {
		t.Fatalf("the adoption: %q, maker at %v, adopted %v, %v", id, est, adopted, err)
	}
	if est.Before(makerAt) {
		t.Errorf("the maker's last write, at %v, taken for %v", makerAt, est)
	}
	if err := adopter.subs.delete(context.Background(), "TEST", &domainSub{id: id, written: written, adopted: true, makerAt: est}); err != nil {
		t.Fatal(err)
	}
	if left := len(sim.Subscriptions()); left != 1 || subDeletes(sim) != 0 {
		t.Errorf("%d subscriptions left, %d deletions under a maker 70 s late", left, subDeletes(sim))
	}
}
