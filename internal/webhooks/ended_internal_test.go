package webhooks

import (
	"testing"
	"time"
)

// The results Run keeps after a failed write (ended.keep) are kept only
// while their claims last, and for as long as they do, however many
// writes fail.
func TestKeptResultsLastAsLongAsTheirClaims(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	dl := Delivery{ID: "d1", Attempts: 1}

	t.Run("past its claim's lease", func(t *testing.T) {
		// Another replica may have taken the delivery since: its result
		// is the one that counts, and this one is not tried for ever.
		var r ended
		r.add(dl, at.Add(time.Minute))
		rs := r.take()
		r.keep(rs, rs, at.Add(time.Minute))
		if got := r.take(); len(got) != 0 {
			t.Errorf("kept %+v at the end of its claim's lease", got)
		}
	})
	t.Run("a second failed write", func(t *testing.T) {
		var r ended
		r.add(dl, at.Add(time.Minute))
		for i := range 3 {
			rs := r.take()
			if len(rs) != 1 {
				t.Fatalf("write %d: %d results to write, want the kept one", i+1, len(rs))
			}
			r.keep(rs, rs, at.Add(time.Duration(i)*time.Second))
		}
		if got := r.take(); len(got) != 1 {
			t.Errorf("after three failed writes within the claim's lease, %d results kept, want 1", len(got))
		}
	})
}
