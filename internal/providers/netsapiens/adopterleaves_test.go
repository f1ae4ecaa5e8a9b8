package netsapiens_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// A process that adopted the subscription another process posting to the
// same post-url made (its create refused 409), and lets go before its
// first renewal (a replica that used the domain for one transfer, a
// restart overlap cut short), deleted it at Close or once its watch
// lingered: it knew no write of the maker since its adoption, and took
// the subscription for its own alone. The maker, still running, lost its
// events until its renewal answered 404 (up to half a TTL). Nothing had
// told the adopter that the maker was gone: a live maker writes within
// half a TTL of its last write, which the adopter's first renewal is the
// first look to span, so until then the adopter leaves the subscription
// to its maker. (The maker's own end, seeing the adopter's write, leaves
// it too: the last to let go within a TTL of the other's write leaves it
// to expire, docs/invariants.md.)
func TestAnAdopterLettingGoBeforeItsFirstRenewalLeavesTheSubscription(t *testing.T) {
	for _, closed := range []bool{true, false} {
		t.Run(map[bool]string{true: "closed", false: "unwatched past the linger"}[closed], func(t *testing.T) {
			rig := newSubRig(t, nssim.Config{}, netsapiens.Config{})
			rig.subscribed(t)
			rig.waitSim(t, "the read after the maker's create", func() bool { return rig.count(nssim.OpSubscriptionRead, http.StatusOK) > 0 })
			sub := rig.sim.Subscriptions()[0]
			// Another TTL, so that its write differs from the maker's
			// whatever the second (see sharedsub_test.go).
			adopter, err := netsapiens.New(netsapiens.Config{BaseURL: rig.pbxURL, APIKey: apiKey, RetryBase: time.Millisecond,
				SubscriptionTTL: 2 * time.Hour, SubscriptionLinger: time.Millisecond,
				EventURL: func(d string) string { return rig.postURL + d }})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			defer adopter.Close(ctx)
			adopter.WatchStarted("test")
			rig.waitSim(t, "the adoption", func() bool { return rig.count(nssim.OpSubscriptionUpdate, http.StatusAccepted) > 0 })
			if !closed {
				reads := rig.count(nssim.OpSubscriptionRead, http.StatusOK)
				adopter.WatchStopped("test")
				rig.waitSim(t, "the adopter's look at the subscription", func() bool {
					return rig.count(nssim.OpSubscriptionRead, http.StatusOK) > reads ||
						rig.count(nssim.OpSubscriptionDelete, http.StatusAccepted) > 0
				})
			}
			if err := adopter.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if now := rig.sim.Subscriptions(); len(now) != 1 || now[0].ID != sub.ID {
				t.Fatalf("after the adopter let go: %+v, want %s kept for its maker", now, sub.ID)
			}
			if n := rig.count(nssim.OpSubscriptionDelete, http.StatusAccepted); n != 0 {
				t.Fatalf("%d deletions while the maker uses the subscription", n)
			}
		})
	}
}
