// Package bandwidth drives call transfers through Bandwidth's Catapult v1
// voice API (shared/reference/bandwidth-*).
//
// Two modes:
//   - announced: the page "Transfer active Call", one
//     POST /users/{u}/calls/{A} {"state":"transferring","transferTo",...}
//     with exactly the options the request asked for; the platform rings
//     the target, plays the whisper and connects the caller itself.
//   - attended: the agent-consult choreography built from bridges (notes
//     §8.3): hold the caller in its bridge, put the agent and a new consult
//     call in a second bridge, then join caller and target (or hang the
//     consult up and give the caller back to the agent).
//
// The client is hand written (notes §10): the Go SDK cannot send
// bridgeAudio:false or callIds:[], loses HTTP statuses and has no
// diversion fields.
package bandwidth

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/apiclient"
)

// Name is the provider name requests use.
const Name = "bandwidth"

// DefaultBaseURL is Catapult v1's API root.
const DefaultBaseURL = "https://api.catapult.inetwork.com/v1"

// CallbackPath is where transferd serves Catapult callbacks, below
// Config.PublicURL; the transfer id and the callback token follow it.
const CallbackPath = "/callbacks/bandwidth/"

// maxRateLimitRetries bounds how often one request waits out a rate limit.
const maxRateLimitRetries = 8

// Config configures a Client.
type Config struct {
	// BaseURL is the API root (default DefaultBaseURL).
	BaseURL string
	// UserID is the {userId} of every path, e.g. "u-dkjf9094802375s".
	UserID string
	// APIToken and APISecret are the HTTP Basic credentials. Neither ever
	// appears in logs, errors or metrics.
	APIToken  string
	APISecret string
	// HTTPClient defaults to a client with RequestTimeout.
	HTTPClient *http.Client
	// RequestTimeout bounds one HTTP request (default 10s).
	RequestTimeout time.Duration
	// Attempts is how often a safe request is tried in all on transient
	// failures (default 3). Rate-limited requests are retried separately.
	Attempts int
	// RetryBase is the first wait between attempts (default 200ms); waits
	// for a rate limit start from it too.
	RetryBase time.Duration
	// MaxRateLimitWait is the longest transferd waits for a rate limit to
	// reset before giving up on the request (default 10s).
	MaxRateLimitWait time.Duration
	// PublicURL is transferd's externally reachable base URL. When set,
	// every call transferd creates or transfers gets
	// callbackUrl = PublicURL + CallbackPath + transferID, and Catapult's
	// events wake the transfer instead of it waiting for the next poll.
	PublicURL string
	// CallbackToken returns the unguessable token that authenticates the
	// callbacks about a transfer (transferd: an HMAC of the tenant and
	// transfer id under a secret every replica shares); it follows the
	// transfer id in the callback URL. Nil leaves it out.
	CallbackToken func(transferID string) string
	// AcceptedCallbackTokens returns the tokens a transfer's callbackUrl
	// may carry besides CallbackToken's: those of the secrets accepted
	// while the secret is rotated (transferd:
	// TRANSFERD_CALLBACK_SECRET_ACCEPTED). A leg another process sent
	// before the rotation is known by them. Nil: none.
	AcceptedCallbackTokens func(transferID string) []string
	Metrics                *apiclient.Metrics
	// VisibilityWindow is how long the platform may take to show an
	// accepted action or a new call (the engine's visibility window,
	// TRANSFERD_VISIBILITY_WINDOW; default DefaultVisibilityWindow). A
	// step that depends on an update it sent waits this long for it to
	// show, and no less than MinLeaveWait: the hold seen applied, the
	// split's first attempt seen landed before a second is sent, a bridge
	// refused while a call still leaves another sent again, a call read
	// before and answered 404 read again. Waiting less than the platform
	// takes decides wrongly (a hold unknown, a twin of the split that can
	// land after the join and undo it); waiting more than it takes keeps
	// a caller on hold for nothing.
	VisibilityWindow time.Duration
	// StepTimeout is the engine's (TRANSFERD_STEP_TIMEOUT; default
	// orchestrator.DefaultStepTimeout): a dial step a stopped process left
	// unfinished counts as answered that long after it began, as the
	// engine counts it, and the windows of the dial run from there
	// (Client.dialAnswered).
	StepTimeout time.Duration
	// Now is the clock rate-limit resets, and those waits, are measured
	// against (default time.Now).
	Now func() time.Time
}

