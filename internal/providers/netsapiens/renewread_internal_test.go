package netsapiens

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// A renewal's own write, read back late, is not another process's. PUT
// /subscriptions/{id} answers 202 [doc]: accepted, applied when the PBX
// gets to it, as its call actions are. The read after a renewal applied
// later shows the expiry as it was before it, which the keeper took for
// its own write; once the renewal was applied, the read before the delete
// showed an expiry it had not "written", and a process alone left its own
// subscription at Close, posting to a process gone until it expired (up to
// a TTL and a day). A renewal whose PUT was applied but answered a
// failure (a 5xx, a timeout after it reached the PBX) did the same at the
// next renewal's read before it. A write whose read does not show it is
// unknown. (The keeper renews on the wall clock, at half a TTL: renew is
// called here directly, each write a TTL of its own, as writes of one TTL
// within a second write the same expiry.)
func TestARenewalsOwnWriteReadLateIsNotAnotherProcesss(t *testing.T) {
	for _, tc := range []struct {
		name string
		// late holds each PUT answered 202 until the request after it has
		// been answered; failed has the first renewal applied and answered
		// 500; beforeFails has the read before the renewal answer 500.
		late, failed, beforeFails bool
	}{
		{name: "applied at once"},
		{name: "applied after the read after it", late: true},
		{name: "applied after the read after it, the read before failed", late: true, beforeFails: true},
		{name: "applied and answered a failure", failed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const key = "nsd_SeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCr1234abcd"
			sim := nssim.New(nssim.Config{APIKeys: map[string]nssim.KeyScope{key: {Domain: "TEST"}}, SubscriptionLag: time.Hour})
			var (
				mu   sync.Mutex
				held *http.Request
			)
			api := sim.APIHandler()
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				if tc.late && r.Method == http.MethodPut {
					body, _ := io.ReadAll(r.Body)
					held = r.Clone(context.Background())
					held.Body = io.NopCloser(bytes.NewReader(body))
					w.WriteHeader(http.StatusAccepted)
					return
				}
				api.ServeHTTP(w, r)
				if held != nil {
					api.ServeHTTP(httptest.NewRecorder(), held)
					held = nil
				}
			})
			srv := httptest.NewServer(h)
			t.Cleanup(func() { srv.Close(); sim.Close() })
			c, err := New(Config{BaseURL: srv.URL, APIKey: key, Attempts: 1, SubscriptionTTL: time.Hour,
				EventURL: func(d string) string { return "https://transferd.example/events/" + d }})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.subs.stop() })
			s := c.subs
			id, written, _, _, err := s.create("TEST")
			if err != nil || written == "" {
				t.Fatalf("create: %q, %q, %v", id, written, err)
			}
			d := &domainSub{id: id, written: written}
			s.ttl = 2 * time.Hour
			if tc.failed {
				sim.InjectFault(nssim.Fault{Operation: nssim.OpSubscriptionUpdate, Status: http.StatusInternalServerError, Apply: true})
				if err := s.renew("TEST", d); err == nil {
					t.Fatal("a renewal answered 500 succeeded")
				}
				sim.ClearFaults()
				s.ttl = 3 * time.Hour
			}
			if tc.beforeFails {
				sim.InjectFault(nssim.Fault{Operation: nssim.OpSubscriptionRead, Status: http.StatusInternalServerError, Count: 1})
			}
			if err := s.renew("TEST", d); err != nil {
				t.Fatal(err)
			}
			if !d.sharedAt.IsZero() {
				t.Errorf("the renewal took a write for another process's (d %+v)", d)
			}
			if err := s.delete(context.Background(), "TEST", d); err != nil {
				t.Fatal(err)
			}
			if left := sim.Subscriptions(); len(left) != 0 {
				t.Errorf("a process alone left its subscription: %+v", left)
			}
		})
	}
}

// A read before the delete that answers without an expiry (a PBX that
// leaves it out, "{}") shows no other process's write: the subscription,
// this process's alone as far as it knows, is deleted as before, not
// taken for renewed by another because what it shows differs from this
// process's last write.
func TestASubscriptionReadWithoutAnExpiryBeforeItsDeleteIsDeleted(t *testing.T) {
	const key = "nsd_SeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCr1234abcd"
	sim := nssim.New(nssim.Config{APIKeys: map[string]nssim.KeyScope{key: {Domain: "TEST"}}, SubscriptionLag: time.Hour})
	srv := httptest.NewServer(sim.APIHandler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	c, err := New(Config{BaseURL: srv.URL, APIKey: key, RetryBase: time.Millisecond, SubscriptionTTL: time.Hour,
		EventURL: func(d string) string { return "https://transferd.example/events/" + d }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.subs.stop() })
	id, written, _, _, err := c.subs.create("TEST")
	if err != nil || written == "" {
		t.Fatalf("create: %q, %q, %v", id, written, err)
	}
	d := &domainSub{id: id, written: written}
	empty := "{}"
	sim.InjectFault(nssim.Fault{Operation: nssim.OpSubscriptionRead, Status: http.StatusOK, Body: &empty, Count: 1})
	if err := c.subs.delete(context.Background(), "TEST", d); err != nil {
		t.Fatal(err)
	}
	if left := sim.Subscriptions(); len(left) != 0 {
		t.Errorf("a process alone left its subscription after a read showing no expiry: %+v", left)
	}
}
