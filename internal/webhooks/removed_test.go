package webhooks_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// manualClock is a wall clock that moves only when the test moves it.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *manualClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *manualClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// removedReplica is a dispatcher over st whose clock is c: one replica,
// or one run of transferd, with the directory dir.
func removedReplica(t *testing.T, owner string, st webhooks.Store, dir webhooks.Directory, c *manualClock) *webhooks.Dispatcher {
	t.Helper()
	d := webhooks.New(webhooks.Config{Owner: owner, MinBackoff: time.Second, MaxBackoff: time.Second, UnconfiguredGrace: 10 * time.Minute},
		st, dir, render, zerolog.Nop(), prometheus.NewRegistry())
	webhooks.SetClock(d, c.now)
	return d
}

// crmOf lists tenant acme's deliveries to its endpoint crm.
func crmOf(t *testing.T, d *webhooks.Dispatcher) []webhooks.Delivery {
	t.Helper()
	var out []webhooks.Delivery
	for _, dl := range deliveriesOf(t, d, "acme") {
		if dl.Endpoint == "crm" {
			out = append(out, dl)
		}
	}
	if len(out) != 6 {
		t.Fatalf("%d deliveries to crm, want 6", len(out))
	}
	return out
}

func drainAt(t *testing.T, d *webhooks.Dispatcher, c *manualClock, at time.Time) {
	t.Helper()
	c.set(at)
	if err := d.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// countingEndpoint answers every attempt with code and counts them.
func countingEndpoint(t *testing.T, code int) (*httptest.Server, *atomic.Int64) {
	got := new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// The deliveries of an endpoint removed from the configuration (the
// tenants file reloaded, or changed between two runs) were claimed and
// failed, "the endpoint is no longer configured", until their maximum
// age (a day by default), each transfer's later deliveries waiting
// behind its head, the backlog alert firing meanwhile. They are given up
// unsent, dead letters saying why, once the endpoint has been missing for
// the grace: every one of them at once, not a grace per transfer's
// event; and a restart in between does not start the grace again.
func TestTheDeliveriesOfARemovedEndpointAreGivenUpAfterTheGrace(t *testing.T) {
	s := memory.New()
	st := memory.NewDeliveries(s)
	srv, got := countingEndpoint(t, http.StatusNoContent)
	c := &manualClock{t: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}
	t0 := c.now()
	// Enqueued while the endpoint was configured, never sent.
	seed(t, s, "acme", 0, 2, 3)
	before := removedReplica(t, "a", st, endpoint(srv.URL), c)
	if err := webhooks.EnqueueAll(context.Background(), before); err != nil {
		t.Fatal(err)
	}
	// The tenants file no longer has it.
	other, _ := countingEndpoint(t, http.StatusNoContent)
	removed := webhooks.Static{"acme": {{ID: "billing", URL: other.URL, Secrets: []string{secretOld}}}}
	first := removedReplica(t, "a", st, removed, c)
	drainAt(t, first, c, t0)
	for _, dl := range crmOf(t, first) {
		if dl.Status != webhooks.StatusPending {
			t.Fatalf("delivery %d of %s is %s at once; want pending for the grace", dl.Seq, dl.TransferID, dl.Status)
		}
		if dl.Seq == 1 && (!strings.Contains(dl.LastError, "no longer configured") || !dl.Unconfigured.Equal(t0) ||
			dl.NextAttempt.After(t0.Add(10*time.Minute))) {
			t.Fatalf("head %s: error %q, missing since %v, next %v; want it said, since %v, within the grace",
				dl.TransferID, dl.LastError, dl.Unconfigured, dl.NextAttempt, t0)
		}
	}
	// transferd restarts with the same configuration, halfway.
	second := removedReplica(t, "a", st, removed, c)
	drainAt(t, second, c, t0.Add(5*time.Minute))
	for _, dl := range crmOf(t, second) {
		if dl.Status != webhooks.StatusPending {
			t.Fatalf("delivery %d of %s is %s within the grace", dl.Seq, dl.TransferID, dl.Status)
		}
	}
	drainAt(t, second, c, t0.Add(10*time.Minute))
	for _, dl := range crmOf(t, second) {
		if dl.Status != webhooks.StatusDead || !strings.Contains(dl.LastError, "no longer configured") || dl.LastCode != 0 {
			t.Errorf("delivery %d of %s at the grace's end: %s %d %q; want dead, saying the endpoint is no longer configured",
				dl.Seq, dl.TransferID, dl.Status, dl.LastCode, dl.LastError)
		}
	}
	if n := got.Load(); n != 0 {
		t.Errorf("%d attempts reached a URL; want none", n)
	}
}

// While the replicas' configurations differ (a rolling change: one
// replica still has the endpoint, another already not), the one without
// it must not give up what the other one goes on sending: each attempt of
// a replica that has the endpoint starts the grace again, and it is only
// once none has been made for the whole grace that the deliveries are
// given up. A redelivery is refused where the endpoint is missing (409,
// ErrEndpointNotConfigured) and made where it is configured.
func TestAReplicaWithoutTheEndpointDoesNotGiveUpWhatAnotherStillSends(t *testing.T) {
	rc := newRollingChange(t)
	st, got, c, t0, old, head := rc.st, rc.got, rc.c, rc.t0, rc.old, rc.head
	updated := removedReplica(t, "new", st, webhooks.Static{}, c)
	drainAt(t, updated, c, t0) // found missing
	// The replica with the old configuration sends it, and fails.
	drainAt(t, old, c, t0.Add(9*time.Minute))
	if n := got.Load(); n != 1 {
		t.Fatalf("%d attempts of the replica that has the endpoint, want 1", n)
	}
	// Past the grace counted from the first finding, the attempt between
	// keeps it.
	drainAt(t, updated, c, t0.Add(11*time.Minute))
	if dl := head(); dl.Status != webhooks.StatusPending || !dl.Unconfigured.Equal(t0.Add(11*time.Minute)) {
		t.Fatalf("after an attempt of a replica that has the endpoint: %s, missing since %v; want pending, the count started again at %v",
			dl.Status, dl.Unconfigured, t0.Add(11*time.Minute))
	}
	ctx := context.Background()
	id := head().ID
	_, err := updated.Redeliver(ctx, "acme", id)
	if !errors.Is(err, webhooks.ErrEndpointNotConfigured) || orchestrator.KindOf(err) != orchestrator.KindConflict {
		t.Fatalf("a redelivery where the endpoint is missing: %v; want ErrEndpointNotConfigured, a conflict", err)
	}
	if dl := head(); dl.Redelivered != 0 || dl.Resend {
		t.Fatalf("the refused redelivery was made: %+v", dl)
	}
	// Nothing more from the old replica for the grace: given up.
	drainAt(t, updated, c, t0.Add(21*time.Minute))
	if dl := head(); dl.Status != webhooks.StatusDead || !strings.Contains(dl.LastError, "no longer configured") {
		t.Fatalf("with no attempt of a replica that has the endpoint for the grace: %s %q; want dead", dl.Status, dl.LastError)
	}
	// The replica that still has it may redeliver it, which starts the
	// grace again.
	if dl, err := old.Redeliver(ctx, "acme", id); err != nil || dl.Status != webhooks.StatusPending || !dl.Unconfigured.IsZero() {
		t.Fatalf("a redelivery where the endpoint is configured: %+v, %v; want it pending, unmarked", dl, err)
	}
	drainAt(t, updated, c, t0.Add(22*time.Minute))
	if dl := head(); dl.Status != webhooks.StatusPending {
		t.Fatalf("a redelivery of a replica that has the endpoint was given up at once: %s %q", dl.Status, dl.LastError)
	}
}

// A replica without the endpoint counted the grace from its own first
// finding even when the delivery's mark, set by another replica without
// it, was later: the mark is set after a write of a replica that has the
// endpoint (which clears it), a write this replica never saw. With two
// replicas without the endpoint and one that still sends it, the first
// gave up, a grace after its own finding, a delivery the third had sent
// (and failed) since: the count had started again at the second's
// finding after that attempt.
func TestAnEarlierFindingDoesNotOutliveAnotherReplicasAttempt(t *testing.T) {
	rc := newRollingChange(t)
	st, got, c, t0, old, head := rc.st, rc.got, rc.c, rc.t0, rc.old, rc.head
	first := removedReplica(t, "new1", st, webhooks.Static{}, c)
	second := removedReplica(t, "new2", st, webhooks.Static{}, c)
	drainAt(t, first, c, t0) // the first finds it missing
	// The replica with the old configuration sends it, and fails.
	drainAt(t, old, c, t0.Add(time.Minute))
	if n := got.Load(); n != 1 {
		t.Fatalf("%d attempts of the replica that has the endpoint, want 1", n)
	}
	// The second, which never found it missing, starts the count then.
	drainAt(t, second, c, t0.Add(2*time.Minute))
	if dl := head(); dl.Status != webhooks.StatusPending || !dl.Unconfigured.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("after the second's finding: %s, missing since %v; want pending since %v", dl.Status, dl.Unconfigured, t0.Add(2*time.Minute))
	}
	// A grace after the first's finding, but not after the attempt.
	drainAt(t, first, c, t0.Add(10*time.Minute))
	if dl := head(); dl.Status != webhooks.StatusPending || !dl.Unconfigured.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("a grace after the first finding, 9 minutes after an attempt: %s %q, missing since %v; want pending since %v",
			dl.Status, dl.LastError, dl.Unconfigured, t0.Add(2*time.Minute))
	}
	// A grace after the count started again, with no attempt between.
	drainAt(t, first, c, t0.Add(12*time.Minute))
	if dl := head(); dl.Status != webhooks.StatusDead {
		t.Fatalf("a grace after the count started again: %s; want dead", dl.Status)
	}
}

