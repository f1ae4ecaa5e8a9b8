package apiclient_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/transferd/transferd/internal/providers/apiclient"
)

// A budget of a token a thousand seconds lets exactly its burst through
// during a test: counts, not timings.
const slow = 0.001

func TestBudgetLetsItsBurstThroughAndHoldsTheRest(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	m := apiclient.NewBudgetMetrics(reg)
	b, err := apiclient.NewBudget("netsapiens", slow, 3, m)
	if err != nil {
		t.Fatal(err)
	}
	c := b.Client(&http.Client{})
	get := func() error {
		// A step's deadline: a token due later than it is never waited for.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	for i := range 3 {
		if err := get(); err != nil {
			t.Fatalf("request %d within the burst: %v", i+1, err)
		}
	}
	for range 5 {
		err := get()
		if err == nil || !strings.Contains(err.Error(), "request budget") {
			t.Fatalf("request over budget: err = %v, want a budget error", err)
		}
	}
	if n := hits.Load(); n != 3 {
		t.Errorf("the provider saw %d requests, want the burst of 3", n)
	}
	if n := testutil.ToFloat64(m.Waits("netsapiens")); n != 5 {
		t.Errorf("budget waits = %v, want 5", n)
	}
}

// One account's flood spends its own bucket only.
func TestBudgetsAreIndependentPerAccount(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	a, _ := apiclient.NewBudget("netsapiens", slow, 1, nil)
	b, _ := apiclient.NewBudget("netsapiens", slow, 2, nil)
	ca, cb := a.Client(nil), b.Client(nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a cancelled context never waits
	for range 10 {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
		if resp, err := ca.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	for i := range 2 {
		resp, err := cb.Get(srv.URL)
		if err != nil {
			t.Fatalf("account b, request %d: %v", i+1, err)
		}
		resp.Body.Close()
	}
	// Account a's cancelled flood sent at most its one token's worth.
	if n := hits.Load(); n > 3 || n < 2 {
		t.Errorf("the provider saw %d requests, want b's 2 and at most a's 1", n)
	}
}

func TestNoBudgetIsNil(t *testing.T) {
	b, err := apiclient.NewBudget("bandwidth", 0, 5, nil)
	if err != nil || b != nil {
		t.Fatalf("NewBudget(0) = %v, %v; want nil, nil", b, err)
	}
	base := &http.Client{Timeout: time.Second}
	if b.Client(base) != base {
		t.Error("a nil budget changed the client")
	}
	if _, err := apiclient.NewBudget("bandwidth", -1, 1, nil); err == nil {
		t.Error("a negative budget was accepted")
	}
}

// An account built anew (a reload that changed its budget or another
// setting) spends the bucket its earlier adapter, still driving the
// transfers in flight, spends: the provider sees the account's budget,
// not one per adapter. Another account's is its own, and an account
// whose budget is removed and set again starts afresh.
func TestAnAccountsAdaptersShareItsBudget(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	bs := apiclient.NewBudgets(nil)
	get := func(b *apiclient.Budget) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
		resp, err := b.Client(nil).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	first, err := bs.For("acme/bandwidth", "bandwidth", slow, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := get(first); err != nil {
			t.Fatalf("request %d within the burst: %v", i+1, err)
		}
	}
	second, _ := bs.For("acme/bandwidth", "bandwidth", slow, 3)
	if err := get(second); err == nil {
		t.Error("the account built anew sent past the budget its earlier adapter spent")
	}
	// The earlier adapter, still driving transfers, holds its budget
	// (Budgets keeps none an adapter does not).
	runtime.KeepAlive(first)
	if other, _ := bs.For("beta/bandwidth", "bandwidth", slow, 1); get(other) != nil {
		t.Error("another account's budget was spent by acme's")
	}
	if none, _ := bs.For("acme/bandwidth", "bandwidth", 0, 0); none != nil {
		t.Fatal("no budget is not nil")
	}
	if again, _ := bs.For("acme/bandwidth", "bandwidth", slow, 1); get(again) != nil {
		t.Error("a budget set again after none did not start afresh")
	}
	if n := hits.Load(); n != 4 {
		t.Errorf("the provider saw %d requests, want 4", n)
	}
}

// A budget no adapter holds any more (a tenant removed, its transfers
// ended and its adapters released) is not kept: the process keeps one
// per account ever configured no longer. One an adapter still holds is
// still shared, however many collections pass.
func TestABudgetNoAdapterHoldsIsForgotten(t *testing.T) {
	bs := apiclient.NewBudgets(nil)
	held, err := bs.For("acme/bandwidth", "bandwidth", slow, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		dropBudget(t, bs, fmt.Sprintf("gone-%d/netsapiens", i))
	}
	runtime.GC()
	if again, _ := bs.For("acme/bandwidth", "bandwidth", slow, 1); again != held {
		t.Error("the budget an adapter holds was not shared after a collection")
	}
	if n := bs.Len(); n != 1 {
		t.Errorf("%d budgets kept, want the one an adapter holds", n)
	}
	runtime.KeepAlive(held)
}

// dropBudget makes a budget for account and lets it go, as an adapter
// released does.
//
//go:noinline
func dropBudget(t *testing.T, bs *apiclient.Budgets, account string) {
	if _, err := bs.For(account, "netsapiens", slow, 1); err != nil {
		t.Fatal(err)
	}
}
