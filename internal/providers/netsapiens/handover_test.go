package netsapiens_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// A client built anew for the same account (a reload of the tenants file
// that changed its budget) takes over the old one's subscriptions: the
// old one, released once its last transfer ended, deleted the domain's
// subscription, which the PBX lets the account have once per post-url and
// the new client had adopted, under the transfers the new one drives.
// Shared, the subscription is deleted once neither watches the domain.
func TestASubscriptionHandedOverIsNotDeletedByTheOldClient(t *testing.T) {
	rig := newSubRig(t, nssim.Config{}, netsapiens.Config{SubscriptionLinger: time.Millisecond})
	old := rig.client
	old.WatchStarted("test")
	rig.waitSim(t, "a subscription", func() bool { return len(rig.sim.Subscriptions()) == 1 })
	sub := rig.sim.Subscriptions()[0]

	successor, err := netsapiens.New(netsapiens.Config{BaseURL: rig.pbxURL, APIKey: apiKey, RetryBase: time.Millisecond,
		SubscriptionLinger: time.Millisecond, EventURL: func(d string) string { return rig.postURL + d }})
	if err != nil {
		t.Fatal(err)
	}
	successor.TakeSubscriptions(old)
	successor.WatchStarted("test")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	old.WatchStopped("test")
	if err := old.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if now := rig.sim.Subscriptions(); len(now) != 1 || now[0].ID != sub.ID {
		t.Fatalf("after the old client's release: %+v, want %s kept for the new client's watch", now, sub.ID)
	}
	if n := rig.count(nssim.OpSubscriptionDelete, http.StatusOK) + rig.count(nssim.OpSubscriptionDelete, http.StatusNoContent); n != 0 {
		t.Fatalf("%d deletions while the new client watches the domain", n)
	}

	// Its own end deletes it, after the linger; its Close leaves nothing
	// running.
	successor.WatchStopped("test")
	rig.waitSim(t, "the deletion", func() bool { return len(rig.sim.Subscriptions()) == 0 })
	if err := successor.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if n := rig.count(nssim.OpSubscriptionCreate, http.StatusOK); n != 1 {
		t.Fatalf("%d subscriptions created, want the one shared", n)
	}
}

// A subscription made before a rotation of the callback secret posts with
// a token of the old secret, which the new process only accepts. A PBX
// whose 409 leaves the post-url out of its match refused the new one, and
// find, looking for the new post-url only, never found the old: the
// domain went unsubscribed, and once the old secret was no longer
// accepted its posts were refused. It is now adopted and moved to the new
// post-url. A PBX matching the post-url makes the new one, and the old is
// left to expire as before.
func TestASubscriptionOfAnAcceptedSecretIsMovedToTheNewPostURL(t *testing.T) {
	for _, ignores := range []bool{true, false} {
		t.Run(fmt.Sprintf("match ignores post-url %v", ignores), func(t *testing.T) {
			var rig *subRig
			rig = newSubRig(t, nssim.Config{SubscriptionMatchIgnoresPostURL: ignores}, netsapiens.Config{
				AcceptedEventURLs: func(d string) []string { return []string{rig.postURL + "old-token/" + d} }})
			rig.subscribe(t, rig.postURL+"old-token/test")
			old := rig.sim.Subscriptions()[0]
			rig.client.WatchStarted("test")
			if ignores {
				rig.waitSim(t, "the old subscription moved", func() bool {
					subs := rig.sim.Subscriptions()
					return len(subs) == 1 && subs[0].PostURL == rig.postURL+"test"
				})
				if got := rig.sim.Subscriptions()[0]; got.ID != old.ID {
					t.Errorf("subscription %s, want %s adopted", got.ID, old.ID)
				}
				return
			}
			rig.waitSim(t, "a new subscription", func() bool { return len(rig.sim.Subscriptions()) == 2 })
			for _, s := range rig.sim.Subscriptions() {
				if s.ID == old.ID && s.PostURL != old.PostURL {
					t.Errorf("the old subscription was moved to %s where a new one was made", s.PostURL)
				}
			}
		})
	}
}

