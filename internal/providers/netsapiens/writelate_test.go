package netsapiens_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// The keepers of two processes on a PBX applying subscription writes late
// (nssim SubscriptionWriteDelay, held until the test applies them), and on
// one applying them at once: a process alone leaves nothing once its
// delete is applied; a maker closing while its adopter still runs leaves
// the subscription to it. (Late and shared, the maker tells the adopter's
// write by the second its expiry ends on alone, which each process draws
// at random: TestTheKeeperWithSubscriptionWritesAppliedLate plays it with
// the seconds set.)
func TestTheKeeperLeavesNothingAndDeletesNothingUnderASharerWithWritesAppliedLate(t *testing.T) {
	for _, tc := range []struct{ late, shared bool }{{false, false}, {false, true}, {true, false}} {
		late, shared := tc.late, tc.shared
		name := map[bool]string{false: "at once", true: "late"}[late] + ", " + map[bool]string{false: "alone", true: "shared"}[shared]
		t.Run(name, func(t *testing.T) {
			simCfg := nssim.Config{}
			if late {
				simCfg.SubscriptionWriteDelay = time.Hour
			}
			rig := newSubRig(t, simCfg, netsapiens.Config{})
			rig.client.WatchStarted("test")
			rig.waitSim(t, "the maker's create", func() bool { return rig.count(nssim.OpSubscriptionCreate, http.StatusOK) == 1 })
			// Its read after the create (404 while it is not applied).
			rig.waitSim(t, "the read after the create", func() bool {
				return rig.count(nssim.OpSubscriptionRead, http.StatusOK)+rig.count(nssim.OpSubscriptionRead, http.StatusNotFound) > 0
			})
			rig.sim.ApplySubscriptionWrites()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if shared {
				adopter, err := netsapiens.New(netsapiens.Config{BaseURL: rig.pbxURL, APIKey: apiKey, RetryBase: time.Millisecond,
					SubscriptionTTL: 2 * time.Hour, EventURL: func(d string) string { return rig.postURL + d }})
				if err != nil {
					t.Fatal(err)
				}
				defer adopter.Close(ctx)
				reads := rig.count(nssim.OpSubscriptionRead, http.StatusOK)
				adopter.WatchStarted("test")
				// The adoption: its read before, its PUT, its read after.
				rig.waitSim(t, "the adoption", func() bool {
					return rig.count(nssim.OpSubscriptionUpdate, http.StatusAccepted) == 1 && rig.count(nssim.OpSubscriptionRead, http.StatusOK) >= reads+2
				})
				rig.sim.ApplySubscriptionWrites()
			}
			if err := rig.client.Close(ctx); err != nil {
				t.Fatal(err)
			}
			rig.sim.ApplySubscriptionWrites()
			if left := len(rig.sim.Subscriptions()); left != map[bool]int{false: 0, true: 1}[shared] {
				t.Fatalf("%d subscriptions left after the maker's Close; want one only under a sharer (%v)", left, shared)
			}
		})
	}
}
