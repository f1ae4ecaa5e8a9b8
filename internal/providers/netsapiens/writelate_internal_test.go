package netsapiens

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// subTestKey is the API key of the tests below.
const subTestKey = "nsd_SeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCr1234abcd"

// newSubSim serves a simulator applying subscription writes after delay
// (held until ApplySubscriptionWrites: an hour).
func newSubSim(t *testing.T, delay time.Duration) (*nssim.Sim, string) {
	t.Helper()
	sim := nssim.New(nssim.Config{APIKeys: map[string]nssim.KeyScope{subTestKey: {Domain: "TEST"}}, SubscriptionLag: time.Hour,
		SubscriptionWriteDelay: delay})
	srv := httptest.NewServer(sim.APIHandler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	return sim, srv.URL
}

// newSubClient is a process's client whose expiries end on second mark,
// reckoned from now when given.
func newSubClient(t *testing.T, url string, ttl time.Duration, mark int, now func() time.Time) *Client {
	t.Helper()
	c, err := New(Config{BaseURL: url, APIKey: subTestKey, RetryBase: time.Millisecond, SubscriptionTTL: ttl,
		EventURL: func(d string) string { return "https://transferd.example/events/" + d }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.subs.stop() })
	c.subs.mark = mark
	if now != nil {
		c.subs.now = now
	}
	return c
}

func subDeletes(sim *nssim.Sim) int {
	n := 0
	for _, r := range sim.Requests() {
		if r.Operation == nssim.OpSubscriptionDelete && r.Status == http.StatusAccepted {
			n++
		}
	}
	return n
}

// Writes of one TTL within one second wrote the same expiry, and no read
// told them apart: a replica adopting the subscription in the second its
// maker made it (replicas starting together, a restart overlap) learned
// nothing of its own write (the read after showed what the read before
// did), and the maker, reading at its end the expiry it had written,
// deleted the subscription under the adopter. Each process's expiries end
// on a second of its own: two processes that drew different seconds write
// different expiries whenever they write. A process alone still deletes
// its own.
func TestWritesOfOneTTLInOneSecondAreToldApart(t *testing.T) {
	for _, shared := range []bool{true, false} {
		t.Run(map[bool]string{true: "adopted in the same second", false: "alone"}[shared], func(t *testing.T) {
			sim, url := newSubSim(t, 0)
			at := time.Now()
			now := func() time.Time { return at }
			maker := newSubClient(t, url, time.Hour, 7, now)
			id, written, _, _, err := maker.subs.create("TEST")
			if err != nil || written == "" {
				t.Fatalf("the maker's create: %q, %q, %v", id, written, err)
			}
			if shared {
				adopter := newSubClient(t, url, time.Hour, 23, now)
				aid, awritten, _, adopted, err := adopter.subs.create("TEST")
				if err != nil || aid != id || !adopted || awritten == "" {
					t.Fatalf("the adoption: %q, %q, adopted %v, %v; want %s adopted, its write told from the maker's", aid, awritten, adopted, err, id)
				}
			}
			if err := maker.subs.delete(context.Background(), "TEST", &domainSub{id: id, written: written}); err != nil {
				t.Fatal(err)
			}
			if left := len(sim.Subscriptions()); (left == 1) != shared || (subDeletes(sim) == 0) != shared {
				t.Errorf("%d subscriptions left, %d deletions by the maker; want it left only under an adopter (%v)", left, subDeletes(sim), shared)
			}
		})
	}
}

// The keeper on both sides of a PBX applying subscription writes late
// (nssim SubscriptionWriteDelay; PUT and DELETE answer 202 [doc]): a read
// right after a write shows the subscription as it was (a create's, 404),
// so no write of a process is known from its read after. A process alone
// deletes its subscription (nothing left once the writes are applied),
// and its renewals are not taken for another's writes; a maker letting go
// while its adopter still runs leaves the subscription, which it told from
// its own by the adopter's expiry alone; the adopter, whose renewal then
// finds the maker gone, deletes it at its end. Applied at once, the same.
func TestTheKeeperWithSubscriptionWritesAppliedLate(t *testing.T) {
	for _, late := range []bool{false, true} {
		for _, shared := range []bool{false, true} {
			name := map[bool]string{false: "at once", true: "late"}[late] + ", " + map[bool]string{false: "alone", true: "shared"}[shared]
			t.Run(name, func(t *testing.T) {
				delay := time.Duration(0)
				if late {
					delay = time.Hour
				}
				sim, url := newSubSim(t, delay)
				maker := newSubClient(t, url, time.Hour, 7, nil)
				id, written, _, _, err := maker.subs.create("TEST")
				if err != nil {
					t.Fatal(err)
				}
				if late && written != "" {
					t.Fatalf("a create applied late learned its write %q", written)
				}
				sim.ApplySubscriptionWrites()
				md := &domainSub{id: id, written: written}
				if !shared {
					for _, ttl := range []time.Duration{2 * time.Hour, 3 * time.Hour} {
						maker.subs.ttl = ttl
						if err := maker.subs.renew("TEST", md); err != nil {
							t.Fatal(err)
						}
						sim.ApplySubscriptionWrites()
					}
					if !md.sharedAt.IsZero() {
						t.Errorf("a renewal of a process alone took its own write for another's (%+v)", md)
					}
					if err := maker.subs.delete(context.Background(), "TEST", md); err != nil {
						t.Fatal(err)
					}
					sim.ApplySubscriptionWrites()
					if left := sim.Subscriptions(); len(left) != 0 || subDeletes(sim) != 1 {
						t.Errorf("a process alone left %+v (%d deletions)", left, subDeletes(sim))
					}
					return
				}
				at := time.Now()
				adopter := newSubClient(t, url, 2*time.Hour, 23, func() time.Time { return at })
				aid, awritten, makerAt, adopted, err := adopter.subs.create("TEST")
				if err != nil || aid != id || !adopted {
					t.Fatalf("the adoption: %q, adopted %v, %v; want %s adopted", aid, adopted, err, id)
				}
				sim.ApplySubscriptionWrites()
				if err := maker.subs.delete(context.Background(), "TEST", md); err != nil {
					t.Fatal(err)
				}
				sim.ApplySubscriptionWrites()
				if left := sim.Subscriptions(); len(left) != 1 || subDeletes(sim) != 0 {
					t.Fatalf("the maker let go under its adopter: %+v left, %d deletions", left, subDeletes(sim))
				}
				d := &domainSub{id: id, written: awritten, adopted: true, makerAt: makerAt, adoptedAt: at}
				// The renewal comes once the maker's was due: one made
				// before cannot find it gone.
				at = at.Add(3 * time.Hour)
				adopter.subs.ttl = 3 * time.Hour
				if err := adopter.subs.renew("TEST", d); err != nil {
					t.Fatal(err)
				}
				sim.ApplySubscriptionWrites()
				if !d.sharedAt.IsZero() || d.adopted {
					t.Errorf("the adopter's renewal, the maker gone: %+v; want its own writes seen as its own, the maker found gone", d)
				}
				if err := adopter.subs.delete(context.Background(), "TEST", d); err != nil {
					t.Fatal(err)
				}
				sim.ApplySubscriptionWrites()
				if left := sim.Subscriptions(); len(left) != 0 || subDeletes(sim) != 1 {
					t.Errorf("the adopter, last, left %+v (%d deletions)", left, subDeletes(sim))
				}
			})
		}
	}
}
