// Package apiclient holds the HTTP plumbing every provider adapter shares:
// request metrics, retry pacing that honours the provider's rate-limit
// headers, and bounded body reads. Adapters keep their own wire formats.
package apiclient

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// MaxBody bounds how much of a provider response is read.
const MaxBody = 1 << 20

// Metrics measures provider requests. One instance is shared by all
// adapters of a process, since they share the metric names.
type Metrics struct {
	duration *prometheus.HistogramVec
}

// NewMetrics registers the provider request metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return &Metrics{duration: promauto.With(reg).NewHistogramVec(prometheus.HistogramOpts{
		Name:    "transferd_provider_request_duration_seconds",
		Help:    "Provider API request latency by provider, operation and HTTP status (\"error\" when no response arrived).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"provider", "operation", "code"})}
}

// Observe records one request. status 0 means no response.
func (m *Metrics) Observe(provider, op string, status int, d time.Duration) {
	if m == nil {
		return
	}
	code := "error"
	if status > 0 {
		code = strconv.Itoa(status)
	}
	m.duration.WithLabelValues(provider, op, code).Observe(d.Seconds())
}

// RetryAfter reads a Retry-After header (seconds or an HTTP date).
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// Backoff is the wait before retry n (1-based) when the provider gave no
// hint: exponential from base, capped at max.
func Backoff(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// Sleep waits d or until ctx is done, whichever is first.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ReadBody reads at most MaxBody bytes of a response's body and closes it.
// A body of known length is read into one buffer of its size: io.ReadAll
// starts at 512 bytes and doubles, which for the listings a transfer reads
// made twice their size in garbage (a tenth of the bytes transferd
// allocated per transfer).
func ReadBody(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	r := io.LimitReader(resp.Body, MaxBody)
	n := resp.ContentLength
	if n < 0 || n >= MaxBody {
		return io.ReadAll(r)
	}
	// One byte more than announced, so that the read that finds the end
	// has room and the buffer never grows for a body as long as its
	// header says.
	b := make([]byte, 0, n+1)
	for {
		m, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			// Longer than announced: grow as io.ReadAll would.
			b = append(b, 0)[:len(b)]
		}
	}
}

// Transport is the HTTP behaviour every adapter shares: its client and how
// it retries safe requests.
type Transport struct {
	// HTTPClient defaults to a client with RequestTimeout.
	HTTPClient *http.Client
	// RequestTimeout bounds one request (default 10s).
	RequestTimeout time.Duration
	// Attempts is how often a safe request is tried in all (default 3).
	Attempts int
	// RetryBase is the first wait between attempts (default 200ms).
	RetryBase time.Duration
}

// WithDefaults fills in what t leaves unset.
func (t Transport) WithDefaults() Transport {
	if t.RequestTimeout <= 0 {
		t.RequestTimeout = 10 * time.Second
	}
	if t.HTTPClient == nil {
		// Keep as many idle connections to the provider as transfers make
		// requests at once: Go's default of 2 per host makes most
		// requests under load open a new TCP (and TLS) connection.
		pooled := http.DefaultTransport.(*http.Transport).Clone()
		pooled.MaxIdleConns, pooled.MaxIdleConnsPerHost = 256, 256
		t.HTTPClient = &http.Client{Timeout: t.RequestTimeout, Transport: pooled}
	}
	if t.Attempts <= 0 {
		t.Attempts = 3
	}
	if t.RetryBase <= 0 {
		t.RetryBase = 200 * time.Millisecond
	}
	return t
}
