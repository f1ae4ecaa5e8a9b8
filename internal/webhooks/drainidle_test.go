package webhooks_test

import (
	"context"
	"encoding/json"
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
	webhooks.OnDrainAttemptEnd(d, func() {
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
