// Package apiclient holds the HTTP plumbing every provider adapter shares:
// request metrics, retry pacing that honours the provider's rate-limit
// headers, and bounded body reads. Adapters keep their own wire formats.
package apiclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/sendgate"
)

// MaxBody bounds how much of a provider response ReadBody reads.
const MaxBody = 1 << 20

// ErrBodyTooLong is a response longer than its reader's limit. The reader
// says so rather than hand back a body cut short, which a caller would
// misread: a listing cut mid-row is invalid JSON, not a shorter listing.
var ErrBodyTooLong = errors.New("response body too long")

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
// Seconds beyond what a time.Duration holds (about 292 years: a provider's
// "not for a long time") are the longest wait. Multiplied as they were,
// they wrapped, often negative, or failed to parse and read as no hint,
// and the request went again at once to the provider that had asked for
// the longest wait. The callers bound the wait by their deadline
// (PastDeadline).
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	const most = math.MaxInt64 / int64(time.Second)
	s, err := strconv.ParseInt(v, 10, 64)
	switch {
	case err == nil && s >= 0:
		return time.Duration(min(s, most)) * time.Second, true
	case errors.Is(err, strconv.ErrRange) && !strings.HasPrefix(v, "-"):
		return time.Duration(most) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// RefusedAfterLoss is the error to report for a command that was sent
// again after an attempt whose answer was lost, when the last attempt was
// refused: the refusal speaks for that attempt only. The lost one may have
// been carried out (a join applied, a hold taken), and the retry refused
// because of it, so a refusal (KindProviderRejected, KindProviderAuth)
// becomes an unknown outcome (KindProviderUnavailable), with its evidence
// kept. Other kinds pass: "call not found" or "not active" describe the
// call as it is now, which each caller judges (a hang-up is done either
// way), and a transient failure is unknown already.
func RefusedAfterLoss(err error) error {
	var oe *orchestrator.Error
	if !errors.As(err, &oe) {
		return err
	}
	switch oe.Kind {
	case orchestrator.KindProviderRejected, orchestrator.KindProviderAuth:
	default:
		return err
	}
	e := *oe
	e.Kind = orchestrator.KindProviderUnavailable
	e.Err = fmt.Errorf("an earlier attempt's answer was lost, so it may have been carried out, and the retry was refused: %w", oe.Err)
	return &e
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

// PastDeadline reports whether waiting d would outlast ctx's deadline: a
// retry after the wait could not be made, and the error is better
// returned at once than after sleeping to the deadline.
func PastDeadline(ctx context.Context, d time.Duration) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < d
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

// ReadBody is ReadBodyLimit with MaxBody.
func ReadBody(resp *http.Response) ([]byte, error) { return ReadBodyLimit(resp, MaxBody) }

// ReadBodyLimit reads a response's body and closes it. A body longer than
// limit bytes yields its first limit bytes and ErrBodyTooLong. A body of
// known length is read into one buffer of its size: io.ReadAll starts at
// 512 bytes and doubles, which for the listings a transfer reads made
// twice their size in garbage (a tenth of the bytes transferd allocated
// per transfer).
func ReadBodyLimit(resp *http.Response, limit int64) ([]byte, error) {
	defer resp.Body.Close()
	// One byte over the limit tells a body of exactly limit bytes from a
	// longer one.
	r := io.LimitReader(resp.Body, limit+1)
	b, err := readAll(r, resp.ContentLength, limit)
	if int64(len(b)) > limit {
		return b[:limit], fmt.Errorf("%w: more than %d bytes", ErrBodyTooLong, limit)
	}
	return b, err
}

// ReadErrKind is the kind of a 2xx response that could not be read
// whole: one over its limit is as long on every attempt, so it is
// rejected, not retried; anything else is the connection's failure.
func ReadErrKind(err error) orchestrator.Kind {
	if errors.Is(err, ErrBodyTooLong) {
		return orchestrator.KindProviderRejected
	}
	return orchestrator.KindProviderUnavailable
}

// readAll reads r whole, into one buffer of n+1 bytes when the body's
// length n is known and within limit.
func readAll(r io.Reader, n, limit int64) ([]byte, error) {
	if n < 0 || n > limit {
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
		// A step's request is written only while its check passes (sendgate).
		pooled := http.DefaultTransport.(*http.Transport).Clone()
		pooled.MaxIdleConns, pooled.MaxIdleConnsPerHost = 256, 256
		t.HTTPClient = &http.Client{Timeout: t.RequestTimeout, Transport: sendgate.Transport(pooled)}
	}
	t.HTTPClient = commandsNotRedirected(t.HTTPClient)
	if t.Attempts <= 0 {
		t.Attempts = 3
	}
	if t.RetryBase <= 0 {
		t.RetryBase = 200 * time.Millisecond
	}
	return t
}

// commandsNotRedirected returns a copy of c that does not follow a
// redirect changing the method. Go's client follows a 301, 302 or 303
// answering a PATCH, POST or DELETE with a GET of the new URL, so that a
// hold, a dial, a transfer or a hang-up became a read, and its 200 was
// taken for the command accepted (a base URL written with http:// where
// the provider redirects to https://, a proxy's canonical path). Such a
// redirect is answered as it came: the command was not done. A redirect
// that keeps the method (307, 308, or any for a GET) is followed as c
// would, unless it leaves https: Go's client sends the request again with
// its Authorization header to a host of the same name, and the account's
// credentials would cross the network in clear.
func commandsNotRedirected(c *http.Client) *http.Client {
	cp := *c
	follow := c.CheckRedirect
	cp.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > 0 && (req.Method != via[0].Method || via[0].URL.Scheme == "https" && req.URL.Scheme != "https") {
			return http.ErrUseLastResponse
		}
		if follow != nil {
			return follow(req, via)
		}
		if len(via) >= 10 { // net/http's own limit
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &cp
}
