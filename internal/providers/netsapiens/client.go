// Package netsapiens drives attended transfers through the NetSapiens NS
// API v2, exactly as NetSapiens' "Attended Transfer via API" guide
// describes: list the calls, hold with call-term-call-id, create the
// consult call, find its call-session-id, transfer with call-orig-call-id
// and {"hostname", "call-destination-session-id"}, never call-term-user.
package netsapiens

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/apiclient"
)

// Name is the provider name requests use.
const Name = "netsapiens"

// SubscriptionPath is where transferd serves a domain's subscription
// posts: SubscriptionPath + domain + "/" + token is the post-url's path.
const SubscriptionPath = "/callbacks/netsapiens/subscriptions/"

// tokenRE matches a post-url's token: what follows SubscriptionPath and
// the domain, up to whatever ends a URL quoted in prose.
var tokenRE = regexp.MustCompile(regexp.QuoteMeta(SubscriptionPath) + "([^/\\s`'\"<>]*)/[^\\s`'\"<>]+")

// withoutTokens cuts post-url tokens from provider text: a PBX refusing a
// subscription may quote the post-url it was sent, and the token in it is
// the credential of the domain's event posts, which the refusal's text
// would carry into the warning logged at every try. It is written
// "redacted", as the access log writes it.
func withoutTokens(s string) string {
	return tokenRE.ReplaceAllString(s, SubscriptionPath+"${1}/redacted")
}

// Config configures a Client.
type Config struct {
	// BaseURL is the API root, e.g. https://pbx.example.com/ns-api/v2.
	BaseURL string
	// APIKey is sent as a bearer credential. It never appears in logs,
	// errors or metrics.
	APIKey string
	// HTTPClient defaults to a client with RequestTimeout.
	HTTPClient *http.Client
	// RequestTimeout bounds one HTTP request (default 10s).
	RequestTimeout time.Duration
	// Attempts is how often a safe request is tried in all (default 3).
	Attempts int
	// RetryBase is the first wait between attempts (default 200ms).
	RetryBase time.Duration
	// AutoAnswer asks the PBX to auto-answer the agent's side of the
	// consult call (auto-answer-enabled). NetSapiens' click-to-call rings
	// the agent's device first; without auto-answer the agent must pick
	// up. Device support varies, so it is configurable (default true).
	AutoAnswer *bool
	// JoinHostname is whose core server the join's hostname names first
	// when the caller's and the consult's sessions are on different cores:
	// JoinHostnameCaller (default; the schema's "the hostname where the
	// call currently resides") or JoinHostnameConsult. Which one a PBX
	// wants is undocumented [guess]. A join refused with 400 is sent once
	// more naming the other at once; one accepted and seen not to take,
	// by the engine (JoinAgain). Naming the right one first saves a PBX
	// that ignores a wrong hostname a visibility window.
	JoinHostname string
	Metrics      *apiclient.Metrics

	// ListLimit is the page size a listing of calls asks for (its limit
	// query parameter; default DefaultListLimit), and ListPages the most
	// pages one listing reads (default DefaultListPages). A listing read
	// whole is one whose last page came back short; one cut off at
	// ListPages says nothing of the calls it did not show.
	ListLimit int
	ListPages int

	// VisibilityWindow is how long a new call may be unknown to the API
	// node that answers a request (the engine's visibility window; default
	// DefaultVisibilityWindow): behind a load balancer, a node lagging
	// behind the one that listed a call may leave it out of a listing and
	// answer 404 for it. A read by id answered 404 counts as the call ended
	// only once the call is that old (the consult's since its dial was
	// answered, the caller's since the transfer was asked for), and so does
	// a consult left out of a listing after a hang-up or a join, or of the
	// join's lookup; before, it is an unknown reading. A hold or a join
	// answered 404 within it (the hold's call since the transfer was asked
	// for, the join's consult since its dial was answered) is not applied,
	// unknown, and sent again (Client.notAppliedYet).
	VisibilityWindow time.Duration
	// StepTimeout is the engine's (default orchestrator.DefaultStepTimeout):
	// a dial step a stopped process left unfinished counts as answered
	// that long after it began, as the engine counts it, and the windows
	// of the dial run from there (Client.dialAnswered).
	StepTimeout time.Duration
	// Now is the clock that judges those ages (default time.Now): the
	// engine's, whose times the transfer records carry.
	Now func() time.Time

	// EventURL, when set, gives the post-url of a domain's event
	// subscription: transferd's callback route for it, with an
	// unguessable token. The client then keeps a subscription per
	// watched domain (it implements orchestrator.ViewWatcher); without
	// it, domains are only polled.
	EventURL func(domain string) string
	// AcceptedEventURLs, when set, gives the post-urls of a domain's
	// subscription that other callback secrets accepted during a
	// rotation (TRANSFERD_CALLBACK_SECRET_ACCEPTED) make: a subscription
	// posting to one is ours, adopted and moved to EventURL's.
	AcceptedEventURLs func(domain string) []string
	// SubscriptionTTL is the expiry a subscription asks for, renewed at
	// half (default DefaultSubscriptionTTL).
	SubscriptionTTL time.Duration
	// SubscriptionLinger is how long a subscription outlives the last
	// watch of its domain (default DefaultSubscriptionLinger).
	SubscriptionLinger time.Duration
	// Log receives the subscriptions' lines (they belong to no request).
	Log zerolog.Logger
}