// DefaultVisibilityWindow is Config.VisibilityWindow's default, the
// engine's.
const DefaultVisibilityWindow = 5 * time.Second

// MinLeaveWait is the least a step waits for an update to show, whatever
// Config.VisibilityWindow says: a window of a few milliseconds (a test's,
// or a unit misread) would have the split sent again before its first
// attempt could land, a twin that may land after the join, and a hold
// given up after a single read.
const MinLeaveWait = time.Second

// Client is the Catapult v1 adapter. It is safe for concurrent use.
type Client struct {
	base     string
	userPath string // "/users/{u}", escaped
	// creds are the HTTP Basic credentials every request sends;
	// SetCredentials replaces them.
	creds         atomic.Pointer[credentials]
	httpc         *http.Client
	attempts      int
	retryBase     time.Duration
	maxRateWait   time.Duration
	publicURL     string
	callbackToken func(transferID string) string
	acceptedToken func(transferID string) []string
	metrics       *apiclient.Metrics
	now           func() time.Time
	causes        *causeBook
	// window is Config.VisibilityWindow; leaveWait bounds how long an
	// update is waited for to show (patiently): the window, at least
	// MinLeaveWait.
	window, leaveWait time.Duration
	// stepTimeout is Config.StepTimeout.
	stepTimeout time.Duration
}

var (
	_ orchestrator.Provider   = (*Client)(nil)
	_ orchestrator.NoteKeeper = (*Client)(nil)
)

var userIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// New validates cfg and returns a Client. Its errors never contain the
// credentials.
func New(cfg Config) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	base, err := absoluteURL(cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("bandwidth: base URL: %w", err)
	}
	if !userIDRE.MatchString(cfg.UserID) {
		return nil, errors.New("bandwidth: a user id (letters, digits, '-' or '_', e.g. u-dkjf9094802375s) is required")
	}
	if cfg.APIToken == "" || cfg.APISecret == "" {
		return nil, errors.New("bandwidth: an API token and an API secret are required")
	}
	var public string
	if cfg.PublicURL != "" {
		if public, err = absoluteURL(cfg.PublicURL); err != nil {
			return nil, fmt.Errorf("bandwidth: public URL: %w", err)
		}
	}
	tr := apiclient.Transport{HTTPClient: cfg.HTTPClient, RequestTimeout: cfg.RequestTimeout,
		Attempts: cfg.Attempts, RetryBase: cfg.RetryBase}.WithDefaults()
	if cfg.MaxRateLimitWait <= 0 {
		cfg.MaxRateLimitWait = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.VisibilityWindow <= 0 {
		cfg.VisibilityWindow = DefaultVisibilityWindow
	}
	if cfg.StepTimeout <= 0 {
		cfg.StepTimeout = orchestrator.DefaultStepTimeout
	}
	c := &Client{
		base: base, userPath: "/users/" + url.PathEscape(cfg.UserID),
		httpc:    tr.HTTPClient,
		attempts: tr.Attempts, retryBase: tr.RetryBase, maxRateWait: cfg.MaxRateLimitWait,
		publicURL: public, callbackToken: cfg.CallbackToken, acceptedToken: cfg.AcceptedCallbackTokens, metrics: cfg.Metrics, now: cfg.Now, causes: newCauseBook(maxCauses),
		window: cfg.VisibilityWindow, leaveWait: max(cfg.VisibilityWindow, MinLeaveWait),
		stepTimeout: cfg.StepTimeout,
	}
	c.creds.Store(&credentials{token: cfg.APIToken, secret: cfg.APISecret})
	return c, nil
}

// credentials are an account's API token and secret.
type credentials struct{ token, secret string }

