package bandwidth

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// unreachable is a transport that reaches nothing: the readings of a
// Read fail at once, which is all the test needs of them (Read is how the
// client learns which transfers are in flight).
type unreachable struct{}

func (unreachable) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("unreachable")
}

func bookClient(t *testing.T) *Client {
	t.Helper()
	c, err := New(Config{UserID: "u-1", APIToken: "t", APISecret: "s", Attempts: 1,
		HTTPClient: &http.Client{Transport: unreachable{}}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func inFlight(n int) []*orchestrator.Transfer {
	ts := make([]*orchestrator.Transfer, n)
	base := time.Now()
	for i := range ts {
		ts[i] = &orchestrator.Transfer{ID: orchestrator.NewID(base.Add(time.Duration(i) * time.Millisecond)),
			Request: orchestrator.Request{Mode: orchestrator.ModeAnnounced, Call: orchestrator.CallRef{CallID: "c-caller"}},
			Legs:    orchestrator.Legs{Caller: orchestrator.LegRef{CallID: "c-caller"}}}
	}
	return ts
}

// What callbacks told of the transfers in flight is kept, however many
// there are and however many finished ones told something since. The
// book was a ring of 4,096 keys in insertion order: with 4,500 transfers
// in flight, each told its leg and why it ended (two keys), the first
// ones' notes were gone before their transfers ended; and one transfer in
// flight through 10,000 finished transfers' callbacks lost its own. Lost,
// a leg only a callback named (never listed) and why it ended were
// unknown to the transfer (consult_failed, undecidable).
func TestCallbackNotesOfTransfersInFlightAreKept(t *testing.T) {
	ctx := context.Background()
	t.Run("many in flight", func(t *testing.T) {
		c := bookClient(t)
		ts := inFlight(4500)
		if _, err := c.Read(ctx, c.WatchKey(nil), ts); err != nil {
			t.Fatal(err)
		}
		for _, tr := range ts {
			if err := c.ApplyCallbackNote(tr.ID, "c-leg/USER_BUSY"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Read(ctx, c.WatchKey(nil), ts); err != nil {
			t.Fatal(err)
		}
		lost := 0
		for _, tr := range ts {
			if c.causes.get(tr.ID, "c-leg") != causeUserBusy || c.causes.leg(tr.ID) != "c-leg" {
				lost++
			}
		}
		if lost > 0 {
			t.Errorf("the notes of %d of %d transfers in flight were forgotten", lost, len(ts))
		}
	})
	t.Run("one in flight among finished ones", func(t *testing.T) {
		c := bookClient(t)
		mine := inFlight(1)
		if err := c.ApplyCallbackNote(mine[0].ID, "c-leg/USER_BUSY"); err != nil {
			t.Fatal(err)
		}
		base := time.Now().Add(time.Hour)
		for i := range 10000 {
			if i%500 == 0 {
				// The watcher reads the transfers in flight now and then.
				if _, err := c.Read(ctx, c.WatchKey(nil), mine); err != nil {
					t.Fatal(err)
				}
			}
			id := orchestrator.NewID(base.Add(time.Duration(i) * time.Millisecond))
			if err := c.ApplyCallbackNote(id, "c-"+strconv.Itoa(i)+"/NORMAL_CLEARING"); err != nil {
				t.Fatal(err)
			}
		}
		if got := c.causes.get(mine[0].ID, "c-leg"); got != causeUserBusy {
			t.Errorf("the transfer in flight's cause is %q, want %s", got, causeUserBusy)
		}
	})
}