// Defaults of Config.ListLimit and Config.ListPages: listings of up to
// 10,000 calls.
const (
	DefaultListLimit = 100
	DefaultListPages = 100
)

// DefaultVisibilityWindow is Config.VisibilityWindow's default, the
// engine's.
const DefaultVisibilityWindow = 5 * time.Second

// Values of Config.JoinHostname.
const (
	JoinHostnameCaller  = "caller"
	JoinHostnameConsult = "consult"
)

// Client is the NS API v2 adapter. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	httpc *http.Client
	// key is the API key every request sends; SetAPIKey replaces it.
	key        atomic.Pointer[string]
	attempts   int
	retryBase  time.Duration
	autoAnswer bool
	// joinConsult: the join names the consult's core server first
	// (Config.JoinHostname).
	joinConsult bool
	metrics     *apiclient.Metrics
	listLimit   int
	listPages   int
	// pageSeen is the longest page a listing of the PBX has answered: it
	// pages by at least that many rows, so a page shorter is the end of
	// its listing (Client.shortPage). pageOwn is a page size of the PBX's
	// own below listLimit, learned when a short page was followed by more
	// (0: none known): a page of that many rows is read on from. Both
	// assume one page size for the PBX, whatever its node or domain
	// [guess]; a page longer than pageOwn forgets it.
	pageSeen atomic.Int64
	pageOwn  atomic.Int64
	// startIgnored: the PBX answered a page again for a start past its
	// first (it ignores start), so a listing with more calls than a page
	// shows can never be read whole, and the calls of a transfer's agent
	// are read from the agent's own listing, which is shorter (userCalls).
	// It only adds requests where a listing is cut; a PBX taken for one
	// that ignores start is still paged by start as before.
	startIgnored atomic.Bool
	// limitHonoured: a listing asked for more rows than counted came back
	// whole (listAll) after the PBX answered a page again. From then on a
	// first page of the limit is followed by the count and that request
	// at once (listAllAtOnce), until one is not answered whole.
	limitHonoured atomic.Bool
	window        time.Duration // Config.VisibilityWindow
	// stepTimeout is Config.StepTimeout: the bound of a dial step left
	// unfinished (Client.dialAnswered).
	stepTimeout time.Duration
	now         func() time.Time
	subs        *subscriber // nil without Config.EventURL
	gone        goneCalls   // callers' and consults' calls a read answered 404 (confirmCallers)
}

// goneCalls is a bounded set of call-ids known to have ended: a call
// does not come back, so it is not read again. The oldest are forgotten
// first; one forgotten is read once more.
type goneCalls struct {
	mu   sync.Mutex
	set  map[string]struct{}
	ring [1024]string
	next int
}

func (g *goneCalls) has(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.set[id]
	return ok
}

func (g *goneCalls) add(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.set[id]; ok {
		return
	}
	if g.set == nil {
		g.set = make(map[string]struct{}, len(g.ring))
	}
	delete(g.set, g.ring[g.next])
	g.ring[g.next] = id
	g.next = (g.next + 1) % len(g.ring)
	g.set[id] = struct{}{}
}

var _ orchestrator.Provider = (*Client)(nil)