// SetCredentials makes token and secret the ones every request sends from
// now on, those of transfers already in flight included: rotated
// credentials (a reload of the tenants file) take effect for them too, so
// that the ones they replaced may be revoked at once without leaving
// their callers held. A request already sent finishes with the
// credentials it was sent with.
func (c *Client) SetCredentials(token, secret string) error {
	if token == "" || secret == "" {
		return errors.New("bandwidth: an API token and an API secret are required")
	}
	c.creds.Store(&credentials{token: token, secret: secret})
	return nil
}

// absoluteURL checks an http(s) URL without credentials, query or fragment
// and returns it without a trailing slash.
func absoluteURL(raw string) (string, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return "", errors.New("must be an absolute http(s) URL")
	case u.User != nil:
		// Never in a URL: it would end up in logs and errors.
		return "", errors.New("must not carry credentials")
	case u.RawQuery != "" || u.Fragment != "":
		return "", errors.New("must not have a query or fragment")
	}
	return u.String(), nil
}

// callbackURL is the callbackUrl of the calls a transfer creates, or ""
// without a PublicURL.
func (c *Client) callbackURL(transferID string) string {
	if c.publicURL == "" {
		return ""
	}
	return c.publicURL + c.callbackSuffix(transferID)
}

// callbackSuffix is what follows PublicURL in the callbackUrl of a
// transfer's calls: the callback path, the transfer id and its token.
func (c *Client) callbackSuffix(transferID string) string {
	if c.callbackToken == nil {
		return CallbackPath + transferID
	}
	return tokenSuffix(transferID, c.callbackToken(transferID))
}

// callbackSecrets is what a request sending t's callbackUrl carries that
// an answer's text must not keep (request.secrets): the URL's token. Cut
// as a URL path only (withoutTokens), a message quoting the URL escaped
// (its slashes %2F) kept it.
func (c *Client) callbackSecrets(transferID string) []string {
	if c.publicURL == "" || c.callbackToken == nil {
		return nil
	}
	return []string{c.callbackToken(transferID)}
}

// tokenSuffix is a callbackSuffix with token.
func tokenSuffix(transferID, token string) string { return CallbackPath + transferID + "/" + token }

// namesTransfer returns whether a listed call's callbackUrl is one that
// transfer transferID gave its calls. Replicas may each have a PublicURL
// of their own, and the process that sent the transfer may not be the one
// that resumed it, so the base is not compared: what follows it
// (callbackSuffix, which every replica signs alike) names the transfer,
// and no other; while the secret is rotated, a suffix with an accepted
// secret's token does too (the process that sent the leg signed with
// another secret than this one does). The tokens are computed once for a
// whole listing. Without a PublicURL this process looks for legs as
// polling does (searchTransferLeg), and takes no callbackUrl for a
// transfer's.
func (c *Client) namesTransfer(transferID string) func(callbackURL string) bool {
	if c.publicURL == "" {
		return func(string) bool { return false }
	}
	suffixes := []string{c.callbackSuffix(transferID)}
	if c.callbackToken != nil && c.acceptedToken != nil {
		for _, token := range c.acceptedToken(transferID) {
			suffixes = append(suffixes, tokenSuffix(transferID, token))
		}
	}
	return func(callbackURL string) bool {
		return slices.ContainsFunc(suffixes, func(suffix string) bool { return strings.HasSuffix(callbackURL, suffix) })
	}
}

// APIError is a non-2xx answer of the Catapult API:
// {"category", "code", "message", "details": [{"name", "value"}]}.
type APIError struct {
	Status   int
	Category string
	Code     string
	Message  string
	// resetMS is the rateLimitResetTime detail of a 429, epoch ms.
	resetMS int64
}

