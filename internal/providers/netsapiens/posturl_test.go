package netsapiens_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// Whether a read answers a subscription's post-url as it was written is
// undocumented: a PBX that normalises URLs when it stores them (nssim's
// SubscriptionPostURL canonical: host in lower case, a trailing slash)
// answers ours spelled otherwise. Compared as strings, the read before a
// delete took the process's own subscription for one moved by another
// process and left it, at Close and after the linger (posting to a
// process gone for up to a TTL and a day), and the 409's search never
// found it: the domain's next watch could not subscribe until it
// expired. The post-url is compared as a URL; both renderings hold.
func TestASubscriptionPostingToOurURLAsThePBXRendersItIsOurs(t *testing.T) {
	for _, rendering := range []string{nssim.PostURLVerbatim, nssim.PostURLCanonical} {
		t.Run(rendering+" closed", func(t *testing.T) {
			rig := newSubRig(t, nssim.Config{SubscriptionPostURL: rendering}, netsapiens.Config{})
			rig.subscribed(t)
			rig.closeLeavesNone(t, "Close")
		})
		t.Run(rendering+" lingered", func(t *testing.T) {
			rig := newSubRig(t, nssim.Config{SubscriptionPostURL: rendering}, netsapiens.Config{SubscriptionLinger: time.Millisecond})
			rig.subscribed(t)
			// The read after the create (which learns how the PBX renders
			// the expiry written) is not the look after the linger.
			rig.waitSim(t, "the read after the create", func() bool { return rig.count(nssim.OpSubscriptionRead, http.StatusOK) > 0 })
			rig.client.WatchStopped("test")
			rig.waitSim(t, "the look at the subscription", func() bool {
				return rig.count(nssim.OpSubscriptionRead, http.StatusOK) > 1
			})
			// Close waits for the keeper, which deletes after its read or
			// leaves the subscription; Close itself has none left to delete.
			rig.closeLeavesNone(t, "the linger")
		})
		t.Run(rendering+" adopted", func(t *testing.T) {
			rig := newSubRig(t, nssim.Config{SubscriptionPostURL: rendering}, netsapiens.Config{})
			// A killed process's subscription, posting where this one's does.
			rig.subscribe(t, rig.postURL+"test")
			rig.client.WatchStarted("test")
			rig.waitSim(t, "the subscription adopted", func() bool { return rig.count(nssim.OpSubscriptionUpdate, http.StatusAccepted) > 0 })
			if n := rig.count(nssim.OpSubscriptionCreate, http.StatusOK); n != 1 {
				t.Fatalf("%d subscriptions created, want only the killed process's", n)
			}
		})
	}
}

// A read of the subscription answered 404 while it exists (a PBX
// without that route answers "404 No Route Found" [C-code], or one
// scoping reads otherwise than deletes) was taken for the subscription
// gone, and the DELETE never sent: left posting to a process gone until
// it expired. The read only spares a delete of one moved elsewhere; its
// 404 tells nothing the DELETE's own 404 would not, and the DELETE goes.
func TestASubscriptionWhoseReadAnswers404IsStillDeleted(t *testing.T) {
	noRead := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/subscriptions/") {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				w.Write([]byte(`{"code":404,"message":"No Route Found"}`))
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	rig := newSubRig(t, nssim.Config{}, netsapiens.Config{}, noRead)
	rig.subscribed(t)
	rig.closeLeavesNone(t, "Close")
}

// A read before the delete that answers the subscription without its
// post-url (a PBX whose read leaves the field out; which fields a read
// answers is [guess]) says nothing of where it posts: the subscription is
// ours, deleted at Close, not taken for one another process moved and
// left to post to a process gone (the sixty-sixth pass's mutation N5
// found this untested).
func TestASubscriptionReadWithoutItsPostURLIsDeletedAtClose(t *testing.T) {
	withoutPostURL := func(api http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/subscriptions/") {
				api.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			api.ServeHTTP(rec, r)
			var one map[string]any
			var many []map[string]any
			body := rec.Body.Bytes()
			switch {
			case json.Unmarshal(body, &one) == nil:
				delete(one, "post-url")
				body, _ = json.Marshal(one)
			case json.Unmarshal(body, &many) == nil:
				for _, s := range many {
					delete(s, "post-url")
				}
				body, _ = json.Marshal(many)
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	}
	rig := newSubRig(t, nssim.Config{}, netsapiens.Config{}, withoutPostURL)
	rig.subscribed(t)
	rig.closeLeavesNone(t, "Close, its read answered without a post-url")
	if n := rig.count(nssim.OpSubscriptionRead, http.StatusOK); n == 0 {
		t.Error("no read of the subscription before its delete: not the case under test")
	}
}