// New validates cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("netsapiens: base URL must be an absolute http(s) URL such as https://pbx.example.com/ns-api/v2")
	}
	if cfg.APIKey == "" {
		return nil, errors.New("netsapiens: an API key is required")
	}
	switch cfg.JoinHostname {
	case "", JoinHostnameCaller, JoinHostnameConsult:
	default:
		return nil, fmt.Errorf("netsapiens: the join hostname must be %q or %q, not %q", JoinHostnameCaller, JoinHostnameConsult, cfg.JoinHostname)
	}
	tr := apiclient.Transport{HTTPClient: cfg.HTTPClient, RequestTimeout: cfg.RequestTimeout,
		Attempts: cfg.Attempts, RetryBase: cfg.RetryBase}.WithDefaults()
	auto := true
	if cfg.AutoAnswer != nil {
		auto = *cfg.AutoAnswer
	}
	c := &Client{base: u, httpc: tr.HTTPClient, attempts: tr.Attempts,
		retryBase: tr.RetryBase, autoAnswer: auto, joinConsult: cfg.JoinHostname == JoinHostnameConsult, metrics: cfg.Metrics}
	c.key.Store(&cfg.APIKey)
	c.listLimit, c.listPages = cfg.ListLimit, cfg.ListPages
	if c.listLimit <= 0 {
		c.listLimit = DefaultListLimit
	}
	if c.listPages <= 0 {
		c.listPages = DefaultListPages
	}
	c.window, c.now = cfg.VisibilityWindow, cfg.Now
	if c.window <= 0 {
		c.window = DefaultVisibilityWindow
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.stepTimeout = cfg.StepTimeout; c.stepTimeout <= 0 {
		c.stepTimeout = orchestrator.DefaultStepTimeout
	}
	if cfg.EventURL != nil {
		c.subs = newSubscriber(c, cfg)
	}
	return c, nil
}

// SetAPIKey makes key the one every request sends from now on, those of
// transfers already in flight included: a rotated key (a reload of the
// tenants file) takes effect for them too, so that the key it replaced
// may be revoked at once without leaving their callers held. A request
// already sent finishes with the key it was sent with.
func (c *Client) SetAPIKey(key string) error {
	if key == "" {
		return errors.New("netsapiens: an API key is required")
	}
	c.key.Store(&key)
	return nil
}

// APIError is a non-2xx answer of the NS API: {"code": int, "message": string}.
type APIError struct {
	Status  int
	Code    int
	Message string
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("HTTP %d", e.Status)
	}
	return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
}

// kindOf maps an NS answer onto the orchestrator's vocabulary. A 401 or
// 403 is our misconfiguration, never the caller's problem.
func kindOf(status int) orchestrator.Kind {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return orchestrator.KindProviderAuth
	case status == http.StatusNotFound:
		return orchestrator.KindCallNotFound
	case status == http.StatusTooManyRequests || status >= 500:
		return orchestrator.KindProviderUnavailable
	default:
		return orchestrator.KindProviderRejected
	}
}

// request describes one API call.
type request struct {
	op     string // metric and error label, e.g. "hold"
	method string
	path   string // already escaped
	body   any
	// safe: repeating the request cannot do harm, so transient failures
	// are retried. Creating a call and transferring are never safe.
	safe bool
	// maxBody bounds the response read (apiclient.MaxBody if 0).
	maxBody int64
}

// do performs r and decodes a 2xx body into out (when out is not nil).
func (c *Client) do(ctx context.Context, r request, out any) error {
	var payload []byte
	if r.body != nil {
		var err error
		if payload, err = json.Marshal(r.body); err != nil {
			return orchestrator.E("netsapiens."+r.op, orchestrator.KindInternal, err)
		}
	}
	attempts := 1
	if r.safe {
		attempts = c.attempts
	}
	var last error
	lost := false // an attempt of this command may have been carried out, its answer lost
	for n := 1; n <= attempts; n++ {
		// Counted whatever came of it: a request whose answer was lost
		// may have been applied.
		orchestrator.CountSend(ctx)
		wait, err := c.once(ctx, r, payload, out)
		if err == nil {
			return nil
		}
		last = err
		if lost {
			last = apiclient.RefusedAfterLoss(err)
		}
		// A 429 was not carried out either, but it is not told apart
		// here: taking it for a loss only makes a later refusal unknown.
		lost = lost || (r.method != http.MethodGet && orchestrator.KindOf(err) == orchestrator.KindProviderUnavailable)
		if n == attempts || orchestrator.KindOf(err) != orchestrator.KindProviderUnavailable {
			break
		}
		if wait <= 0 {
			wait = apiclient.Backoff(n, c.retryBase, 5*time.Second)
		}
		if apiclient.PastDeadline(ctx, wait) {
			// The wait asked for (a Retry-After of an hour) outlasts the
			// step: slept to its deadline, the step failed no sooner and
			// held its worker all along. The error goes back now, and the
			// engine's own back-off tries again.
			break
		}
		if apiclient.Sleep(ctx, wait) != nil {
			break
		}
	}
	return last
}