func (e *APIError) Error() string {
	s := "HTTP " + strconv.Itoa(e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// maxMessage bounds the provider text kept in errors and evidence.
const maxMessage = 512

// decodeError reads an error body tolerantly: codes may be numbers, the
// body may not be JSON at all (a proxy's HTML page), and whatever text is
// kept is bounded and stripped of control characters, because it ends up
// in transfer records and logs.
//
// secrets are what the request carried that the text must not keep
// (sentSecrets): they are cut before the text is bounded, so that no
// part of one is left at the cut.
func decodeError(status int, body []byte, secrets ...string) *APIError {
	e := &APIError{Status: status}
	scrub := func(s string) string { return withoutSecrets(withoutTokens(s), secrets) }
	var raw struct {
		Category flexString      `json:"category"`
		Code     flexString      `json:"code"`
		Message  flexString      `json:"message"`
		Details  json.RawMessage `json:"details"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		e.Message = cleanText(scrub(string(body)), 200)
		return e
	}
	e.Category = cleanText(scrub(string(raw.Category)), 64)
	e.Code = cleanText(scrub(string(raw.Code)), 64)
	e.Message = cleanText(scrub(string(raw.Message)), maxMessage)
	var details []struct {
		Name  flexString `json:"name"`
		Value flexString `json:"value"`
	}
	if json.Unmarshal(raw.Details, &details) == nil {
		for _, d := range details {
			if d.Name == "rateLimitResetTime" {
				e.resetMS, _ = strconv.ParseInt(strings.TrimSpace(string(d.Value)), 10, 64)
			}
		}
	}
	return e
}

// tokenRE matches a callback URL's token: what follows CallbackPath and
// the transfer id, up to whatever ends a URL quoted in prose.
var tokenRE = regexp.MustCompile(regexp.QuoteMeta(CallbackPath) + "([^/\\s`'\"<>]*)/[^\\s`'\"<>]+")

// withoutTokens cuts callback tokens from provider text: a refusal may
// quote the callbackUrl it was sent (errors.md's callback-invalid-url, a
// validation message naming the property it refuses), and the token in
// it is the credential of the transfer's callbacks, which the text would
// carry into the transfer's record (shown by the API, webhooks and
// events) and the log. It is written "redacted", as the access log
// writes it.
func withoutTokens(s string) string {
	return tokenRE.ReplaceAllString(s, CallbackPath+"${1}/redacted")
}

// minSecret is the shortest secret withoutSecrets cuts: shorter ones
// protect nothing, and cutting them would garble the text.
const minSecret = 4

// sentSecrets are what a request carries that provider text must not
// keep: the account's credentials, as given and as the Authorization
// header carries them, and the request's own (request.secrets: the
// token of the callbackUrl it sends). A refusal may quote them (a 401
// naming the token it refuses: its body is a guess, notes §12.8 unknown
// 6; a validator quoting the callbackUrl it refuses, escaped), and so
// may a page in front of the API (a proxy's error page echoing the
// request's headers or body); the text is kept in the transfer's
// record, its events and the log.
func sentSecrets(cr *credentials, r request) []string {
	basic := base64.StdEncoding.EncodeToString([]byte(cr.token + ":" + cr.secret))
	return append([]string{cr.token, cr.secret, basic}, r.secrets...)
}

// withoutSecrets cuts every secret from s, as given and escaped as a URL
// or a form would escape it (a validator quoting a value as a query
// parameter), longest first, so that a secret within another is not
// left in pieces. A JSON body's own escapes (\u002F) are read before
// this: decodeError decodes the body first.
func withoutSecrets(s string, secrets []string) string {
	var forms []string
	for _, sec := range secrets {
		if len(sec) < minSecret {
			continue
		}
		for _, f := range []string{sec, url.QueryEscape(sec), url.PathEscape(sec)} {
			if !slices.Contains(forms, f) {
				forms = append(forms, f)
			}
		}
	}
	slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
	for _, f := range forms {
		s = strings.ReplaceAll(s, f, "redacted")
	}
	return s
}

// cleanText makes provider text safe to keep: valid UTF-8, no control
// characters, whitespace collapsed, at most max runes.
func cleanText(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	n, space := 0, false
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = b.Len() > 0
			continue
		}
		if n >= max {
			b.WriteString("…")
			break
		}
		if space {
			b.WriteByte(' ')
			space = false
			n++
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// flexString decodes a JSON string, number or boolean into a string and
// anything else into "", so that one odd field never hides the rest.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0:
		*f = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9') || bytes.Equal(b, []byte("true")) || bytes.Equal(b, []byte("false")):
		*f = flexString(b)
	default:
		*f = ""
	}
	return nil
}

// flexBool decodes true, false and their string forms: the docs' own
// examples send "bridgeAudio":"true".
type flexBool bool

func (f *flexBool) UnmarshalJSON(b []byte) error {
	var s flexString
	if err := s.UnmarshalJSON(b); err != nil {
		return err
	}
	*f = flexBool(strings.EqualFold(strings.TrimSpace(string(s)), "true"))
	return nil
}

// kindOf maps a Catapult error onto the orchestrator's vocabulary
// (errors.md). A 401 or an access denial is our misconfiguration; a rate
// limit, a conflicting concurrent update and every 5xx are transient. A
// 403's code says which it is, not its category: the category of the 403
// FORBIDDEN group (a bridge overflow, a destination not allowed) is a
// guess, and "authorization", which errors.md also lists, would have made
// every refusal of that group an access denial.
func kindOf(e *APIError) orchestrator.Kind {
	code, cat := strings.ToLower(e.Code), strings.ToLower(e.Category)
	switch {
	case e.Status == http.StatusUnauthorized:
		return orchestrator.KindProviderAuth
	case code == "call-not-found" || code == "call-id-not-found":
		return orchestrator.KindCallNotFound
	case code == "call-invalid-state":
		return orchestrator.KindCallNotActive
	case code == "call-rate-limit", e.Status == http.StatusTooManyRequests,
		e.Status == http.StatusConflict, e.Status >= 500:
		return orchestrator.KindProviderUnavailable
	case e.Status == http.StatusForbidden && (code == "" || code == "user-access-denied" ||
		code == "number-access-denied" || cat == "authentication"):
		return orchestrator.KindProviderAuth
	default:
		// 400 validation-error, missing-property, bridge-*; 403 bridge
		// overflow, destination not allowed, credit; 404 of anything but a
		// call (a wrong base URL, a bridge).
		return orchestrator.KindProviderRejected
	}
}

// codeOf returns the Catapult error code in err's chain, or "".
func codeOf(err error) string {
	var ae *APIError
	if errors.As(err, &ae) {
		return strings.ToLower(ae.Code)
	}
	return ""
}

// notFound reports whether err is the platform answering 404, whatever
// wraps it (unreadable, say).
func notFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// unknownOutcome reports whether a failed command may still have been
// carried out: no answer arrived, the platform failed (5xx), or it
// answered success without the id of what it created. A 4xx, rate limits
// included, means the command was not executed.
func unknownOutcome(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status >= 500
	}
	return true
}

// request describes one API call.
type request struct {
	op     string // metric and error label, e.g. "transfer"
	method string
	path   string // below the user, already escaped: "/calls/c-1"
	query  url.Values
	body   any
	// safe: repeating the request cannot do harm (reads, bridge
	// memberships, which are absolute, and hang-ups), so transient failures
	// are retried. Creating a call or a bridge and transferring are never
	// safe; they are retried only after a rate limit, which means the
	// platform did not execute them.
	safe bool
	// secrets are what the body carries that an answer's text must not
	// keep, besides the credentials (sentSecrets): the callback token of
	// a callbackUrl it sends (callbackSecrets).
	secrets []string
}

// created receives the id of the resource a request created, from the
// Location header.
type created struct{ ID string }

// attempt is the result of one HTTP exchange.
type attempt struct {
	err     error
	limited bool          // 429, or 403 call-rate-limit: not executed
	wait    time.Duration // what the platform asked us to wait, if it said
	hinted  bool
}

// do performs r with the user's path prefix and decodes a 2xx body into
// out; out may be a *created to receive the new resource's id.
func (c *Client) do(ctx context.Context, r request, out any) error {
	var payload []byte
	if r.body != nil {
		var err error
		if payload, err = json.Marshal(r.body); err != nil {
			return orchestrator.E("bandwidth."+r.op, orchestrator.KindInternal, err)
		}
	}
	tries, limited := 0, 0
	lost := false // an attempt of this command may have been carried out, its answer lost
	for {
		tries++
		a := c.once(ctx, r, payload, out)
		if !a.limited && r.method != http.MethodGet {
			// A rate-limited request was not executed; any other may have
			// been, its answer lost. A read changes nothing, and nothing
			// of it can land later.
			orchestrator.CountSend(ctx)
		}
		if a.err == nil {
			return nil
		}
		// What to report if this attempt is the last: decisions below
		// read a.err, what this attempt's answer said.
		final := a.err
		if lost {
			final = apiclient.RefusedAfterLoss(a.err)
		}
		lost = lost || (!a.limited && r.method != http.MethodGet && unknownOutcome(a.err))
		var wait time.Duration
		switch {
		case a.limited:
			limited++
			tries-- // a rate-limited request was not executed: not an attempt
			if limited > maxRateLimitRetries {
				return gaveUp(final, "still rate limited after %d waits", maxRateLimitRetries)
			}
			wait = a.wait
			if !a.hinted {
				wait = apiclient.Backoff(limited, c.retryBase, c.maxRateWait)
			}
			// Never hammer: a reset already past still waits a little.
			wait = max(wait, c.retryBase)
			if wait > c.maxRateWait {
				return gaveUp(final, "rate limited for another %s, longer than the %s transferd waits", wait.Round(time.Millisecond), c.maxRateWait)
			}
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
				return gaveUp(final, "rate limited for another %s, beyond the step's deadline", wait.Round(time.Millisecond))
			}
		case r.safe && tries < c.attempts && orchestrator.KindOf(a.err) == orchestrator.KindProviderUnavailable:
			wait = a.wait
			if !a.hinted {
				wait = apiclient.Backoff(tries, c.retryBase, 5*time.Second)
			}
			if apiclient.PastDeadline(ctx, wait) {
				// A Retry-After (on a 503, say) that outlasts the step:
				// slept to its deadline, the step failed no sooner. The
				// engine's own back-off tries again.
				return final
			}
		default:
			return final
		}
		zerolog.Ctx(ctx).Debug().Str("op", r.op).Float64("wait_ms", float64(wait)/float64(time.Millisecond)).Bool("rate_limited", a.limited).
			Msg("bandwidth request will be retried")
		if apiclient.Sleep(ctx, wait) != nil {
			return final
		}
	}
}

