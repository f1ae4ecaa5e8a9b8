// Package api is transferd's HTTP facade: the v1 transfers resource,
// operations endpoints, problem details and middleware.
package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/xid"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/hlog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/wake"
)

// Config configures the HTTP facade.
type Config struct {
	// OpenAPI is the contract served at /openapi.yaml.
	OpenAPI []byte
	// TrustedProxies are CIDRs whose X-Forwarded-For is believed when
	// logging the client address; empty means the peer address is used.
	TrustedProxies []string
	// Idempotency stores Idempotency-Key records (required).
	Idempotency IdempotencyStore
	// Callbacks receive provider events for the default accounts, by
	// provider name, at /callbacks/{provider}/{transfer_id}/{token}.
	Callbacks map[string]CallbackReceiver
	// Forwarder, when set, forwards what a callback told to the other
	// replicas (whichever drives its transfer: another may take it over),
	// and hands what
	// they forward to this replica's receivers. nil: a callback's note
	// stays with the replica that received it (a single process).
	Forwarder CallbackForwarder
	// CallbackKeepTimeout bounds how long a callback's answer waits for
	// what it told to be saved with its transfer (NoteKeeper); zero is
	// DefaultCallbackKeepTimeout. Half of WriteTimeout at most.
	CallbackKeepTimeout time.Duration
	// Accounts, when set, are the tenants' own provider accounts; the
	// account a tenant uses for a provider receives its callbacks when it
	// is a CallbackReceiver.
	Accounts orchestrator.Accounts
	// Subscriptions receive the default accounts' event subscription
	// deliveries, by provider name, at
	// /callbacks/{provider}/subscriptions/{key}/{token}.
	Subscriptions map[string]SubscriptionReceiver
	// CallbackSigner checks the token of every callback URL; nil refuses
	// every callback.
	CallbackSigner *CallbackSigner
	// Keys authenticates every /v1 route; nil leaves the API open, acting
	// for the default tenant (demo mode without keys).
	Keys Authenticator
	// Tenants, when set, says what each tenant may do and its limits;
	// without it every tenant has Limits.
	Tenants Tenants
	// Limits apply to every tenant when Tenants is nil.
	Limits Limits
	// BodyReadTimeout bounds how long a request body may take to arrive,
	// from when its handler starts; zero leaves only the server's read
	// timeout.
	BodyReadTimeout time.Duration
	// WriteTimeout is the server's write timeout; a long poll extends its
	// own deadline by the wait it was granted. At most MaxWriteTimeout.
	WriteTimeout time.Duration
	// Replica names this process among those sharing the store; it owns
	// the idempotency reservations it makes.
	Replica string
	// Credentials reports provider credential health at
	// /status/providers; nil lists no provider.
	Credentials *CredentialMonitor
	// Deliveries serves the webhook deliveries routes; nil when no
	// webhooks are configured.
	Deliveries Deliveries
	// EventsSaved is notified, with their tenant, of the saves that wrote
	// events: this replica's (cmd/transferd gives its Notify to
	// orchestrator.Config.EventsSaved) and, on PostgreSQL, the other
	// replicas' (the store's notifications). It wakes the tenant's open
	// event streams, which then read the outbox at once. nil: they only
	// poll.
	EventsSaved *wake.Tenants
	// EventStreamPoll is how often an open event stream reads the outbox
	// when nothing woke it: the events other replicas save, when nothing
	// tells of them here, reach it within this long. Zero is
	// DefaultEventStreamPoll.
	EventStreamPoll time.Duration
	// EventsHeard, when set, reports whether EventsSaved hears the saves
	// of every replica now (the PostgreSQL store's notifications arrive).
	// While it does, a stream that nothing woke reads the outbox every
	// EventStreamSafetyPoll instead, which catches only what a wake
	// missed; while it does not, every EventStreamPoll.
	EventsHeard func() bool
	// EventStreamSafetyPoll is the poll while EventsHeard reports true;
	// zero is DefaultEventStreamSafetyPoll.
	EventStreamSafetyPoll time.Duration
	// Closing, when closed, ends the open event streams after a last read
	// of the outbox, and the waits of long polls (Prefer: wait), which
	// answer with what they have: cmd/transferd closes it as its servers
	// shut down, which wait for every request to end. nil: streams end
	// only when their client leaves, and waits when they are over.
	Closing <-chan struct{}
	// Stopping, when closed, ends the waits of long polls on transfers
	// this replica does not drive (another replica's, on a shared
	// store), which its engine's shutdown will not change, and the waits
	// of repeats of an Idempotency-Key for the request they repeat (told
	// to retry): cmd/transferd closes it as that shutdown begins. nil:
	// they end with Closing.
	Stopping <-chan struct{}
	// Draining, when closed, has /readyz report not ready while every
	// other route serves as before: cmd/transferd closes it when a
	// shutdown delay begins, so that a load balancer stops sending
	// requests before the listener closes. nil: never.
	Draining <-chan struct{}
}

