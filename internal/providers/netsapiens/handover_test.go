package netsapiens_test

import (
	"context"
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
