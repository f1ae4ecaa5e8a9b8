package apiclient_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/apiclient"
)

// sent reports whether b lets a request through now: a request the budget
// would hold past the step's deadline (a minute; a token of slow comes
// every thousand seconds) is refused at once, so the answers are counts,
// not timings.
func sent(t *testing.T, srv *httptest.Server, b *apiclient.Budget) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	resp, err := b.Client(nil).Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// A budget a reload lowers holds the adapters built before it, which
// share its bucket: both its rate and its burst are the new ones. Shared
// but left at the old settings, the old adapter went on at the budget
// the operator lowered to stop the provider's rate limiting.
func TestALoweredBudgetHoldsTheAdaptersBuiltBefore(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()

	t.Run("rate", func(t *testing.T) {
		bs := apiclient.NewBudgets(nil)
		old, _ := bs.For("acme/bandwidth", "bandwidth", 1e9, 1)
		if _, err := bs.For("acme/bandwidth", "bandwidth", slow, 1); err != nil {
			t.Fatal(err)
		}
		if !sent(t, srv, old) {
			t.Fatal("the burst's one request was held")
		}
		if sent(t, srv, old) {
			t.Error("the old adapter sent at the rate the reload lowered")
		}
	})
	t.Run("burst", func(t *testing.T) {
		bs := apiclient.NewBudgets(nil)
		old, _ := bs.For("acme/bandwidth", "bandwidth", slow, 3)
		if _, err := bs.For("acme/bandwidth", "bandwidth", slow, 1); err != nil {
			t.Fatal(err)
		}
		n := 0
		for range 3 {
			if sent(t, srv, old) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("the old adapter sent %d requests at once, want the lowered burst's 1", n)
		}
	})
}

// An account's budget is its provider's: a key given for another
// provider's account is another bucket (and counts its waits under that
// provider's label), not the first one's reset.
func TestABudgetIsItsProvidersAccounts(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	bs := apiclient.NewBudgets(nil)
	bw, _ := bs.For("acme", "bandwidth", slow, 1)
	if !sent(t, srv, bw) {
		t.Fatal("the burst's one request was held")
	}
	ns, _ := bs.For("acme", "netsapiens", slow, 1)
	if ns == bw {
		t.Error("another provider's account was given the first one's budget")
	}
	if !sent(t, srv, ns) {
		t.Error("another provider's account found its budget spent")
	}
}
