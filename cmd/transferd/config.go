package main

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/kelseyhightower/envconfig"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/providers/netsapiens"
)

// secret is a configuration value that must never be printed.
type secret string

// MarshalText masks the value wherever a config is encoded (logs).
func (s secret) MarshalText() ([]byte, error) {
	if s == "" {
		return []byte(""), nil
	}
	return []byte("********"), nil
}

func (s secret) String() string {
	b, _ := s.MarshalText()
	return string(b)
}

// usageTable lists the variables for -h, under run's own header (the
// envconfig default brings a second one).
const usageTable = `KEY	TYPE	DEFAULT	REQUIRED	DESCRIPTION
{{range .}}{{usage_key .}}	{{usage_type .}}	{{usage_default .}}	{{usage_required .}}	{{usage_description .}}
{{end}}`

// config is every setting, read from TRANSFERD_* variables only (loadConfig).
type config struct {
	ListenAddr        string        `envconfig:"TRANSFERD_LISTEN_ADDR" default:":8080" desc:"address the HTTP API listens on"`
	LogLevel          string        `envconfig:"TRANSFERD_LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	ConsultTimeout    time.Duration `envconfig:"TRANSFERD_CONSULT_TIMEOUT" default:"30s" desc:"consult_timeout of requests that do not name one"`
	MaxConsultTimeout time.Duration `envconfig:"TRANSFERD_MAX_CONSULT_TIMEOUT" default:"10m" desc:"largest consult_timeout a request may ask for (at most 24h)"`
	ShutdownTimeout   time.Duration `envconfig:"TRANSFERD_SHUTDOWN_TIMEOUT" default:"30s" desc:"on SIGTERM, time to hand consults in progress over to another replica (or give them back to their agents) and let completing transfers finish; what is left then stays in the store for the next owner, and transferd exits. At least TRANSFERD_STEP_TIMEOUT, at most 1h"`
	ShutdownDelay     time.Duration `envconfig:"TRANSFERD_SHUTDOWN_DELAY" default:"0s" desc:"on SIGTERM, time during which /readyz reports not ready while the API still serves, before the shutdown begins: behind a load balancer (a Kubernetes Service), room for it to stop sending requests here. A second signal ends it. At most 1h"`
	PollInterval      time.Duration `envconfig:"TRANSFERD_POLL_INTERVAL" default:"200ms" desc:"how often a provider view (a NetSapiens domain, a Bandwidth account) is read while some transfer in it waits for something to happen soon (a ringing consult: it bounds the time from the target answering to the join)"`
	PollMaxInterval   time.Duration `envconfig:"TRANSFERD_POLL_MAX_INTERVAL" default:"2s" desc:"how often a provider view is read otherwise (manual consults in conversation, tombstones)"`
	VisibilityWindow  time.Duration `envconfig:"TRANSFERD_VISIBILITY_WINDOW" default:"5s" desc:"how long the provider may take to list a new call or show an accepted action; the call a request names is looked for this long before the transfer is call_not_found, and a consult not seen within it counts as ended (the caller is taken back) and is watched for; on Bandwidth, how long a step waits for a bridge update it sent to show (at least 1s)"`
	TombstoneTTL      time.Duration `envconfig:"TRANSFERD_TOMBSTONE_TTL" default:"2m" desc:"how long a consult that never appeared is watched for after its dial was answered, so that a late one is hung up; longer than TRANSFERD_VISIBILITY_WINDOW"`
	VerifyTimeout     time.Duration `envconfig:"TRANSFERD_VERIFY_TIMEOUT" default:"15s" desc:"how long an accepted join may take to show, and how long the provider may stay unreadable about a join, or a recovery wait to see the caller back, before the outcome is reported unverified with a cleanup obligation"`
	StepTimeout       time.Duration `envconfig:"TRANSFERD_STEP_TIMEOUT" default:"15s" desc:"how long one provider request may take, counted from the start of its step (the save of its intent included; an unhold or a hang-up has it from its save), and how long a step that changes nothing yet (locate, hold) retries a provider it cannot reach, and a join or the agent's hang-up that failed is sent again (from its first failure, whichever process saw it); a step a stopped process left unfinished is taken as sent until this long after it began, so readings wait that long to trust it did not take. Replicas sharing a store should use one value"`
	TrustedProxies    []string      `envconfig:"TRANSFERD_TRUSTED_PROXIES" desc:"comma-separated CIDRs whose X-Forwarded-For is trusted for client addresses; a bare address is its own /32 or /128"`

	NetSapiensBaseURL    string `envconfig:"TRANSFERD_NETSAPIENS_BASE_URL" desc:"NS API v2 root, e.g. https://pbx.example.com/ns-api/v2; enables the netsapiens provider"`
	NetSapiensAPIKey     secret `envconfig:"TRANSFERD_NETSAPIENS_API_KEY" desc:"NS API key sent as a bearer credential (secret)"`
	NetSapiensAutoAnswer bool   `envconfig:"TRANSFERD_NETSAPIENS_AUTO_ANSWER" default:"true" desc:"ask the PBX to auto-answer the agent's side of the consult call"`
	NetSapiensJoinHost   string `envconfig:"TRANSFERD_NETSAPIENS_JOIN_HOSTNAME" default:"caller" desc:"whose core server the join's hostname names first when the caller's and the consult's calls are on different cores: caller or consult; a join refused with 400, or accepted and seen not to take, is sent once more naming the other"`
	NetSapiensListLimit  int    `envconfig:"TRANSFERD_NETSAPIENS_LIST_LIMIT" default:"100" desc:"rows a page of a domain's call listing asks for (limit); a page that comes back with that many is read on from (start), up to 100 pages. A PBX that caps limit lower, or pages by a smaller size of its own, is read on from pages of its size once a locate's check of the domain's count finds it out, when it honours start; one that does not has a transfer's calls read from its agent's own listing (the locate warns)"`

	BandwidthBaseURL          string        `envconfig:"TRANSFERD_BANDWIDTH_BASE_URL" default:"https://api.catapult.inetwork.com/v1" desc:"Catapult v1 API root"`
	BandwidthUserID           string        `envconfig:"TRANSFERD_BANDWIDTH_USER_ID" desc:"Catapult user id (u-…); enables the bandwidth provider"`
	BandwidthAPIToken         secret        `envconfig:"TRANSFERD_BANDWIDTH_API_TOKEN" desc:"Catapult API token, the Basic auth user (secret)"`
	BandwidthAPISecret        secret        `envconfig:"TRANSFERD_BANDWIDTH_API_SECRET" desc:"Catapult API secret, the Basic auth password (secret)"`
	BandwidthMaxRateLimitWait time.Duration `envconfig:"TRANSFERD_BANDWIDTH_MAX_RATE_LIMIT_WAIT" default:"10s" desc:"longest wait for a Catapult rate limit to reset before a step fails"`
	PublicURL                 string        `envconfig:"TRANSFERD_PUBLIC_URL" desc:"transferd's externally reachable base URL (of the callback listener); when set, Bandwidth sends call events to /callbacks/{provider}/{transfer_id}/{token} and every watched NetSapiens domain gets an event subscription posting to /callbacks/netsapiens/subscriptions/{domain}/{token}, which hasten the readings"`
	NetSapiensRequestBudget   float64       `envconfig:"TRANSFERD_NETSAPIENS_REQUEST_BUDGET" default:"0" desc:"requests per second transferd sends the NetSapiens account at most (0: no budget; NetSapiens publishes no limit)"`
	BandwidthRequestBudget    float64       `envconfig:"TRANSFERD_BANDWIDTH_REQUEST_BUDGET" default:"0" desc:"requests per second transferd sends the Bandwidth account at most (0: no budget; Catapult documents 1 call creation per second per account)"`
	RequestBurst              int           `envconfig:"TRANSFERD_REQUEST_BURST" default:"5" desc:"burst of every provider account's request budget"`

	APIKeys         secret  `envconfig:"TRANSFERD_API_KEYS" desc:"comma-separated API keys of the default tenant (write scope), each sha256:<hex> or the key itself (secret); excludes TRANSFERD_TENANTS_FILE"`
	Auth            string  `envconfig:"TRANSFERD_AUTH" desc:"none: run outside demo mode without API keys (warned at every start)"`
	TenantsFile     string  `envconfig:"TRANSFERD_TENANTS_FILE" desc:"YAML file of tenants with their keys, provider accounts, allow-lists and limits; reloaded on SIGHUP or change; excludes TRANSFERD_API_KEYS and the provider variables"`
	CallbackSecret  secret  `envconfig:"TRANSFERD_CALLBACK_SECRET" desc:"at least 32 bytes shared by every replica; signs the tokens of provider callback URLs (secret; required with TRANSFERD_PUBLIC_URL outside demo mode, generated per process in demo mode)"`
	CallbackAccept  secret  `envconfig:"TRANSFERD_CALLBACK_SECRET_ACCEPTED" desc:"another secret of at least 32 bytes whose callback tokens are accepted but never made, while TRANSFERD_CALLBACK_SECRET is rotated: the new secret before replicas sign with it, the old one after, until the transfers it signed are over (secret)"`
	StartRate       float64 `envconfig:"TRANSFERD_TENANT_START_RATE" default:"0" desc:"transfers a tenant may start per second (0: no limit); tenants file limits override it"`
	StartBurst      int     `envconfig:"TRANSFERD_TENANT_START_BURST" default:"10" desc:"burst of TRANSFERD_TENANT_START_RATE, at least 1"`
	MaxInFlight     int     `envconfig:"TRANSFERD_TENANT_MAX_IN_FLIGHT" default:"0" desc:"unfinished transfers a tenant may have (0: no limit)"`
	MaxWaits        int     `envconfig:"TRANSFERD_TENANT_MAX_WAITS" default:"100" desc:"long polls (Prefer: wait), streams and repeats waiting for a request with their Idempotency-Key a tenant may hold at once (0: no limit)"`
	CallbackAddr    string  `envconfig:"TRANSFERD_CALLBACK_ADDR" desc:"separate address for provider callbacks, so that exposing them does not expose the API (default: on TRANSFERD_LISTEN_ADDR)"`
	AdminAddr       string  `envconfig:"TRANSFERD_ADMIN_ADDR" desc:"separate address for /metrics, /healthz, /readyz and /status/providers (default: on TRANSFERD_LISTEN_ADDR)"`
	TLSCertFile     string  `envconfig:"TRANSFERD_TLS_CERT_FILE" desc:"PEM certificate chain; with TRANSFERD_TLS_KEY_FILE every listener serves HTTPS; reloaded when the files change"`
	TLSKeyFile      string  `envconfig:"TRANSFERD_TLS_KEY_FILE" desc:"PEM private key of TRANSFERD_TLS_CERT_FILE"`
	TLSClientCAFile string  `envconfig:"TRANSFERD_TLS_CLIENT_CA_FILE" desc:"PEM CAs; when set, API clients must present a certificate they signed"`

	ReadHeaderTimeout time.Duration `envconfig:"TRANSFERD_READ_HEADER_TIMEOUT" default:"10s" desc:"time to read a request's headers"`
	ReadTimeout       time.Duration `envconfig:"TRANSFERD_READ_TIMEOUT" default:"30s" desc:"time to read a whole request, body included"`
	BodyReadTimeout   time.Duration `envconfig:"TRANSFERD_BODY_READ_TIMEOUT" default:"5s" desc:"time for a request body to arrive once its handler starts reading; a slower one is a 408 and nothing is done"`
	WriteTimeout      time.Duration `envconfig:"TRANSFERD_WRITE_TIMEOUT" default:"30s" desc:"time to write a response, 1s to 2m; a long poll (Prefer: wait), or a repeated Idempotency-Key waiting for the request it repeats, gets its wait on top; an event stream has it for each write"`
	IdleTimeout       time.Duration `envconfig:"TRANSFERD_IDLE_TIMEOUT" default:"120s" desc:"how long an idle keep-alive connection stays open"`
	MaxHeaderBytes    int           `envconfig:"TRANSFERD_MAX_HEADER_BYTES" default:"65536" desc:"largest request header block, in bytes"`

	DataDir     string        `envconfig:"TRANSFERD_DATA_DIR" default:"./data" desc:"directory of the embedded SQLite store (used unless TRANSFERD_DATABASE_URL is set); one transferd per directory, which it locks (transferd.lock)"`
	DatabaseURL secret        `envconfig:"TRANSFERD_DATABASE_URL" desc:"postgres://… URL or libpq key=value string (host=… dbname=…) to share transfers between replicas (secret: may hold a password)"`
	InstanceID  string        `envconfig:"TRANSFERD_INSTANCE_ID" desc:"this replica's name among those sharing a database, one per running process (default: the host name); a replica restarted with the same name resumes its transfers at once, and a running one whose name a newer process took exits"`
	LeaseTTL    time.Duration `envconfig:"TRANSFERD_LEASE_TTL" default:"15s" desc:"a replica renews its heartbeat every quarter of this; a stopped replica's open transfers are claimed by another within this time"`
	Retention   time.Duration `envconfig:"TRANSFERD_RETENTION" default:"168h" desc:"how long terminal transfers, idempotency keys, and delivered and dead webhook deliveries are kept"`

	WebhookURL     webhookURL    `envconfig:"TRANSFERD_WEBHOOK_URL" desc:"the default tenant's webhook receiver (Standard Webhooks); with a tenants file, declare webhooks per tenant there"`
	WebhookSecret  secret        `envconfig:"TRANSFERD_WEBHOOK_SECRET" desc:"whsec_ secret signing the webhooks of TRANSFERD_WEBHOOK_URL; two separated by a comma during a rotation (secret)"`
	WebhookMaxAge  time.Duration `envconfig:"TRANSFERD_WEBHOOK_MAX_AGE" default:"24h" desc:"how long a failing webhook delivery is retried before it becomes a dead letter (operators can redeliver it); at least 1m"`
	WebhookTimeout time.Duration `envconfig:"TRANSFERD_WEBHOOK_TIMEOUT" default:"10s" desc:"how long a webhook attempt waits for the endpoint's answer (1s to 2m); a replica's claim on a delivery lasts 1.5 times this plus 1 s"`
	// The time a change of the tenants file may take to reach every
	// replica: until then a replica with the old file may still send a
	// removed endpoint's deliveries.
	WebhookUnconfiguredGrace time.Duration `envconfig:"TRANSFERD_WEBHOOK_UNCONFIGURED_GRACE" default:"10m" desc:"how long the pending deliveries of an endpoint removed from the configuration are kept, after the replicas that claim them find it missing, before they are given up unsent (1m to 24h); a replica that still has it sends them meanwhile"`

	DemoAddr string `envconfig:"TRANSFERD_DEMO_ADDR" default:"127.0.0.1:8081" desc:"loopback address of the built-in provider simulator in demo mode (no provider configured)"`
}

// loadConfig reads the configuration from the environment. The tags name
// each variable whole and are read without a prefix: given one, envconfig
// falls back to a tag's bare name when the prefixed variable is unset, and
// DATABASE_URL, AUTH or LOG_LEVEL, set for another program, were read as
// transferd's.
func loadConfig() (config, error) {
	var cfg config
	err := envconfig.Process("", &cfg)
	// envconfig's own message names the Go field and type behind the
	// variable and the parser's words ("converting '30' to type
	// time.Duration. details: time: missing unit"): it says what is
	// wanted in the README's terms instead. Only durations, numbers and
	// booleans fail to parse, so echoing the value shows no secret.
	if pe := (*envconfig.ParseError)(nil); errors.As(err, &pe) {
		want := map[string]string{
			"time.Duration": "a duration: write a number and a unit, such as 30s, 500ms or 2m",
			"bool":          "true or false",
			"int":           "a whole number",
			"float64":       "a number",
		}[pe.TypeName]
		if want == "" {
			return cfg, fmt.Errorf("%s: %q: %w", pe.KeyName, pe.Value, pe.Err)
		}
		return cfg, fmt.Errorf("%s: %q is not %s", pe.KeyName, pe.Value, want)
	}
	return cfg, err
}

// maxConsultTimeoutCeiling bounds TRANSFERD_MAX_CONSULT_TIMEOUT.
const maxConsultTimeoutCeiling = 24 * time.Hour

// shutdownCeiling bounds TRANSFERD_SHUTDOWN_TIMEOUT and
// TRANSFERD_SHUTDOWN_DELAY (the README's configuration table says it).
const shutdownCeiling = time.Hour

func (c *config) validate() error {
	var errs []error
	// Only the documented four, in any case: zerolog's parser also takes
	// fatal, panic, disabled and numbers, with which transferd started
	// and wrote no line at all, its errors included.
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("TRANSFERD_LOG_LEVEL: %q is not a level (debug, info, warn, error)", c.LogLevel))
	}
	if strings.TrimSpace(c.ListenAddr) == "" {
		// Set but empty: net.Listen would take any free port.
		errs = append(errs, errors.New("TRANSFERD_LISTEN_ADDR: must name an address, such as :8080"))
	}
	// A day is far past any consult an agent holds, and keeps every
	// deadline and wake counted from a consult's timeout well inside what
	// a time.Duration holds (near its largest, a wake a millisecond later
	// came out negative).
	if c.MaxConsultTimeout > maxConsultTimeoutCeiling {
		errs = append(errs, fmt.Errorf("TRANSFERD_MAX_CONSULT_TIMEOUT: must be at most %s", maxConsultTimeoutCeiling))
	}
	if c.ConsultTimeout < time.Second || c.ConsultTimeout > c.MaxConsultTimeout {
		errs = append(errs, fmt.Errorf("TRANSFERD_CONSULT_TIMEOUT: must be between 1s and TRANSFERD_MAX_CONSULT_TIMEOUT (%s)", c.MaxConsultTimeout))
	}
	// A shutdown gives callers back with an unhold, a provider request
	// that has the step timeout: a shorter shutdown (any positive value
	// was taken, a nanosecond included) cut it, and left the caller held
	// for the next owner, which a lone replica is only once restarted.
	// Past an hour, nothing the shutdown does is still coming (it hands
	// over or gives back, it does not wait for consults to end), and the
	// lock patience of a restart, the delay plus the timeout plus a
	// margin, overflowed near a time.Duration's largest value: negative,
	// a restart overlapping the old process failed at once.
	if least := max(c.StepTimeout, time.Second); c.ShutdownTimeout < least || c.ShutdownTimeout > shutdownCeiling {
		errs = append(errs, fmt.Errorf("TRANSFERD_SHUTDOWN_TIMEOUT: must be between TRANSFERD_STEP_TIMEOUT (%s), the time the provider has to take a caller off hold, and %s", least, shutdownCeiling))
	}
	if c.ShutdownDelay < 0 || c.ShutdownDelay > shutdownCeiling {
		errs = append(errs, fmt.Errorf("TRANSFERD_SHUTDOWN_DELAY: must be between 0s and %s", shutdownCeiling))
	}
	// A tombstone is kept from the moment a consult's window ran out to a
	// TTL after its dial: a TTL no longer than the window kept none.
	if c.VisibilityWindow <= 0 || c.TombstoneTTL <= c.VisibilityWindow || c.VerifyTimeout <= 0 {
		errs = append(errs, errors.New("TRANSFERD_VISIBILITY_WINDOW, TRANSFERD_TOMBSTONE_TTL and TRANSFERD_VERIFY_TIMEOUT: must be positive, the tombstone TTL longer than the visibility window"))
	}
	if c.NetSapiensJoinHost != netsapiens.JoinHostnameCaller && c.NetSapiensJoinHost != netsapiens.JoinHostnameConsult {
		errs = append(errs, fmt.Errorf("TRANSFERD_NETSAPIENS_JOIN_HOSTNAME: %q is neither caller nor consult", c.NetSapiensJoinHost))
	}
	if c.NetSapiensListLimit < 1 {
		errs = append(errs, errors.New("TRANSFERD_NETSAPIENS_LIST_LIMIT: must be at least 1"))
	}
	if c.StepTimeout < time.Second {
		errs = append(errs, errors.New("TRANSFERD_STEP_TIMEOUT: must be at least 1s"))
	}
	if c.PollInterval <= 0 || c.PollMaxInterval < c.PollInterval {
		errs = append(errs, errors.New("TRANSFERD_POLL_INTERVAL and TRANSFERD_POLL_MAX_INTERVAL: must be positive, the maximum at least the first"))
	}
	if c.NetSapiensBaseURL != "" {
		if u, err := url.Parse(c.NetSapiensBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, errors.New("TRANSFERD_NETSAPIENS_BASE_URL: must be an absolute http(s) URL"))
		}
		if c.NetSapiensAPIKey == "" {
			errs = append(errs, errors.New("TRANSFERD_NETSAPIENS_API_KEY: required with TRANSFERD_NETSAPIENS_BASE_URL"))
		}
	} else if c.NetSapiensAPIKey != "" {
		errs = append(errs, errors.New("TRANSFERD_NETSAPIENS_BASE_URL: required with TRANSFERD_NETSAPIENS_API_KEY"))
	}
	if c.BandwidthUserID != "" {
		if u, err := url.Parse(c.BandwidthBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, errors.New("TRANSFERD_BANDWIDTH_BASE_URL: must be an absolute http(s) URL"))
		}
		if c.BandwidthAPIToken == "" || c.BandwidthAPISecret == "" {
			errs = append(errs, errors.New("TRANSFERD_BANDWIDTH_API_TOKEN and TRANSFERD_BANDWIDTH_API_SECRET: required with TRANSFERD_BANDWIDTH_USER_ID"))
		}
	} else if c.BandwidthAPIToken != "" || c.BandwidthAPISecret != "" {
		errs = append(errs, errors.New("TRANSFERD_BANDWIDTH_USER_ID: required with TRANSFERD_BANDWIDTH_API_TOKEN/SECRET"))
	}
	if c.DatabaseURL != "" {
		// Both forms libpq (and pgx) accept: a URL, or key=value pairs.
		// The parser's error is not shown: it may quote the password.
		dsn := string(c.DatabaseURL)
		form := strings.Contains(dsn, "=")
		if u, err := url.Parse(dsn); err == nil && strings.Contains(dsn, "://") {
			form = u.Scheme == "postgres" || u.Scheme == "postgresql"
		}
		if _, err := pgconn.ParseConfig(dsn); err != nil || !form {
			errs = append(errs, errors.New("TRANSFERD_DATABASE_URL: must be a postgres:// URL or libpq key=value pairs (host=… dbname=…)"))
		}
	} else if c.DataDir == "" {
		errs = append(errs, errors.New("TRANSFERD_DATA_DIR: must name a directory when TRANSFERD_DATABASE_URL is not set"))
	}
	if err := c.validateTrustedProxies(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.validateWebhooks()...)
	if c.LeaseTTL < time.Second {
		errs = append(errs, errors.New("TRANSFERD_LEASE_TTL: must be at least 1s"))
	}
	if c.Retention < time.Hour {
		errs = append(errs, errors.New("TRANSFERD_RETENTION: must be at least 1h"))
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
			errs = append(errs, errors.New("TRANSFERD_PUBLIC_URL: must be an absolute http(s) URL without a query"))
		}
		if !c.demo() && c.CallbackSecret == "" {
			errs = append(errs, errors.New("TRANSFERD_CALLBACK_SECRET: required with TRANSFERD_PUBLIC_URL: it signs callback URLs, and every replica must share it"))
		}
	}
	if c.CallbackSecret != "" && len(c.CallbackSecret) < 32 {
		errs = append(errs, errors.New("TRANSFERD_CALLBACK_SECRET: must be at least 32 bytes"))
	}
	switch {
	case c.CallbackAccept == "":
	case c.CallbackSecret == "":
		errs = append(errs, errors.New("TRANSFERD_CALLBACK_SECRET_ACCEPTED: needs TRANSFERD_CALLBACK_SECRET, which signs"))
	case len(c.CallbackAccept) < 32:
		errs = append(errs, errors.New("TRANSFERD_CALLBACK_SECRET_ACCEPTED: must be at least 32 bytes"))
	case c.CallbackAccept == c.CallbackSecret:
		errs = append(errs, errors.New("TRANSFERD_CALLBACK_SECRET_ACCEPTED: is TRANSFERD_CALLBACK_SECRET; give the other secret of the rotation"))
	}
	for name, u := range map[string]string{"TRANSFERD_NETSAPIENS_BASE_URL": c.NetSapiensBaseURL, "TRANSFERD_BANDWIDTH_BASE_URL": c.BandwidthBaseURL} {
		// The URL is not echoed: its credentials would be.
		if pu, err := url.Parse(u); err == nil && pu.User != nil {
			errs = append(errs, fmt.Errorf("%s: must not carry credentials; give them in the API key or token variables", name))
		}
	}
	if c.APIKeys != "" && c.TenantsFile != "" {
		errs = append(errs, errors.New("TRANSFERD_API_KEYS and TRANSFERD_TENANTS_FILE: set one: the tenants file declares every key, with its tenant"))
	}
	if c.TenantsFile != "" && (c.NetSapiensBaseURL != "" || c.BandwidthUserID != "") {
		errs = append(errs, errors.New("TRANSFERD_TENANTS_FILE: provider accounts are declared per tenant in the file; unset TRANSFERD_NETSAPIENS_* and TRANSFERD_BANDWIDTH_USER_ID"))
	}
	if c.APIKeys != "" {
		if _, err := api.ParseKeyList(string(c.APIKeys), orchestrator.DefaultTenant); err != nil {
			errs = append(errs, fmt.Errorf("TRANSFERD_API_KEYS: %w", err))
		}
	}
	switch c.Auth {
	case "", "none":
	default:
		errs = append(errs, fmt.Errorf("TRANSFERD_AUTH: %q is not a setting; none (no API keys outside demo mode) or unset", c.Auth))
	}
	if !c.demo() && c.APIKeys == "" && c.TenantsFile == "" && c.Auth != "none" {
		errs = append(errs, errors.New("TRANSFERD_API_KEYS: outside demo mode transferd needs API keys (or a tenants file); set TRANSFERD_AUTH=none to run an open API behind a gateway that authenticates"))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("TRANSFERD_TLS_CERT_FILE and TRANSFERD_TLS_KEY_FILE: set both or neither"))
	}
	if c.TLSClientCAFile != "" && c.TLSCertFile == "" {
		errs = append(errs, errors.New("TRANSFERD_TLS_CLIENT_CA_FILE: needs TRANSFERD_TLS_CERT_FILE and TRANSFERD_TLS_KEY_FILE"))
	}
	if c.TLSClientCAFile != "" && c.PublicURL != "" && c.CallbackAddr == "" {
		// The API listener would serve the callbacks too, and no provider
		// presents a client certificate: every callback would fail its
		// TLS handshake.
		errs = append(errs, errors.New("TRANSFERD_CALLBACK_ADDR: required with TRANSFERD_TLS_CLIENT_CA_FILE and TRANSFERD_PUBLIC_URL: providers present no client certificate, so their callbacks need a listener of their own"))
	}
	if c.ReadHeaderTimeout <= 0 || c.ReadTimeout <= 0 || c.BodyReadTimeout <= 0 || c.WriteTimeout <= 0 || c.IdleTimeout <= 0 || c.MaxHeaderBytes < 4096 {
		errs = append(errs, errors.New("TRANSFERD_READ_HEADER_TIMEOUT, _READ_TIMEOUT, _BODY_READ_TIMEOUT, _WRITE_TIMEOUT, _IDLE_TIMEOUT: must be positive; TRANSFERD_MAX_HEADER_BYTES at least 4096"))
	}
	if c.WriteTimeout > api.MaxWriteTimeout {
		// Idempotency-Key reservations are settled on the assumption that
		// a request is served within orchestrator.ReservationTimeout.
		errs = append(errs, fmt.Errorf("TRANSFERD_WRITE_TIMEOUT: must be at most %s", api.MaxWriteTimeout))
	} else if c.WriteTimeout > 0 && c.WriteTimeout < time.Second {
		// It runs from the end of the request's headers: shorter than
		// serving takes, it cut the answers of requests carried out (a
		// create saved and driven, its client told nothing).
		errs = append(errs, errors.New("TRANSFERD_WRITE_TIMEOUT: must be at least 1s"))
	}
	var negative []string
	for _, v := range []struct {
		name string
		neg  bool
	}{
		{"TRANSFERD_NETSAPIENS_REQUEST_BUDGET", c.NetSapiensRequestBudget < 0},
		{"TRANSFERD_BANDWIDTH_REQUEST_BUDGET", c.BandwidthRequestBudget < 0},
		{"TRANSFERD_TENANT_START_RATE", c.StartRate < 0},
		{"TRANSFERD_TENANT_MAX_IN_FLIGHT", c.MaxInFlight < 0},
		{"TRANSFERD_TENANT_MAX_WAITS", c.MaxWaits < 0},
	} {
		if v.neg {
			negative = append(negative, v.name)
		}
	}
	if len(negative) > 0 {
		errs = append(errs, fmt.Errorf("%s: request budgets and tenant limits must not be negative", strings.Join(negative, ", ")))
	}
	if c.BandwidthMaxRateLimitWait <= 0 {
		// The adapter would read 0 or less as its 10s default, while the
		// configuration log shows what was set.
		errs = append(errs, errors.New("TRANSFERD_BANDWIDTH_MAX_RATE_LIMIT_WAIT: must be positive"))
	}
	if c.RequestBurst < 1 {
		errs = append(errs, errors.New("TRANSFERD_REQUEST_BURST: must be at least 1"))
	}
	if c.StartBurst < 1 {
		// A bucket of no token would start nothing: the limiter read 0
		// as 1, which is not what was set. Every tenant with a rate of
		// its own and no burst of its own takes this one too.
		errs = append(errs, errors.New("TRANSFERD_TENANT_START_BURST: must be at least 1"))
	}
	return errors.Join(errs...)
}

// validateTrustedProxies checks every item of TRANSFERD_TRUSTED_PROXIES
// and keeps it trimmed, a bare address as its single-address prefix
// (10.0.0.1/32, ::1/128): the router parses them again and cannot refuse
// one but by panicking.
func (c *config) validateTrustedProxies() error {
	var bad []string
	for i, item := range c.TrustedProxies {
		item = strings.TrimSpace(item)
		p, err := netip.ParsePrefix(item)
		if err != nil && !strings.Contains(item, "/") {
			if a, aerr := netip.ParseAddr(item); aerr == nil && a.Zone() == "" {
				p, err = netip.PrefixFrom(a, a.BitLen()), nil
			}
		}
		if err != nil {
			bad = append(bad, strconv.Quote(item))
			continue
		}
		c.TrustedProxies[i] = p.String()
	}
	if len(bad) > 0 {
		return fmt.Errorf("TRANSFERD_TRUSTED_PROXIES: %s: not a CIDR (such as 10.0.0.0/8) or an IP address", strings.Join(bad, ", "))
	}
	return nil
}

// demo reports whether no provider is configured, so that transferd runs
// against its built-in simulator.
func (c *config) demo() bool {
	return c.NetSapiensBaseURL == "" && c.BandwidthUserID == "" && c.TenantsFile == ""
}

// MarshalZerologObject logs every setting under its variable name, with
// durations readable and secrets masked by their String method.
func (c config) MarshalZerologObject(e *zerolog.Event) {
	v := reflect.ValueOf(c)
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if name := f.Tag.Get("envconfig"); name != "" {
			val := fmt.Sprint(v.Field(i).Interface())
			// In demo mode the adapters talk to the built-in simulator,
			// whatever the provider URLs say; logging a real provider's
			// URL would suggest calls go there.
			if c.demo() && (name == "TRANSFERD_BANDWIDTH_BASE_URL" || name == "TRANSFERD_NETSAPIENS_BASE_URL") {
				val = "(demo mode: the built-in simulator)"
			} else if name == "TRANSFERD_BANDWIDTH_BASE_URL" || name == "TRANSFERD_NETSAPIENS_BASE_URL" || name == "TRANSFERD_PUBLIC_URL" && val != "" {
				val = redactURL(val)
			}
			e.Str(name, val)
		}
	}
}

// redactURL hides any user information a URL carries; validate refuses
// such URLs, but the configuration is logged before that verdict is read.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(not a URL)"
	}
	if u.User != nil {
		u.User = url.User("redacted")
	}
	return u.String()
}