// CallbackReceiver reads a provider's event about a transfer. It returns
// an error of kind KindInvalid for a malformed event. An event never
// changes a transfer by itself: the server then wakes the transfer, which
// reads the provider's real state.
//
// What an event tells may be kept in the receiver's memory (why a call
// ended, say), where only the replica that received it sees it. So
// ReceiveCallback returns it as a note, one word of the receiver's own
// making ("" when it told nothing to keep), which the server forwards to
// the other replicas (Config.Forwarder), whichever drives the transfer,
// since another may take it over; there
// ApplyCallbackNote keeps it as if the event had come there. A malformed
// note is an error of kind KindInvalid.
type CallbackReceiver interface {
	ReceiveCallback(r *http.Request, transferID string) (note string, err error)
	ApplyCallbackNote(transferID, note string) error
}

// NoteKeeper is a CallbackReceiver whose notes the replica driving the
// transfer saves with its record (orchestrator.NoteKeeper): NoteKept
// reports whether the record t holds what note told. A callback it
// receives is answered 2xx only once the saved record does (see
// handleCallback).
type NoteKeeper interface {
	NoteKept(t *orchestrator.Transfer, note string) bool
}

// DefaultCallbackKeepTimeout is how long a callback's answer waits for
// its note to be saved, by default: half of Catapult's callbackTimeout
// (10 s, its default and its most), which then has the time to post it
// to the fallbackUrl.
const DefaultCallbackKeepTimeout = 5 * time.Second

// CallbackForwarder carries callback notes between the replicas sharing
// a store (the PostgreSQL store's notifications): ForwardCallback sends
// one to the others, ListenCallbacks hears the others' (heard must not
// block). Best effort: a note lost costs only what it would have told;
// the transfer still reads the provider's state.
type CallbackForwarder interface {
	ForwardCallback(ctx context.Context, tenant, provider, transferID, note string) error
	ListenCallbacks(heard func(tenant, provider, transferID, note string))
}

// Handlers are transferd's HTTP handlers by listener: the API (/v1 and
// /openapi.yaml), the provider callbacks and the operations endpoints
// (/metrics, /healthz, /readyz, /status/providers).
type Handlers struct {
	API, Callbacks, Admin http.Handler
}

// parts of the routes a handler serves.
type part int

const (
	partAPI part = 1 << iota
	partCallbacks
	partAdmin
)

// shared is what every handler of a process shares.
type shared struct {
	cfg   Config
	eng   *orchestrator.Engine
	log   zerolog.Logger
	gath  prometheus.Gatherer
	http  *httpMetrics
	auth  *authMetrics
	limit *limiter
	// forwarded counts callback notes by result (forwardResults).
	forwarded *prometheus.CounterVec
}

// forwardResults are the results transferd_callbacks_forwarded_total
// counts: notes this replica sent to the others or failed to, and notes
// the others sent that it kept or refused (no such receiver here, or a
// note the receiver does not accept).
var forwardResults = []string{"sent", "failed", "applied", "refused"}