// once sends one request. It returns how long the provider asked us to
// wait (Retry-After) alongside a retryable error.
func (c *Client) once(ctx context.Context, r request, payload []byte, out any) (time.Duration, error) {
	op := "netsapiens." + r.op
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, c.base.String()+r.path, body)
	if err != nil {
		return 0, orchestrator.E(op, orchestrator.KindInternal, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+*c.key.Load())
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := c.httpc.Do(req)
	if err != nil {
		c.metrics.Observe(Name, r.op, 0, time.Since(start))
		zerolog.Ctx(ctx).Debug().Str("op", r.op).Str("method", r.method).Str("path", r.path).Err(stripURL(err)).
			Msg("netsapiens request failed")
		return 0, orchestrator.E(op, orchestrator.KindProviderUnavailable, fmt.Errorf("%s %s: %w", r.method, r.path, stripURL(err)))
	}
	limit := r.maxBody
	if limit == 0 {
		limit = apiclient.MaxBody
	}
	data, rerr := apiclient.ReadBodyLimit(resp, limit)
	c.metrics.Observe(Name, r.op, resp.StatusCode, time.Since(start))
	zerolog.Ctx(ctx).Debug().Str("op", r.op).Str("method", r.method).Str("path", r.path).
		Int("status", resp.StatusCode).Float64("took_ms", float64(time.Since(start))/float64(time.Millisecond)).Msg("netsapiens request")
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out == nil {
			// The status answers a command; its body is not read for
			// anything. One that cannot be read whole (too long, cut off)
			// was taken for refused (a body too long is
			// KindProviderRejected): a join so answered was reported
			// failed and the recovery hung up the consult the PBX was
			// about to join the caller to.
			return 0, nil
		}
		if rerr != nil {
			return 0, orchestrator.E(op, apiclient.ReadErrKind(rerr), fmt.Errorf("reading the response: %w", rerr))
		}
		if len(bytes.TrimSpace(data)) > 0 {
			if err := decodeBody(data, out); err != nil {
				return 0, orchestrator.E(op, orchestrator.KindProviderRejected, fmt.Errorf("decoding the response: %w", err))
			}
		}
		return 0, nil
	}
	apiErr := &APIError{Status: resp.StatusCode}
	var eb struct {
		Code    flexString `json:"code"`
		Message string     `json:"message"`
	}
	if json.Unmarshal(data, &eb) == nil {
		apiErr.Code, _ = strconv.Atoi(string(eb.Code))
		eb.Message = withoutTokens(eb.Message)
		apiErr.Message = eb.Message
	}
	wait, _ := apiclient.RetryAfter(resp.Header, time.Now())
	return wait, &orchestrator.Error{Op: op, Kind: kindOf(resp.StatusCode), Err: apiErr,
		Evidence: &orchestrator.Evidence{Status: resp.StatusCode, Code: string(eb.Code), Message: eb.Message}}
}

// bodyDecoder is a response that decodes its body itself.
type bodyDecoder interface{ decodeBody(data []byte) error }

func decodeBody(data []byte, out any) error {
	if d, ok := out.(bodyDecoder); ok {
		return d.decodeBody(data)
	}
	return json.Unmarshal(data, out)
}

// stripURL drops the URL from a transport error, for the error and the
// log line alike (as Bandwidth's does): it carries no secret (the key
// travels in a header) but names the PBX's host and is long and noisy;
// the method and path say what was asked.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func seg(s string) string { return url.PathEscape(s) }
