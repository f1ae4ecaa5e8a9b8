package webhooks_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/webhooks"
)

// readyList is a DueLookup over due deliveries in due order, which
// records how many each read of the earliest asks for.
type readyList struct {
	rs    []webhooks.Ready
	asked []int
}

func (l *readyList) lookup() webhooks.DueLookup {
	return webhooks.DueLookup{
		Earliest: func(n int, each func(webhooks.Ready) bool) error {
			l.asked = append(l.asked, n)
			for _, r := range l.rs[:min(n, len(l.rs))] {
				if !each(r) {
					break
				}
			}
			return nil
		},
		Endpoints: func() ([]webhooks.Ready, error) {
			var out []webhooks.Ready
			for _, r := range l.rs {
				if !slices.ContainsFunc(out, func(e webhooks.Ready) bool { return e.Endpoint == r.Endpoint }) {
					out = append(out, webhooks.Ready{Endpoint: r.Endpoint, At: r.At})
				}
			}
			return out, nil
		},
		OfEndpoint: func(key string, n int) ([]webhooks.Ready, error) {
			var out []webhooks.Ready
			for _, r := range l.rs {
				if r.Endpoint == key && len(out) < n {
					out = append(out, r)
				}
			}
			return out, nil
		},
	}
}

// A claim that skips no endpoint reads no more of the earliest than it
// may take (PostgreSQL reads every row it asks for), and the first read
// asks for FirstWalk, which a store may read ahead. One that skips an
// endpoint walks further, and past a skipped backlog longer than its
// walk turns to the other endpoints.
func TestPickDueReadsWhatItTakes(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	var l readyList
	for i := range 200 {
		ep := "down"
		if i >= 150 {
			ep = "up"
		}
		l.rs = append(l.rs, webhooks.Ready{ID: fmt.Sprintf("d%03d", i), Endpoint: ep, At: now.Add(time.Duration(i) * time.Millisecond), Pos: int64(i)})
	}
	ids := func(rs []webhooks.Ready) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	for _, c := range []struct {
		name      string
		skip      []string
		except    map[string]bool
		wantAsked []int
		want      []string
	}{
		{name: "nothing skipped", wantAsked: []int{8}, want: []string{"d000", "d001", "d002", "d003", "d004", "d005", "d006", "d007"}},
		{name: "two passed over", except: map[string]bool{"d001": true, "d004": true}, wantAsked: []int{10},
			want: []string{"d000", "d002", "d003", "d005", "d006", "d007", "d008", "d009"}},
		{name: "a backlog skipped", skip: []string{"down"}, wantAsked: []int{8 + 64},
			want: []string{"d150", "d151", "d152", "d153", "d154", "d155", "d156", "d157"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l.asked = nil
			got, err := webhooks.PickDue(now.Add(time.Hour), 8, c.skip, c.except, l.lookup())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got), c.want) {
				t.Errorf("picked %v, want %v", ids(got), c.want)
			}
			if !slices.Equal(l.asked, c.wantAsked) {
				t.Errorf("reads of the earliest asked for %v, want %v", l.asked, c.wantAsked)
			}
			if c.except == nil && l.asked[0] != webhooks.FirstWalk(8, c.skip) {
				t.Errorf("the first read asked for %d, FirstWalk says %d", l.asked[0], webhooks.FirstWalk(8, c.skip))
			}
		})
	}
}

// Each pair's lowest Seq among an enqueue's pending deliveries is its
// candidate head, in whatever order ds lists them; a tenant's endpoint
// and transfer make the pair, not the transfer alone.
func TestHeadCandidates(t *testing.T) {
	d := func(tenant, endpoint, transfer string, seq int64, status webhooks.Status) webhooks.Delivery {
		return webhooks.Delivery{Tenant: tenant, Endpoint: endpoint, TransferID: transfer, Seq: seq, Status: status}
	}
	pending := webhooks.StatusPending
	ds := []webhooks.Delivery{
		d("acme", "crm", "tr_1", 3, pending),
		d("acme", "crm", "tr_1", 2, pending), // before seq 3 though listed after
		d("acme", "crm", "tr_1", 4, pending),
		d("acme", "crm", "tr_2", 7, pending),   // another transfer
		d("acme", "ops", "tr_1", 5, pending),   // another endpoint
		d("globex", "crm", "tr_1", 9, pending), // another tenant
		d("acme", "ops", "tr_3", 1, webhooks.StatusDead),
		d("acme", "ops", "tr_3", 2, pending), // the first pending one
	}
	want := []bool{false, true, false, true, true, true, false, true}
	if got := webhooks.HeadCandidates(ds); !slices.Equal(got, want) {
		t.Errorf("HeadCandidates = %v, want %v", got, want)
	}
	if got := webhooks.HeadCandidates(nil); len(got) != 0 {
		t.Errorf("HeadCandidates(nil) = %v", got)
	}
}