// gaveUp says why a rate-limited request was not tried again, keeping the
// error's kind and evidence.
func gaveUp(err error, format string, args ...any) error {
	var oe *orchestrator.Error
	if !errors.As(err, &oe) {
		return err
	}
	e := *oe
	e.Err = fmt.Errorf(format+": %w", append(args, oe.Err)...)
	return &e
}

// once sends one request.
func (c *Client) once(ctx context.Context, r request, payload []byte, out any) attempt {
	op := "bandwidth." + r.op
	target := c.base + c.userPath + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, target, body)
	if err != nil {
		return attempt{err: orchestrator.E(op, orchestrator.KindInternal, err)}
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	cr := c.creds.Load()
	req.SetBasicAuth(cr.token, cr.secret)
	start := time.Now()
	resp, err := c.httpc.Do(req)
	if err != nil {
		c.metrics.Observe(Name, r.op, 0, time.Since(start))
		zerolog.Ctx(ctx).Debug().Str("op", r.op).Str("method", r.method).Str("path", r.path).Err(stripURL(err)).
			Msg("bandwidth request failed")
		return attempt{err: orchestrator.E(op, orchestrator.KindProviderUnavailable,
			fmt.Errorf("%s %s: %w", r.method, r.path, stripURL(err)))}
	}
	data, rerr := apiclient.ReadBody(resp)
	took := time.Since(start)
	c.metrics.Observe(Name, r.op, resp.StatusCode, took)
	zerolog.Ctx(ctx).Debug().Str("op", r.op).Str("method", r.method).Str("path", r.path).
		Int("status", resp.StatusCode).Float64("took_ms", float64(took)/float64(time.Millisecond)).Msg("bandwidth request")

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		// A body that cannot be read whole (too long, cut off) matters only
		// where it is decoded: the status answers an update, and a create's
		// id is in its Location. Taken for refused (a body too long is
		// KindProviderRejected), a transfer so answered was reported failed,
		// "nothing created", the caller restored, while the platform rang
		// the target and connected the caller to it.
		switch o := out.(type) {
		case nil:
		case *created:
			id, err := locationID(resp.Header.Get("Location"))
			if err != nil {
				// The platform accepted the create, so the resource
				// probably exists, but its id is lost as with a lost
				// answer: the outcome is unknown, never "refused"
				// (KindProviderRejected would tell the engine that
				// nothing was created, and it would stop watching for
				// what was). KindProviderUnavailable is the kind the
				// engine reads as "may have happened"; the request is
				// not retried, as creates are never safe.
				return attempt{err: orchestrator.E(op, orchestrator.KindProviderUnavailable,
					fmt.Errorf("%s %s answered %d without the new id: %w", r.method, r.path, resp.StatusCode, err))}
			}
			o.ID = id
		default:
			if rerr != nil {
				return attempt{err: orchestrator.E(op, apiclient.ReadErrKind(rerr), fmt.Errorf("reading the response: %w", rerr))}
			}
			if len(bytes.TrimSpace(data)) == 0 {
				return attempt{err: orchestrator.E(op, orchestrator.KindProviderRejected, errors.New("empty response body"))}
			}
			if err := json.Unmarshal(data, out); err != nil {
				return attempt{err: orchestrator.E(op, orchestrator.KindProviderRejected, fmt.Errorf("decoding the response: %w", err))}
			}
		}
		return attempt{}
	}

	ae := decodeError(resp.StatusCode, data, sentSecrets(cr, r)...)
	a := attempt{err: &orchestrator.Error{Op: op, Kind: kindOf(ae), Err: ae,
		Evidence: &orchestrator.Evidence{Status: ae.Status, Code: ae.Code, Message: ae.Message}}}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		a.limited = true
		a.wait, a.hinted = c.resetWait(resp.Header, ae)
	case strings.EqualFold(ae.Code, "call-rate-limit"):
		// POST /calls over the limit: the docs give no reset time.
		a.limited = true
	default:
		a.wait, a.hinted = apiclient.RetryAfter(resp.Header, c.now())
	}
	return a
}

