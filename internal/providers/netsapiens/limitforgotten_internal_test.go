package netsapiens

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/netsapiens/nssim"
)

// A larger limit remembered (Client.limitHonoured) is forgotten only by
// an answer no longer than the limit, which says the PBX no longer
// answers more. An answer of the whole domain is none, even one as short
// as the limit (a domain with as many calls as the limit); nor is one
// short of the count but longer than the limit (a call that ended between
// the count and the answer), after which the listing is paged as before
// (here, calls ending after each count, cut: never fewer calls taken for
// the whole domain). Forgotten by either, the next listing of a busy
// domain paid the page answered again and the page read after the count
// before the larger limit was learned again.
func TestALargerLimitRememberedIsForgottenOnlyByAnAnswerNoLongerThanTheLimit(t *testing.T) {
	const key = "nsd_SeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCrEtSeCr1234abcd"
	for _, tc := range []struct {
		name  string
		calls int
		// ending hangs a call up each time a count is answered.
		ending bool
	}{
		{name: "a domain of as many calls as the limit", calls: 2},
		{name: "a call ended between the count and the answer", calls: 6, ending: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sim := nssim.New(nssim.Config{APIKeys: map[string]nssim.KeyScope{key: {Domain: "TEST"}},
				ListPageSize: 2, ListParams: nssim.ListParamsLimitOnly})
			var sessions []string
			for i := range tc.calls {
				ac, err := sim.PlaceCall(nssim.InboundCall{Domain: "TEST", User: fmt.Sprintf("20%02d", i),
					From: fmt.Sprintf("155555500%02d", i), To: "11111111111"})
				if err != nil {
					t.Fatal(err)
				}
				sessions = append(sessions, ac.SessionID)
			}
			var (
				mu    sync.Mutex
				ended int
			)
			api := sim.APIHandler()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				api.ServeHTTP(w, r)
				mu.Lock()
				defer mu.Unlock()
				if tc.ending && strings.HasSuffix(r.URL.Path, "/calls/count") && ended < len(sessions) {
					ended++
					if err := sim.Hangup(sessions[len(sessions)-ended], "orig"); err != nil {
						t.Error(err)
					}
				}
			}))
			t.Cleanup(func() { srv.Close(); sim.Close() })
			c, err := New(Config{BaseURL: srv.URL, APIKey: key, Attempts: 1, RetryBase: time.Millisecond, ListLimit: 2})
			if err != nil {
				t.Fatal(err)
			}
			c.limitHonoured.Store(true) // learned by an earlier listing

			calls, cut, err := c.listDomain(context.Background(), "TEST")
			mu.Lock()
			up := tc.calls - ended
			mu.Unlock()
			if err != nil || (cut == nil && len(calls) != up) || (!tc.ending && cut != nil) {
				t.Errorf("listing: %d calls, cut %v, %v; want the %d up, whole, or (calls ending) cut", len(calls), cut, err, up)
			}
			if !c.limitHonoured.Load() {
				t.Error("the larger limit forgotten by an answer longer than the limit, or of the whole domain")
			}
		})
	}
}