// storeLookup answers as a store does over rs: the due ones in due
// order, and each endpoint's earliest, due or not.
func storeLookup(rs []webhooks.Ready, now time.Time) webhooks.DueLookup {
	var due []webhooks.Ready
	for _, r := range rs {
		if !r.At.After(now) {
			due = append(due, r)
		}
	}
	order := func(a, b webhooks.Ready) int {
		return cmp.Or(a.At.Compare(b.At), cmp.Compare(a.Pos, b.Pos), cmp.Compare(a.ID, b.ID))
	}
	slices.SortFunc(due, order)
	return webhooks.DueLookup{
		Earliest: func(n int, each func(webhooks.Ready) bool) error {
			for _, r := range due[:min(n, len(due))] {
				if !each(r) {
					break
				}
			}
			return nil
		},
		Endpoints: func() ([]webhooks.Ready, error) {
			var eps []webhooks.Ready
			for _, r := range rs {
				i := slices.IndexFunc(eps, func(e webhooks.Ready) bool { return e.Endpoint == r.Endpoint })
				if i < 0 {
					eps = append(eps, webhooks.Ready{Endpoint: r.Endpoint, At: r.At})
				} else if r.At.Before(eps[i].At) {
					eps[i].At = r.At
				}
			}
			slices.SortFunc(eps, func(a, b webhooks.Ready) int { return cmp.Compare(a.Endpoint, b.Endpoint) })
			return eps, nil
		},
		OfEndpoint: func(key string, n int) ([]webhooks.Ready, error) {
			var out []webhooks.Ready
			for _, r := range due {
				if r.Endpoint == key && len(out) < n {
					out = append(out, r)
				}
			}
			return out, nil
		},
	}
}

// A claim over a store's ready deliveries with heads its transaction has
// not marked ready yet (WithHeads) picks what it would pick were those
// heads marked: the same deliveries in the same order, whatever the
// limit, the endpoints skipped and those passed over, on seeds 1 to 2000.
func TestWithHeadsPicksAsIfMarked(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for seed := uint64(1); seed <= 2000; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		var stored, heads []webhooks.Ready
		// Endpoints whose ready deliveries are all heads, some or none.
		headsApart, headShare := rng.IntN(3) == 0, 1+rng.IntN(9)
		for i := range rng.IntN(400) {
			r := webhooks.Ready{ID: fmt.Sprintf("d%03d", i), Endpoint: fmt.Sprint("ep", rng.IntN(4)),
				At: now.Add(time.Duration(rng.IntN(40)-30) * time.Second), Pos: int64(rng.IntN(50))}
			if rng.IntN(10) < headShare {
				if headsApart {
					r.Endpoint = "ep4"
				}
				heads = append(heads, r)
			} else {
				stored = append(stored, r)
			}
		}
		var skip []string
		for ep := range 5 {
			if rng.IntN(2) == 0 {
				skip = append(skip, fmt.Sprint("ep", ep))
			}
		}
		except := map[string]bool{}
		for i := range rng.IntN(10) {
			except[fmt.Sprintf("d%03d", rng.IntN(400)+i%2)] = true
		}
		limit := rng.IntN(40)
		want, err := webhooks.PickDue(now, limit, skip, except, storeLookup(append(slices.Clone(stored), heads...), now))
		if err != nil {
			t.Fatal(err)
		}
		got, err := webhooks.PickDue(now, limit, skip, except, webhooks.WithHeads(storeLookup(stored, now), now, heads))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("seed %d: picked %v with the heads unmarked, want %v", seed, got, want)
		}
	}
}