// switchDir is a directory a test changes, as a reload of the tenants
// file does.
type switchDir struct {
	mu  sync.Mutex
	eps webhooks.Static
}

func (s *switchDir) set(eps webhooks.Static) { s.mu.Lock(); s.eps = eps; s.mu.Unlock() }

func (s *switchDir) Tenants() []string { s.mu.Lock(); defer s.mu.Unlock(); return s.eps.Tenants() }

func (s *switchDir) Endpoints(tenant string) []webhooks.Endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.eps.Endpoints(tenant)
}

// A replica's finding that an endpoint was missing outlived the
// endpoint's return (a change reverted, then made again later): while
// another replica sent its deliveries, nothing at this one cleared it,
// and once the endpoint was removed again a transfer's next delivery,
// made ready by the other replica's delivery of the one before, was
// given up at this replica's first claim, with no grace at all.
func TestAFindingEndsWhenTheEndpointIsConfiguredAgain(t *testing.T) {
	s := memory.New()
	st := memory.NewDeliveries(s)
	srv, got := countingEndpoint(t, http.StatusNoContent)
	c := &manualClock{t: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}
	t0 := c.now()
	ctx := context.Background()
	seed(t, s, "acme", 0, 1, 2)
	if err := webhooks.EnqueueAll(ctx, removedReplica(t, "b", st, endpoint(srv.URL), c)); err != nil {
		t.Fatal(err)
	}
	dir := &switchDir{eps: webhooks.Static{}}
	a := removedReplica(t, "a", st, dir, c)
	drainAt(t, a, c, t0) // the head found missing
	// The change is reverted: the endpoint is configured again at this
	// replica, which has nothing of it due now.
	dir.set(endpoint(srv.URL))
	drainAt(t, a, c, t0)
	// Another replica that has it delivers the head.
	c.set(t0.Add(time.Minute))
	claimed, err := st.ClaimDeliveries(ctx, "b", c.now(), time.Minute, 10, nil)
	if err != nil || len(claimed) != 1 || claimed[0].Seq != 1 {
		t.Fatalf("the other replica claimed %+v, %v; want the head", claimed, err)
	}
	head := claimed[0]
	head.Status, head.LastCode, head.LastError, head.UpdatedAt, head.Unconfigured = webhooks.StatusDelivered, http.StatusNoContent, "", c.now(), time.Time{}
	if _, ok, err := st.FinishDelivery(ctx, head); !ok || err != nil {
		t.Fatalf("the other replica's delivery: %v, %v", ok, err)
	}
	// The change is made again.
	dir.set(webhooks.Static{})
	drainAt(t, a, c, t0.Add(15*time.Minute))
	for _, dl := range deliveriesOf(t, a, "acme") {
		if dl.Seq == 2 && (dl.Status != webhooks.StatusPending || !dl.Unconfigured.Equal(t0.Add(15*time.Minute))) {
			t.Fatalf("the next delivery, at the first claim since the endpoint was removed again: %s %q, missing since %v; want pending, counted from now",
				dl.Status, dl.LastError, dl.Unconfigured)
		}
	}
	if n := got.Load(); n != 0 {
		t.Errorf("%d attempts reached the receiver; want none", n)
	}
}

// rollingChange is a rolling change of configuration at its start: one
// delivery of "acme", enqueued by the replica "old", which still has the
// endpoint (a receiver failing every attempt, got counting them), on a
// clock held at t0; head reads the delivery.
type rollingChange struct {
	st   webhooks.Store
	got  *atomic.Int64
	c    *manualClock
	t0   time.Time
	old  *webhooks.Dispatcher
	head func() webhooks.Delivery
}

func newRollingChange(t *testing.T) rollingChange {
	t.Helper()
	s := memory.New()
	st := memory.NewDeliveries(s)
	srv, got := countingEndpoint(t, http.StatusInternalServerError)
	c := &manualClock{t: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}
	seed(t, s, "acme", 0, 1, 1)
	old := removedReplica(t, "old", st, endpoint(srv.URL), c)
	if err := webhooks.EnqueueAll(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	return rollingChange{st: st, got: got, c: c, t0: c.now(), old: old, head: func() webhooks.Delivery {
		t.Helper()
		dls := deliveriesOf(t, old, "acme")
		if len(dls) != 1 {
			t.Fatalf("%d deliveries, want 1", len(dls))
		}
		return dls[0]
	}}
}