// A subscription of an accepted secret is moved only where the domain has
// none posting to the new post-url. On a PBX matching the post-url, the
// 409 of a process that finds the new one made already (by another
// replica, or by itself before a restart) says that one exists; the
// listing, in the order the subscriptions were made, showed the old one
// first, and the old one was moved onto the new post-url: two
// subscriptions posting every event twice (or, on a PBX refusing a
// second match on an update too, a create failing at every try). The
// one posting to the new post-url is adopted, and the old one left as it
// is.
func TestASubscriptionOfTheNewPostURLIsAdoptedBeforeOneOfAnAcceptedSecret(t *testing.T) {
	var rig *subRig
	rig = newSubRig(t, nssim.Config{}, netsapiens.Config{
		AcceptedEventURLs: func(d string) []string { return []string{rig.postURL + "old-token/" + d} }})
	rig.subscribe(t, rig.postURL+"old-token/test")
	rig.subscribe(t, rig.postURL+"test")
	rig.client.WatchStarted("test")
	rig.waitSim(t, "a subscription adopted", func() bool { return rig.count(nssim.OpSubscriptionUpdate, http.StatusAccepted) > 0 })
	subs := rig.sim.Subscriptions()
	if len(subs) != 2 {
		t.Fatalf("%d subscriptions, want the two made", len(subs))
	}
	if subs[0].PostURL != rig.postURL+"old-token/test" {
		t.Errorf("the old subscription was moved to %s while one posted there already", subs[0].PostURL)
	}
}

// A rolling restart that rotates the callback secret: the new process,
// refused a second subscription by a PBX whose 409 leaves the post-url out
// of its match, adopts the old process's and moves it to its own
// post-url. The old process then deleted it, by its Close or once its
// last watch of the domain had lingered, under the new one's transfers
// (the new one subscribed again only when its renewal answered 404,
// polling meanwhile). A subscription that no longer posts to the old
// process's post-url is not its own any more, and is left alone; one
// that still does is deleted, as before (TestSubscriptionLifecycle).
func TestASubscriptionMovedToANewProcessIsNotDeletedByTheOldOne(t *testing.T) {
	// Both renderings of a read's post-url (TestASubscriptionPostingToOurURLAsThePBXRendersItIsOurs).
	for _, c := range []struct {
		closed    bool
		rendering string
	}{{true, nssim.PostURLVerbatim}, {false, nssim.PostURLVerbatim}, {true, nssim.PostURLCanonical}, {false, nssim.PostURLCanonical}} {
		closed := c.closed
		t.Run(fmt.Sprintf("closed %v %s", closed, c.rendering), func(t *testing.T) {
			var rig *subRig
			rig = newSubRig(t, nssim.Config{SubscriptionMatchIgnoresPostURL: true, SubscriptionPostURL: c.rendering}, netsapiens.Config{
				AcceptedEventURLs: func(d string) []string { return []string{rig.postURL + "old-token/" + d} }})
			old, err := netsapiens.New(netsapiens.Config{BaseURL: rig.pbxURL, APIKey: apiKey, RetryBase: time.Millisecond,
				SubscriptionLinger: time.Millisecond, EventURL: func(d string) string { return rig.postURL + "old-token/" + d }})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			defer old.Close(ctx)
			old.WatchStarted("test")
			rig.waitSim(t, "the old process's subscription", func() bool { return len(rig.sim.Subscriptions()) == 1 })
			rig.waitSim(t, "the read after its create", func() bool { return rig.count(nssim.OpSubscriptionRead, http.StatusOK) > 0 })
			sub := rig.sim.Subscriptions()[0]
			rig.client.WatchStarted("test")
			rig.waitSim(t, "the subscription moved", func() bool {
				subs := rig.sim.Subscriptions()
				return len(subs) == 1 && subs[0].PostURL == rig.postURL+"test"
			})
			if closed {
				if err := old.Close(ctx); err != nil {
					t.Fatal(err)
				}
			} else {
				// Reads before it (after the create) are not its look.
				reads := rig.count(nssim.OpSubscriptionRead, http.StatusOK)
				old.WatchStopped("test")
				rig.waitSim(t, "the old process's look at its subscription", func() bool {
					return rig.count(nssim.OpSubscriptionRead, http.StatusOK) > reads ||
						rig.count(nssim.OpSubscriptionDelete, http.StatusAccepted) > 0
				})
				if err := old.Close(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if now := rig.sim.Subscriptions(); len(now) != 1 || now[0].ID != sub.ID {
				t.Fatalf("after the old process let go: %+v, want %s kept for the new process", now, sub.ID)
			}
		})
	}
}
