package webhooks_test

import (
	"fmt"
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
