package apiclient_test

import (
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/providers/apiclient"
)

// A provider's Retry-After of more seconds than a time.Duration holds
// (about 292 years) is its way of saying "not for a long time". Multiplied
// into a duration it came out negative or wrapped, and a number past int's
// range failed to parse and read as no hint: either way the request was
// sent again at once, at the provider that had asked for the longest wait.
// It is the longest wait, which every caller bounds by its deadline.
func TestRetryAfterTooLongForADurationIsTheLongestWait(t *testing.T) {
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	for _, v := range []string{"9999999999", "9223372036854775807", "99999999999999999999999"} {
		h := http.Header{"Retry-After": {v}}
		d, ok := apiclient.RetryAfter(h, now)
		if !ok || d != time.Duration(math.MaxInt64/int64(time.Second))*time.Second {
			t.Errorf("Retry-After %s: %v, %v; want the longest wait", v, d, ok)
		}
	}
	for v, want := range map[string]time.Duration{"0": 0, "120": 2 * time.Minute} {
		if d, ok := apiclient.RetryAfter(http.Header{"Retry-After": {v}}, now); !ok || d != want {
			t.Errorf("Retry-After %s: %v, %v; want %v", v, d, ok, want)
		}
	}
	for _, v := range []string{"-5", "-99999999999999999999999", "soon"} {
		if d, ok := apiclient.RetryAfter(http.Header{"Retry-After": {v}}, now); ok {
			t.Errorf("Retry-After %s: %v, read as a hint", v, d)
		}
	}
}