// resetWait reads how long a 429 asks us to wait: X-RateLimit-Reset is
// an epoch in milliseconds (rateLimits.md), repeated in the body's
// rateLimitResetTime detail; Retry-After is accepted too.
func (c *Client) resetWait(h http.Header, ae *APIError) (time.Duration, bool) {
	ms, err := strconv.ParseInt(strings.TrimSpace(h.Get("X-RateLimit-Reset")), 10, 64)
	if err != nil || ms <= 0 {
		ms = ae.resetMS
	}
	if ms > 0 {
		// An epoch in seconds (a value before 1973 read as milliseconds)
		// is taken for what it evidently is.
		if ms < 1e11 {
			ms *= 1000
		}
		return max(time.UnixMilli(ms).Sub(c.now()), 0), true
	}
	return apiclient.RetryAfter(h, c.now())
}

// idRE is what an id taken from a Location may look like: Catapult's
// c-…, brg-… ids and the SDK fixtures' plain words.
var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$`)

// locationID returns the last path segment of a Location header, which
// holds the created resource's id; the URL may be absolute or relative
// (notes §2: every SDK reads it so).
func locationID(loc string) (string, error) {
	loc = strings.TrimSpace(loc)
	if loc == "" {
		return "", errors.New("no Location header")
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", errors.New("the Location header is not a URL")
	}
	// The escaped form, so that an encoded "/" cannot pose as a separator.
	p := strings.TrimRight(u.EscapedPath(), "/")
	id := p[strings.LastIndexByte(p, '/')+1:]
	if !idRE.MatchString(id) {
		return "", fmt.Errorf("the Location header does not end in an id")
	}
	return id, nil
}

// stripURL drops the URL from a transport error: it carries no secret
// (credentials travel in a header and New refuses them in URLs) but is
// long and noisy.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func seg(s string) string { return url.PathEscape(s) }
