package netsapiens_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// Two processes posting to one post-url (two replicas behind one public
// URL, or a restart overlap without a rotated secret): the PBX lets the
// account have one subscription per post-url, and the second process's
// create, refused 409, adopts the first's and renews it. It is the same
// subscription, the one both use. The older process's Close, or its
// keeper once its last watch of the domain lingered, deleted it under the
// other's transfers (polled until its renewal answered 404, up to half a
// TTL). The newer process's renewal wrote the subscription's expiry after
// the older one's last write: the older one, reading it before the
// delete, sees an expiry it did not write, and leaves the subscription to
// the other. The newer one adopted it and has not renewed it since: it
// cannot tell the older one gone from one still running that has not yet
// renewed (no look of its own spans half a TTL), and leaves it too, to
// expire by itself (TestAnAdopterLettingGoBeforeItsFirstRenewalLeavesTheSubscription;
// an adopter whose renewal saw no other write since deletes it,
// TestAnAdoptedSubscriptionIsDeletedOnceARenewalShowsItsMakerGone).
//
// The two ask for different TTLs: writes of one TTL within one second
// write the same expiry where the two drew the same second to end their
// expiries on (one in sixty), which no read tells apart (see the sections
// of docs/invariants.md).
func TestASubscriptionSharedByAPostURLIsNotDeletedByTheOlderProcess(t *testing.T) {
	for _, closed := range []bool{true, false} {
		name := "unwatched past the linger"
		if closed {
			name = "closed"
		}
		t.Run(name, func(t *testing.T) {
			rig := newSubRig(t, nssim.Config{}, netsapiens.Config{SubscriptionTTL: 2 * time.Hour, SubscriptionLinger: time.Millisecond})
			older, err := netsapiens.New(netsapiens.Config{BaseURL: rig.pbxURL, APIKey: apiKey, RetryBase: time.Millisecond,
				SubscriptionLinger: time.Millisecond, EventURL: func(d string) string { return rig.postURL + d }})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			defer older.Close(ctx)
			older.WatchStarted("test")
			rig.waitSim(t, "the older process's subscription", func() bool { return len(rig.sim.Subscriptions()) == 1 })
			// Its read after the create learns how the PBX renders the
			// expiry it wrote.
			rig.waitSim(t, "the read after its create", func() bool { return rig.count(nssim.OpSubscriptionRead, http.StatusOK) > 0 })
			sub := rig.sim.Subscriptions()[0]
			rig.client.WatchStarted("test")
			rig.waitSim(t, "the subscription adopted", func() bool { return rig.count(nssim.OpSubscriptionUpdate, http.StatusAccepted) > 0 })

			if closed {
				if err := older.Close(ctx); err != nil {
					t.Fatal(err)
				}
			} else {
				reads := rig.count(nssim.OpSubscriptionRead, http.StatusOK)
				older.WatchStopped("test")
				rig.waitSim(t, "the older process's look at its subscription", func() bool {
					return rig.count(nssim.OpSubscriptionRead, http.StatusOK) > reads ||
						rig.count(nssim.OpSubscriptionDelete, http.StatusAccepted) > 0
				})
				if err := older.Close(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if now := rig.sim.Subscriptions(); len(now) != 1 || now[0].ID != sub.ID {
				t.Fatalf("after the older process let go: %+v, want %s kept for the newer one", now, sub.ID)
			}
			if n := rig.count(nssim.OpSubscriptionDelete, http.StatusAccepted); n != 0 {
				t.Fatalf("%d deletions while the newer process uses the subscription", n)
			}
			// The newer one's own end, before its first renewal, leaves it.
			if err := rig.client.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if n := rig.count(nssim.OpSubscriptionDelete, http.StatusAccepted); n != 0 || len(rig.sim.Subscriptions()) != 1 {
				t.Fatalf("%d deletions by an adopter not renewed since its adoption; want the subscription left", n)
			}
		})
	}
}

// The expiry a create's answer shows may be written otherwise than a
// read renders it: the guide's example answers the create with the
// write's "YYYY-MM-DD HH:MM:SS", reads answer ISO-8601 with an offset
// [C-code]. Taken as this process's write, a process alone took the
// read before its delete for another process's renewal, and left its own
// subscription at Close, posting to it until it expired. This process's
// write is learned from a read, on either side of the guess.
func TestASubscriptionAloneIsDeletedWhateverItsCreateAnswers(t *testing.T) {
	for _, written := range []bool{false, true} {
		t.Run(map[bool]string{false: "as reads render it", true: "as written"}[written], func(t *testing.T) {
			asWritten := func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if !written || r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/subscriptions") {
						h.ServeHTTP(w, r)
						return
					}
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, r)
					var sub map[string]any
					if json.Unmarshal(rec.Body.Bytes(), &sub) == nil {
						if v, ok := sub["subscription-expires-datetime"].(string); ok {
							if at, err := time.Parse(time.RFC3339, v); err == nil {
								sub["subscription-expires-datetime"] = at.UTC().Format("2006-01-02 15:04:05")
							}
						}
					}
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(rec.Code)
					json.NewEncoder(w).Encode(sub)
				})
			}
			rig := newSubRig(t, nssim.Config{}, netsapiens.Config{}, asWritten)
			rig.subscribed(t)
			rig.closeLeavesNone(t, "Close")
		})
	}
}
