package webhooks_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// A Retry-After of more seconds than a time.Duration holds (a receiver
// that means "not again for a very long time", 9999999999 or more) was
// multiplied into a negative duration and read as no Retry-After at all:
// the delivery was tried again after its short back-off, and the endpoint
// was not left alone, at the receiver that had asked for the longest
// wait. It now waits as long as it may: its last try at its deadline.
func TestARetryAfterTooLongForADurationIsTheLongestWait(t *testing.T) {
	for _, ra := range []string{"9999999999", "99999999999999999999"} {
		t.Run(ra, func(t *testing.T) {
			s := memory.New()
			st := memory.NewDeliveries(s)
			rc, srv := newReceiver(t)
			rc.fail = func(string, int) (int, string) { return http.StatusTooManyRequests, ra }
			seed(t, s, "acme", 0, 1, 1)
			_, w := newDispatcher(t, st, endpoint(srv.URL), webhooks.Config{})
			dl := <-w.ch
			if dl.Status != webhooks.StatusPending || dl.LastCode != http.StatusTooManyRequests {
				t.Fatalf("after a 429: %+v", dl)
			}
			if !dl.NextAttempt.Equal(dl.Deadline) {
				t.Errorf("next attempt in %s, want at the deadline, %s away (Retry-After %s s)",
					dl.NextAttempt.Sub(dl.UpdatedAt), dl.Deadline.Sub(dl.UpdatedAt), ra)
			}
		})
	}
}

// A Retry-After may be an HTTP date rather than seconds (RFC 9110
// §10.2.3). Read as no Retry-After (a date judged past whatever it said,
// a mutation no test caught), the delivery was tried again after its
// short back-off, to a receiver that had asked to be left alone until
// then. The dispatcher's clock stands still, so that the date is exactly
// two minutes away.
func TestARetryAfterGivenAsADateIsHonoured(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	s := memory.New()
	st := memory.NewDeliveries(s)
	rc, srv := newReceiver(t)
	date := now.Add(2 * time.Minute).Format(http.TimeFormat)
	rc.fail = func(string, int) (int, string) { return http.StatusServiceUnavailable, date }
	seed(t, s, "acme", 0, 1, 1)
	_, w := newDispatcher(t, st, endpoint(srv.URL), webhooks.Config{}, func(d *webhooks.Dispatcher) {
		webhooks.SetClock(d, func() time.Time { return now })
	})
	dl := <-w.ch
	if dl.Status != webhooks.StatusPending || dl.LastCode != http.StatusServiceUnavailable {
		t.Fatalf("after a 503: %+v", dl)
	}
	if wait := dl.NextAttempt.Sub(dl.UpdatedAt); wait != 2*time.Minute {
		t.Errorf("next attempt in %s, want the 2m0s to the Retry-After's date %s", wait, date)
	}
}