func newShared(cfg Config, eng *orchestrator.Engine, log zerolog.Logger, reg prometheus.Registerer, gath prometheus.Gatherer) *shared {
	if cfg.Idempotency == nil {
		panic("api.NewServer: Config.Idempotency is required")
	}
	if cfg.EventsSaved == nil {
		cfg.EventsSaved = new(wake.Tenants) // notified by nothing
	}
	if cfg.EventStreamPoll <= 0 {
		cfg.EventStreamPoll = DefaultEventStreamPoll
	}
	if cfg.EventStreamSafetyPoll <= 0 {
		cfg.EventStreamSafetyPoll = DefaultEventStreamSafetyPoll
	}
	s := &shared{cfg: cfg, eng: eng, log: log, gath: gath, http: newHTTPMetrics(reg), auth: newAuthMetrics(reg),
		limit: newLimiter(cfg.Tenants, cfg.Limits),
		forwarded: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "transferd_callbacks_forwarded_total",
			Help: "Provider callback notes forwarded between replicas, by result (sent, failed, applied, refused).",
		}, []string{"result"})}
	for _, r := range forwardResults {
		s.forwarded.WithLabelValues(r)
	}
	if cfg.Forwarder != nil {
		cfg.Forwarder.ListenCallbacks(s.applyForwarded)
	}
	return s
}

// NewServer returns the transferd HTTP handler serving every route on one
// listener.
func NewServer(cfg Config, eng *orchestrator.Engine, log zerolog.Logger, reg prometheus.Registerer, gath prometheus.Gatherer) http.Handler {
	return newShared(cfg, eng, log, reg, gath).router(partAPI | partCallbacks | partAdmin)
}

// Split says which routes get their own listener.
type Split struct {
	Callbacks, Admin bool
}

// NewHandlers returns one handler per listener, so that the callbacks a
// provider must reach and the operations endpoints a monitoring system
// scrapes can be exposed without exposing the API. API serves what split
// does not move; Callbacks and Admin are nil unless split.
func NewHandlers(cfg Config, eng *orchestrator.Engine, log zerolog.Logger, reg prometheus.Registerer, gath prometheus.Gatherer, split Split) Handlers {
	s := newShared(cfg, eng, log, reg, gath)
	main := partAPI
	var h Handlers
	if split.Callbacks {
		h.Callbacks = s.router(partCallbacks)
	} else {
		main |= partCallbacks
	}
	if split.Admin {
		h.Admin = s.router(partAdmin)
	} else {
		main |= partAdmin
	}
	h.API = s.router(main)
	return h
}

func (s *shared) router(parts part) *chi.Mux {
	cfg, log, m := s.cfg, s.log, s.http
	r := chi.NewRouter()
	r.Use(hlog.NewHandler(log))
	r.Use(requestID)
	if len(cfg.TrustedProxies) > 0 {
		r.Use(middleware.ClientIPFromXFF(cfg.TrustedProxies...))
	} else {
		r.Use(middleware.ClientIPFromRemoteAddr)
	}
	r.Use(accessLog)
	r.Use(recoverer)
	r.Use(bodyDeadline(cfg.BodyReadTimeout))
	r.Use(m.middleware)
	// HEAD is answered by the GET handler wherever GET is routed; the
	// server drops the body.
	r.Use(middleware.GetHead)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		p := probNotFound
		p.Detail = "no route for " + r.URL.Path
		writeProblem(w, r, p)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		var allowed []string
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if r.Match(chi.NewRouteContext(), m, req.URL.Path) ||
				m == http.MethodHead && r.Match(chi.NewRouteContext(), http.MethodGet, req.URL.Path) {
				allowed = append(allowed, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		p := probMethod
		p.Detail = req.Method + " is not allowed on " + req.URL.Path
		writeProblem(w, req, p)
	})
	s.routes(r, parts)
	return r
}

// requestIDRE bounds what an incoming X-Request-Id may look like before it
// is trusted into logs: a gateway's id is kept, anything else replaced.
var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// requestID keeps a sane X-Request-Id from the gateway or makes one, and
// puts it in the response and on every log line of the request. An id
// sent twice is replaced too: a proxy in front may log either, and the
// request's lines would be under the other.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var id string
		if ids := r.Header.Values("X-Request-Id"); len(ids) == 1 && requestIDRE.MatchString(ids[0]) {
			id = ids[0]
		} else {
			id = xid.New().String()
		}
		w.Header().Set("X-Request-Id", id)
		log := zerolog.Ctx(r.Context()).With().Str("request_id", id).Logger()
		next.ServeHTTP(w, r.WithContext(log.WithContext(r.Context())))
	})
}

