package webhooks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// holdOneHead answers 204 at once, but holds the attempt of the first
// event of transfer held until release is closed; it records the
// (transfer, seq) of each attempt.
type holdOneHead struct {
	held     string
	entered  chan struct{}
	release  chan struct{}
	mu       sync.Mutex
	attempts []hit
}

func (h *holdOneHead) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	var p struct {
		Seq int64  `json:"seq"`
		ID  string `json:"transfer_id"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.attempts = append(h.attempts, hit{transfer: p.ID, seq: p.Seq})
	h.mu.Unlock()
	if p.ID == h.held && p.Seq == 1 {
		close(h.entered)
		<-h.release
	}
	return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody, Request: r}, nil
}

func (h *holdOneHead) hits() []hit {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hit(nil), h.attempts...)
}

// endsDuringClaim is a store whose first claim that takes nothing (the
// held attempt in flight) lets that attempt end, and returns only
// once Drain's goroutine for it has given its slot back (ended).
type endsDuringClaim struct {
	webhooks.Store
	h     *holdOneHead
	ended chan struct{}
	once  sync.Once
}

func (s *endsDuringClaim) ClaimDeliveries(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Delivery, error) {
	ds, err := s.Store.ClaimDeliveries(ctx, owner, now, lease, limit, skip)
	if err != nil || len(ds) > 0 {
		return ds, err
	}
	// The first claim that takes nothing comes after the other attempt
	// ended: the held one cannot end before release.
	s.once.Do(func() {
		<-s.h.entered
		close(s.h.release)
		<-s.ended
	})
	return ds, err
}

// An attempt of the drain that ends while a claim that found nothing due
// is in the store (its transfer's next event, due once its result is
// stored, came too late for that claim): the drain found nothing in
// flight after the claim, took it for the end, and returned with that
// next event unsent (found by review). It returns only once a claim that
// began with nothing in flight found nothing.
func TestADrainSendsTheNextEventOfAnAttemptThatEndedDuringAClaim(t *testing.T) {
	s := memory.New()
	seed(t, s, "acme", 0, 1, 2) // held: its second event is due once the first is stored
	seed(t, s, "acme", 1, 1, 1) // answered at once: its end wakes the drain's claim
	h := &holdOneHead{held: "tr_" + strings.Repeat("0", 26), entered: make(chan struct{}), release: make(chan struct{})}
	st := &endsDuringClaim{Store: memory.NewDeliveries(s), h: h, ended: make(chan struct{})}
	d := webhooks.New(webhooks.Config{Owner: "a", Client: &http.Client{Transport: h}}, st,
		endpoint("http://crm.invalid/"), render, zerolog.Nop(), prometheus.NewRegistry())
	var ends atomic.Int64
	webhooks.OnAttemptEnd(d, func() {
		// The held attempt ends second: the other is answered at once.
		if ends.Add(1) == 2 {
			close(st.ended)
		}
	})
	if err := d.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := h.hits()
	if len(got) != 3 {
		t.Fatalf("the drain made %d attempts (%+v), want 3: the held transfer's second event was not sent", len(got), got)
	}
	var seqs []int64
	for _, a := range got {
		if a.transfer == h.held {
			seqs = append(seqs, a.seq)
		}
	}
	if len(seqs) != 2 || seqs[0] != 1 || seqs[1] != 2 {
		t.Errorf("the held transfer's attempts were of seqs %v, want [1 2]", seqs)
	}
}

// hostGate answers 204 to each attempt once its host's gate is open,
// and tells entered the host of each attempt as it starts.
type hostGate struct {
	entered chan string
	gates   map[string]chan struct{}
	mu      sync.Mutex
	hits    map[string]int
}

func (g *hostGate) RoundTrip(r *http.Request) (*http.Response, error) {
	g.mu.Lock()
	g.hits[r.URL.Host]++
	g.mu.Unlock()
	g.entered <- r.URL.Host
	if gate, ok := g.gates[r.URL.Host]; ok {
		<-gate
	}
	return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody, Request: r}, nil
}

// releaseAfterClaim is a store whose first claim that takes nothing once
// an attempt of the drain has ended opens the gate of the extra's host:
// the extra is then the only attempt in flight, and the drain has just
// read whether anything was in flight.
type releaseAfterClaim struct {
	webhooks.Store
	ends *atomic.Int64
	open func()
	once sync.Once
}

func (s *releaseAfterClaim) ClaimDeliveries(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Delivery, error) {
	ds, err := s.Store.ClaimDeliveries(ctx, owner, now, lease, limit, skip)
	if err == nil && len(ds) == 0 && s.ends.Load() > 0 {
		s.once.Do(s.open)
	}
	return ds, err
}

// An extra in flight is an attempt in flight for the drain, though it
// holds no slot: with the slot's attempt ended and only an extra left,
// the drain waits for it and sends its transfer's next event. One slot:
// the first endpoint's attempt takes it, the second's first event goes
// as an extra; the slot's attempt ends, and the extra is let go only once
// the drain has claimed (nothing) after that end.
func TestADrainWaitsForItsExtras(t *testing.T) {
	s := memory.New()
	seed(t, s, "one", 0, 1, 1)
	seed(t, s, "two", 10, 1, 2)
	dir := webhooks.Static{
		"one": {{ID: "crm", URL: "http://one.invalid/", Secrets: []string{secretOld}}},
		"two": {{ID: "crm", URL: "http://two.invalid/", Secrets: []string{secretOld}}},
	}
	g := &hostGate{entered: make(chan string, 16), hits: map[string]int{},
		gates: map[string]chan struct{}{"one.invalid": make(chan struct{}), "two.invalid": make(chan struct{})}}
	var ends atomic.Int64
	st := &releaseAfterClaim{Store: memory.NewDeliveries(s), ends: &ends, open: func() { close(g.gates["two.invalid"]) }}
	d := webhooks.New(webhooks.Config{Owner: "a", Concurrency: 1, Client: &http.Client{Transport: g}}, st, dir, render,
		zerolog.Nop(), prometheus.NewRegistry())
	webhooks.OnAttemptEnd(d, func() { ends.Add(1) })
	drained := make(chan error, 1)
	go func() { drained <- d.Drain(context.Background()) }()
	for range 2 {
		select {
		case <-g.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the slot's attempt and the extra never both started")
		}
	}
	close(g.gates["one.invalid"])
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.hits["one.invalid"] != 1 || g.hits["two.invalid"] != 2 {
		t.Errorf("attempts by host %v, want one.invalid 1 and two.invalid 2: the extra's transfer's second event unsent", g.hits)
	}
}

// An extra that ends gives back no slot it did not take: with every slot
// held by receivers that do not answer (not known to hang), and two
// healthy endpoints' extras answered, a slow endpoint that holds an
// extra gets no second attempt. Given back as a slot, each extra that
// ended freed one that no attempt had given up, and the slow endpoint,
// its next event the earliest due, got one beyond the slots. Four slots
// (a reserve of one); every delivery enqueued before the first claim, so
// that which attempts are extras is known; the check is made at a scan
// begun after both extras gave back what they held.
func TestAnExtraThatEndsGivesBackNoSlot(t *testing.T) {
	s := memory.New()
	dir := webhooks.Static{}
	gates := map[string]chan struct{}{}
	add := func(tenant string, from, transfers, n int) {
		dir[tenant] = []webhooks.Endpoint{{ID: "crm", URL: "http://" + tenant + ".invalid/", Secrets: []string{secretOld}}}
		gates[tenant+".invalid"] = make(chan struct{})
		seed(t, s, tenant, from, transfers, n)
	}
	for i := range 4 {
		add(fmt.Sprintf("h%02d", i), i*10, 1, 1)
	}
	add("slow", 100, 2, 1)
	add("f", 200, 1, 1)
	add("g", 300, 1, 1)
	g := &hostGate{entered: make(chan string, 64), hits: map[string]int{}, gates: gates}
	st := memory.NewDeliveries(s)
	var ends atomic.Int64
	scans := make(chan struct{}, 1)
	newDispatcher(t, st, dir, webhooks.Config{Concurrency: 4, Timeout: time.Minute, MinBackoff: time.Hour, MaxBackoff: time.Hour,
		Client: &http.Client{Transport: g}}, func(d *webhooks.Dispatcher) {
		if err := webhooks.EnqueueAll(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		webhooks.OnAttemptEnd(d, func() { ends.Add(1) })
		webhooks.OnScan(d, func() {
			select {
			case scans <- struct{}{}:
			default:
			}
		})
	})
	// Before the dispatcher's own cleanup waits for its attempts.
	t.Cleanup(func() {
		for host, gate := range gates {
			if host != "f.invalid" && host != "g.invalid" {
				close(gate)
			}
		}
	})
	entered := map[string]int{}
	for range 7 {
		select {
		case host := <-g.entered:
			entered[host]++
		case <-time.After(10 * time.Second):
			t.Fatalf("attempts started by host %v, want the four slots' and the three extras'", entered)
		}
	}
	if len(entered) != 7 {
		t.Fatalf("attempts started by host %v, want one each", entered)
	}
	close(gates["f.invalid"])
	close(gates["g.invalid"])
	for ends.Load() < 2 {
		select {
		case <-scans:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of the two extras ended", ends.Load())
		}
	}
	// Three scans: the first may have ended before both gave back (its
	// wake left waiting), the second after, and the third began after
	// the second ended.
	for range 3 {
		select {
		case <-scans:
		case <-time.After(10 * time.Second):
			t.Fatal("no scan")
		}
	}
	ds, _, err := st.Deliveries(context.Background(), webhooks.DeliveryFilter{Tenant: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	claimed := 0
	for _, dl := range ds {
		if dl.Attempts > 0 {
			claimed++
		}
	}
	if claimed != 1 {
		t.Errorf("the slow endpoint's deliveries claimed: %d, want 1 (its extra): an extra that ended gave back a slot", claimed)
	}
}
