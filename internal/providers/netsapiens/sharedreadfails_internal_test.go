package netsapiens

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// A process whose renewal saw another's write within the last TTL knows
// the subscription is shared, whatever the delete's own read then answers:
// the other still renews it, and uses it. A delete whose read failed (a
// 5xx after its retries, a timeout) took the subscription for this
// process's alone and deleted it under the other, which lost its events
// until its renewal answered 404 (up to half a TTL). It is left, as when
// the read succeeds; a process that saw no other's write still deletes
// its own when the read fails.
func TestASubscriptionSeenSharedIsLeftWhenTheDeletesReadFails(t *testing.T) {
	for _, shared := range []bool{true, false} {
		t.Run(map[bool]string{true: "shared", false: "alone"}[shared], func(t *testing.T) {
			sim, url := newSubSim(t, 0)
			at := time.Now()
			now := func() time.Time { return at }
			maker := newSubClient(t, url, time.Hour, 7, now)
			id, written, _, _, err := maker.subs.create("TEST")
			if err != nil || written == "" {
				t.Fatalf("the maker's create: %q, %q, %v", id, written, err)
			}
			md := &domainSub{id: id, written: written}
			if shared {
				adopter := newSubClient(t, url, time.Hour, 23, now)
				if aid, _, _, adopted, err := adopter.subs.create("TEST"); err != nil || aid != id || !adopted {
					t.Fatalf("the adoption: %q, adopted %v, %v", aid, adopted, err)
				}
			}
			at = at.Add(30 * time.Minute)
			if err := maker.subs.renew("TEST", md); err != nil {
				t.Fatal(err)
			}
			if md.sharedAt.IsZero() == shared {
				t.Fatalf("the maker's renewal: shared at %v; want the adopter's write seen %v", md.sharedAt, shared)
			}
			at = at.Add(time.Minute)
			sim.InjectFault(nssim.Fault{Operation: nssim.OpSubscriptionRead, Status: http.StatusInternalServerError})
			err = maker.subs.delete(context.Background(), "TEST", md)
			sim.ClearFaults()
			if err != nil {
				t.Fatal(err)
			}
			if left := len(sim.Subscriptions()); (left == 1) != shared || (subDeletes(sim) == 0) != shared {
				t.Errorf("%d subscriptions left, %d deletions by the maker letting go, its read failing; want it left %v", left, subDeletes(sim), shared)
			}
		})
	}
}
