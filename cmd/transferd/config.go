package main

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
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

// config is every setting, read from TRANSFERD_* variables only.
type config struct {
	ListenAddr        string        `envconfig:"LISTEN_ADDR" default:":8080" desc:"address the HTTP API listens on"`
	LogLevel          string        `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	ConsultTimeout    time.Duration `envconfig:"CONSULT_TIMEOUT" default:"30s" desc:"consult_timeout of requests that do not name one"`
	MaxConsultTimeout time.Duration `envconfig:"MAX_CONSULT_TIMEOUT" default:"10m" desc:"largest consult_timeout a request may ask for"`
	ShutdownTimeout   time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"30s" desc:"on SIGTERM, time to give consults in progress back to their agents and let completing transfers finish; what is left then stays in the store for the next owner, and transferd exits"`
	PollInterval      time.Duration `envconfig:"POLL_INTERVAL" default:"250ms" desc:"how often a provider view (a NetSapiens domain, a Bandwidth account) is read while some transfer in it waits for something to happen soon"`
	PollMaxInterval   time.Duration `envconfig:"POLL_MAX_INTERVAL" default:"2s" desc:"how often a provider view is read otherwise (manual consults in conversation, tombstones)"`
	VisibilityWindow  time.Duration `envconfig:"VISIBILITY_WINDOW" default:"5s" desc:"how long the provider may take to list a new call or show an accepted action; a consult not seen within it counts as ended (the caller is taken back) and is watched for"`
	TombstoneTTL      time.Duration `envconfig:"TOMBSTONE_TTL" default:"2m" desc:"how long a consult that never appeared is watched for after its dial, so that a late one is hung up"`
	VerifyTimeout     time.Duration `envconfig:"VERIFY_TIMEOUT" default:"15s" desc:"how long an accepted join may take to show, and how long a recovery waits to see the caller back before it reports an unverified outcome and leaves a cleanup obligation"`
	TrustedProxies    []string      `envconfig:"TRUSTED_PROXIES" desc:"comma-separated CIDRs whose X-Forwarded-For is trusted for client addresses"`

	NetSapiensBaseURL    string `envconfig:"NETSAPIENS_BASE_URL" desc:"NS API v2 root, e.g. https://pbx.example.com/ns-api/v2; enables the netsapiens provider"`
	NetSapiensAPIKey     secret `envconfig:"NETSAPIENS_API_KEY" desc:"NS API key sent as a bearer credential (secret)"`
	NetSapiensAutoAnswer bool   `envconfig:"NETSAPIENS_AUTO_ANSWER" default:"true" desc:"ask the PBX to auto-answer the agent's side of the consult call"`

	BandwidthBaseURL          string        `envconfig:"BANDWIDTH_BASE_URL" default:"https://api.catapult.inetwork.com/v1" desc:"Catapult v1 API root"`
	BandwidthUserID           string        `envconfig:"BANDWIDTH_USER_ID" desc:"Catapult user id (u-…); enables the bandwidth provider"`
	BandwidthAPIToken         secret        `envconfig:"BANDWIDTH_API_TOKEN" desc:"Catapult API token, the Basic auth user (secret)"`
	BandwidthAPISecret        secret        `envconfig:"BANDWIDTH_API_SECRET" desc:"Catapult API secret, the Basic auth password (secret)"`
	BandwidthMaxRateLimitWait time.Duration `envconfig:"BANDWIDTH_MAX_RATE_LIMIT_WAIT" default:"10s" desc:"longest wait for a Catapult rate limit to reset before a step fails"`
	PublicURL                 string        `envconfig:"PUBLIC_URL" desc:"transferd's externally reachable base URL; when set, providers send call events to /v1/callbacks/{provider}/{transfer_id} instead of transferd polling"`

	DataDir     string        `envconfig:"DATA_DIR" default:"./data" desc:"directory of the embedded SQLite store (used unless TRANSFERD_DATABASE_URL is set)"`
	DatabaseURL secret        `envconfig:"DATABASE_URL" desc:"postgres://… URL or libpq key=value string (host=… dbname=…) to share transfers between replicas (secret: may hold a password)"`
	InstanceID  string        `envconfig:"INSTANCE_ID" desc:"this replica's name among those sharing a database (default: the host name); a replica restarted with the same name resumes its transfers at once"`
	LeaseTTL    time.Duration `envconfig:"LEASE_TTL" default:"15s" desc:"a replica renews its heartbeat every quarter of this; a stopped replica's open transfers are claimed by another within this time"`
	Retention   time.Duration `envconfig:"RETENTION" default:"168h" desc:"how long terminal transfers and idempotency keys are kept"`

	DemoAddr string `envconfig:"DEMO_ADDR" default:"127.0.0.1:8081" desc:"loopback address of the built-in provider simulator in demo mode (no provider configured)"`
}

func (c *config) validate() error {
	var errs []error
	if _, err := zerolog.ParseLevel(c.LogLevel); err != nil || c.LogLevel == "" {
		errs = append(errs, fmt.Errorf("TRANSFERD_LOG_LEVEL: %q is not a level (debug, info, warn, error)", c.LogLevel))
	}
	if c.ConsultTimeout < time.Second || c.ConsultTimeout > c.MaxConsultTimeout {
		errs = append(errs, fmt.Errorf("TRANSFERD_CONSULT_TIMEOUT: must be between 1s and TRANSFERD_MAX_CONSULT_TIMEOUT (%s)", c.MaxConsultTimeout))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("TRANSFERD_SHUTDOWN_TIMEOUT: must be positive"))
	}
	if c.VisibilityWindow <= 0 || c.TombstoneTTL < c.VisibilityWindow || c.VerifyTimeout <= 0 {
		errs = append(errs, errors.New("TRANSFERD_VISIBILITY_WINDOW, TRANSFERD_TOMBSTONE_TTL and TRANSFERD_VERIFY_TIMEOUT: must be positive, the tombstone TTL at least the visibility window"))
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
	}
	return errors.Join(errs...)
}

// demo reports whether no provider is configured, so that transferd runs
// against its built-in simulator.
func (c *config) demo() bool {
	return c.NetSapiensBaseURL == "" && c.BandwidthUserID == ""
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
			if c.demo() && (name == "BANDWIDTH_BASE_URL" || name == "NETSAPIENS_BASE_URL") {
				val = "(demo mode: the built-in simulator)"
			}
			e.Str("TRANSFERD_"+name, val)
		}
	}
}