// accessLog writes one line per request with the route, status, the
// client address chi resolved and, once authenticate accepted its key,
// the tenant and the key: a read makes no audit line, and this line is
// the only record of what a key read.
func accessLog(next http.Handler) http.Handler {
	logged := hlog.AccessHandler(func(r *http.Request, status, size int, d time.Duration) {
		ev := hlog.FromRequest(r).Info()
		if status >= 500 {
			ev = hlog.FromRequest(r).Error()
		}
		if p, _ := r.Context().Value(accessPrincipalKey{}).(*Principal); p != nil && p.Tenant != "" {
			ev = ev.Str("tenant", p.Tenant).Str("key", p.KeyName)
		}
		ev.Str("method", r.Method).Str("path", loggedPath(r.URL.Path)).Int("status", status).Int("size", size).
			Float64("took_ms", float64(d)/float64(time.Millisecond)).Str("client_ip", middleware.GetClientIP(r.Context())).Msg("http request")
	})(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logged.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), accessPrincipalKey{}, new(Principal))))
	})
}

// accessPrincipalKey holds, in a request's context, where authenticate
// writes the principal it accepted for accessLog, which runs outside it.
type accessPrincipalKey struct{}

// loggedPath is the path as the access log writes it. A provider's
// callback carries its credential in the path, after what names it (the
// provider and the transfer id, or "subscriptions" and the key): the
// token stands in for an API key, and would let anyone who reads the logs
// forge callbacks. Whatever follows those names is written as
// "redacted", a trailing slash or a segment more included, and so is a
// callback's path after something before it (a TRANSFERD_PUBLIC_URL with
// a path that the gateway in front does not strip, a doubled slash):
// answered 404, it still carries the provider's token.
func loggedPath(path string) string {
	i := strings.Index(path, "/callbacks/")
	if i < 0 {
		return path
	}
	head, rest := path[:i], path[i+len("/callbacks/"):]
	parts := strings.SplitN(rest, "/", 4)
	keep := 2 // provider, transfer id
	if len(parts) > 1 && parts[1] == "subscriptions" {
		keep = 3 // provider, "subscriptions", key
	}
	if len(parts) <= keep {
		return path
	}
	return head + "/callbacks/" + strings.Join(parts[:keep], "/") + "/redacted"
}

// metricMethod bounds the method label: chi answers a method it does not
// route with 405 before authentication, so a raw label would let any
// client that reaches the port add series without end.
func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// recoverer turns a handler panic into a 500 problem and logs the stack.
func recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				hlog.FromRequest(r).Error().Str("panic", fmt.Sprint(v)).Bytes("stack", debug.Stack()).Msg("handler panic")
				writeProblem(w, r, probInternal)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	f := promauto.With(reg)
	return &httpMetrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "transferd_http_requests_total",
			Help: "HTTP requests served, by method, route pattern and status.",
		}, []string{"method", "route", "code"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "transferd_http_request_duration_seconds",
			Help:    "HTTP request latency by method and route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"method", "route"}),
	}
}

// middleware labels by the route pattern, read after the handler ran, so
// that ids in paths never become label values.
func (m *httpMetrics) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		method := metricMethod(r.Method)
		m.requests.WithLabelValues(method, route, strconv.Itoa(status)).Inc()
		m.duration.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
	})
}

func handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encode(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

func handleReadyz(eng *orchestrator.Engine, draining <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		var err error
		select {
		case <-draining:
			err = &orchestrator.NotReadyError{Reason: "shutting down"}
		default:
			err = eng.Ready(ctx)
		}
		if err != nil {
			// The whole error goes to the log; the probe, which needs no
			// credentials, gets only the reason: the store's error may name
			// another tenant's transfer, a file or a database host.
			hlog.FromRequest(r).Warn().Err(err).Msg("not ready")
			reason := "the store does not answer"
			if nr, ok := errors.AsType[*orchestrator.NotReadyError](err); ok {
				reason = nr.Reason
			}
			p := probUnavailable
			p.Detail = "not ready: " + reason
			writeProblem(w, r, p)
			return
		}
		encode(w, http.StatusOK, map[string]string{"status": "ready"})
	})
}

func handleOpenAPI(spec []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(spec)
	})
}

func handleMetrics(gath prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(gath, promhttp.HandlerOpts{})
}
