// Command transferd performs attended call transfers through telephony
// providers' REST APIs. All configuration comes from TRANSFERD_*
// environment variables; run with -h to list them.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/kelseyhightower/envconfig"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	transferd "github.com/transferd/transferd"
	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/gcfloor"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/pbxsim"
	"github.com/transferd/transferd/internal/providers/apiclient"
	"github.com/transferd/transferd/internal/providers/bandwidth"
	"github.com/transferd/transferd/internal/providers/netsapiens"
	"github.com/transferd/transferd/internal/tenants"
	"github.com/transferd/transferd/internal/wake"
	"github.com/transferd/transferd/internal/webhooks"
)

func main() {
	// Every time transferd shows, logs or stores is UTC, whatever the
	// host's zone. Set here, not with .UTC() where times are taken:
	// that would drop their monotonic readings (see orchestrator.New).
	time.Local = time.UTC
	ctx, stop := stopSignals()
	stopProfile, err := startProfile()
	if err == nil {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stopProfile()
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "transferd:", err)
		os.Exit(1)
	}
}

// credentialsCheckInterval spaces the providers' credential checks: a
// rotated key is noticed within it, and a provider sees four cheap reads
// an hour from each replica.
const credentialsCheckInterval = 15 * time.Minute

// tenantsPoll is how often the tenants file and its secret files are
// checked for changes (Kubernetes updates mounted Secrets in place).
const tenantsPoll = 5 * time.Second

// account is one provider account's settings, from the environment (the
// default tenant) or the tenants file.
type account struct {
	provider, baseURL string
	apiKey            string
	autoAnswer        *bool
	joinHostname      string // NetSapiens; "" for the environment's
	userID, token     string
	secret            string
	budget            float64
	burst             int
}

// tenantAccount is a tenants-file account as build takes it. A budget
// with no request_burst takes TRANSFERD_REQUEST_BURST, as the
// environment's accounts do: it was a burst of 1, which spaced even a
// step's two requests by a whole interval of the budget.
func tenantAccount(a tenants.Account, defaultBurst int) account {
	burst := a.RequestBurst
	if burst == 0 {
		burst = defaultBurst
	}
	return account{provider: a.Provider, baseURL: a.BaseURL, apiKey: a.APIKey, autoAnswer: a.AutoAnswer, joinHostname: a.JoinHostname,
		userID: a.UserID, token: a.APIToken, secret: a.APISecret, budget: a.RequestBudget, burst: burst}
}

// rotateAccount gives an adapter its account's new secrets in place
// (tenants.Options.Rotate): its transfers in flight send them too.
func rotateAccount(p orchestrator.Provider, a tenants.Account) (apply func(), ok bool) {
	switch c := p.(type) {
	case *netsapiens.Client:
		// The file's validation refused an empty secret.
		return func() { _ = c.SetAPIKey(a.APIKey) }, a.APIKey != ""
	case *bandwidth.Client:
		return func() { _ = c.SetCredentials(a.APIToken, a.APISecret) }, a.APIToken != "" && a.APISecret != ""
	}
	return nil, false
}

// handOverAccount has an adapter built anew for an account at the same
// place take over what the one it replaces must not go on doing alone
// (tenants.Options.HandOver): a NetSapiens client's event subscriptions,
// which the old one deleted under the new one's watch.
func handOverAccount(old, successor orchestrator.Provider) func() {
	o, ok1 := old.(*netsapiens.Client)
	n, ok2 := successor.(*netsapiens.Client)
	if !ok1 || !ok2 {
		return nil
	}
	return func() { n.TakeSubscriptions(o) }
}

// pairRefused checks a Bandwidth token and secret read apart (see
// tenants.Options.Refused) with an adapter of their own, which sends
// nothing else: true only when the provider refused them, so that a
// provider that cannot be reached leaves the reload as it was. ctx is
// the reload's, which bounds all its checks together.
func pairRefused(ctx context.Context, cfg bandwidth.Config) bool {
	c, err := bandwidth.New(cfg)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, pairCheckTimeout)
	defer cancel()
	return orchestrator.KindOf(c.CheckCredentials(ctx)) == orchestrator.KindProviderAuth
}

// pairCheckTimeout bounds pairRefused's check.
const pairCheckTimeout = 10 * time.Second

// releaseTimeout bounds the release of a replaced account (the deletion
// of its subscriptions nobody shares).
const releaseTimeout = 30 * time.Second

// callbackSigner signs callback URLs under TRANSFERD_CALLBACK_SECRET and
// accepts those of TRANSFERD_CALLBACK_SECRET_ACCEPTED too; in demo mode
// without a secret, it signs under one made for this process (demo
// transfers do not outlive it).
func callbackSigner(cfg *config, demo bool) (*api.CallbackSigner, error) {
	secret := []byte(cfg.CallbackSecret)
	if len(secret) == 0 {
		if !demo && cfg.PublicURL != "" {
			return nil, errors.New("TRANSFERD_CALLBACK_SECRET: required with TRANSFERD_PUBLIC_URL")
		}
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
	}
	var accepted [][]byte
	if cfg.CallbackAccept != "" {
		accepted = append(accepted, []byte(cfg.CallbackAccept))
	}
	return api.NewCallbackSigner(secret, accepted...)
}

// setMemoryLimit gives the Go runtime a soft memory limit of 90% of the
// container's (cgroup v1 or v2), unless GOMEMLIMIT is set or
// AUTOMEMLIMIT=off. Without one the heap may grow to twice what is live
// before a collection (GOGC=100): 50,000 parked transfers hold about
// 210 MiB live and reached 540 MiB, past a 512 MiB limit, where the kernel
// kills the process and every caller on hold with it. With the limit the
// collector runs more often near it instead. The other 10% is for what
// the Go runtime does not count (SQLite's page cache, thread stacks).
func setMemoryLimit(log zerolog.Logger) { setMemoryLimitFrom(log, memlimit.FromCgroup) }

// setMemoryLimitFrom is setMemoryLimit with the container's limit read
// from limit (tests give their own).
func setMemoryLimitFrom(log zerolog.Logger, limit memlimit.Provider) {
	set, err := memlimit.Set(memlimit.WithProvider(limit))
	switch {
	case err != nil:
		log.Warn().Err(err).Msg("no Go memory limit from the container's cgroup; set GOMEMLIMIT to bound the heap")
	case set < math.MaxInt64:
		log.Info().Int64("go_memory_limit_bytes", set).Msg("Go memory limit")
	}
}

// heapFloor is the smallest heap goal the collector gets (package
// gcfloor): under load transferd keeps a few MiB live and the default
// GOGC ran the collector 15 times a second, for about 9 % of its CPU on
// SQLite and 20 % on PostgreSQL; a floor of 32 MiB cut transferd's CPU per
// transfer by 8–15 % (docs/benchmarks.md, thirteenth pass). 10,000 parked
// transfers keep more than half of it live, so they keep the usual goal.
const heapFloor = 32 << 20

// heapFloorOnce starts the floor once per process (tests run run more
// than once).
var heapFloorOnce sync.Once

// startHeapFloor keeps the heap goal at heapFloor or more, unless the
// operator set GOGC: their setting is then the collector's only one.
func startHeapFloor(log zerolog.Logger) *gcfloor.Floor {
	if v, ok := os.LookupEnv("GOGC"); ok {
		log.Info().Str("gogc", v).Msg("GOGC is set: no heap floor")
		return nil
	}
	log.Info().Int("go_heap_floor_bytes", heapFloor).Msg("Go heap floor")
	return gcfloor.Start(heapFloor)
}

const usageHeader = `transferd performs attended call transfers through telephony providers.

Usage: transferd [-h]

With no provider configured it runs in demo mode against its built-in
simulator. Configuration comes from these environment variables:

`

// The callbacks map holds the Bandwidth clients; forwarding needs both
// halves of the receiver.
var _ api.CallbackReceiver = (*bandwidth.Client)(nil)

// Its callbacks are answered once what they told is saved with their
// transfer.
var _ api.NoteKeeper = (*bandwidth.Client)(nil)

// answerGrace is how long the servers still wait, once the shutdown's
// time is over, for the requests they are running (the answers of waits
// the shutdown ended, above all) before closing their connections: long
// enough to write an answer decided, short enough that a second signal
// still stops the process now.
var answerGrace = time.Second

// serversStopping, when set (tests), is called as the servers' shutdown
// begins, after every wait was told to end.
var serversStopping func()

// run is the whole program: it returns when ctx is cancelled (SIGINT,
// SIGTERM) and every in-flight transfer is finished or compensated.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			fmt.Fprint(stdout, usageHeader)
			return envconfig.Usagef("", &config{}, stdout, usageTable)
		default:
			return fmt.Errorf("unknown argument %q; run with -h for the configuration variables", a)
		}
	}
	cfg, err := loadConfig()
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}

	level, _ := zerolog.ParseLevel(cfg.LogLevel)
	// Millisecond timestamps: steps of a transfer are milliseconds apart.
	// zerolog reads the format from a package variable; every run sets
	// the same value.
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	log := zerolog.New(stderr).Level(level).With().Timestamp().Str("service", "transferd").Logger()
	log.Info().Object("config", cfg).Msg("starting")
	setMemoryLimit(log)
	heapFloorOnce.Do(func() { startHeapFloor(log) })

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pm := apiclient.NewMetrics(reg)
	budgets := apiclient.NewBudgetMetrics(reg)
	accountBudgets := apiclient.NewBudgets(budgets)

	var providers []orchestrator.Provider
	demo := cfg.demo()
	if demo {
		sim, addr, err := startDemo(cfg.DemoAddr, log)
		if err != nil {
			return err
		}
		defer sim.Close()
		log.Warn().Str("simulator", "http://"+addr).
			Msg("DEMO MODE: no provider is configured; calls are SIMULATED by the built-in simulator. " +
				"Place a simulated call with POST http://" + addr + "/sim/netsapiens/calls or /sim/bandwidth/calls")
		cfg.NetSapiensBaseURL = "http://" + addr + pbxsim.NetSapiensAPIPath
		cfg.NetSapiensAPIKey = pbxsim.DemoNetSapiensKey
		cfg.BandwidthBaseURL = "http://" + addr + pbxsim.BandwidthAPIPath
		cfg.BandwidthUserID = pbxsim.DemoBandwidthUser
		cfg.BandwidthAPIToken, cfg.BandwidthAPISecret = pbxsim.DemoBandwidthTok, pbxsim.DemoBandwidthSec
	}
	signer, err := callbackSigner(&cfg, demo)
	if err != nil {
		return err
	}
	registerConfigInfo(reg, &cfg, signer)
	// build makes one provider account's adapter with its own request
	// budget and, for Bandwidth, callback URLs signed for its tenant.
	build := func(tenant string, a account) (orchestrator.Provider, error) {
		// An account built anew by a reload spends the bucket of the
		// adapter it replaces, which drives the transfers in flight.
		b, err := accountBudgets.For(tenant+"/"+a.provider, a.provider, a.budget, a.burst)
		if err != nil {
			return nil, err
		}
		var httpc *http.Client
		if b != nil {
			// The budget wraps the adapters' own pooled client.
			httpc = b.Client(apiclient.Transport{}.WithDefaults().HTTPClient)
		}
		if !demo && strings.HasPrefix(a.baseURL, "http://") {
			log.Warn().Str("tenant", tenant).Str("provider", a.provider).Msg("the provider URL is plain http: its credentials cross the network in clear")
		}
		switch a.provider {
		case netsapiens.Name:
			join := a.joinHostname
			if join == "" {
				join = cfg.NetSapiensJoinHost
			}
			nc := netsapiens.Config{BaseURL: a.baseURL, APIKey: a.apiKey, AutoAnswer: a.autoAnswer, JoinHostname: join,
				Metrics: pm, HTTPClient: httpc, Log: log.With().Str("tenant", tenant).Logger(),
				VisibilityWindow: cfg.VisibilityWindow, StepTimeout: cfg.StepTimeout, ListLimit: cfg.NetSapiensListLimit}
			if cfg.PublicURL != "" {
				// An event subscription per watched domain, posting to the
				// callback route under a token bound to tenant and domain.
				eventURL := func(domain, token string) string {
					return strings.TrimRight(cfg.PublicURL, "/") + netsapiens.SubscriptionPath + url.PathEscape(domain) + "/" + token
				}
				nc.EventURL = func(domain string) string {
					return eventURL(domain, signer.Token(api.TokenSubscription, tenant, domain))
				}
				// A subscription a process made before a rotation of the
				// callback secret (its token of a secret only accepted
				// now) is adopted and moved to the new post-url.
				nc.AcceptedEventURLs = func(domain string) []string {
					var urls []string
					for _, token := range signer.AcceptedTokens(api.TokenSubscription, tenant, domain) {
						urls = append(urls, eventURL(domain, token))
					}
					return urls
				}
			}
			return netsapiens.New(nc)
		default:
			return bandwidth.New(bandwidth.Config{BaseURL: a.baseURL, UserID: a.userID, APIToken: a.token, APISecret: a.secret,
				MaxRateLimitWait: cfg.BandwidthMaxRateLimitWait, PublicURL: cfg.PublicURL, Metrics: pm, HTTPClient: httpc,
				VisibilityWindow: cfg.VisibilityWindow, StepTimeout: cfg.StepTimeout,
				CallbackToken:          func(id string) string { return signer.Token(api.TokenTransfer, tenant, id) },
				AcceptedCallbackTokens: func(id string) []string { return signer.AcceptedTokens(api.TokenTransfer, tenant, id) }})
		}
	}
	callbacks := map[string]api.CallbackReceiver{}
	subscriptions := map[string]api.SubscriptionReceiver{}
	// unsubscribe: the default accounts whose event subscriptions are
	// deleted at shutdown (a tenant's expire by themselves, or are adopted
	// by the next process).
	var unsubscribe []*netsapiens.Client
	// The environment's accounts are the default tenant's.
	var envAccounts []api.CredentialAccount
	if cfg.NetSapiensBaseURL != "" {
		ns, err := build(orchestrator.DefaultTenant, account{provider: netsapiens.Name, baseURL: cfg.NetSapiensBaseURL,
			apiKey: string(cfg.NetSapiensAPIKey), autoAnswer: &cfg.NetSapiensAutoAnswer,
			budget: cfg.NetSapiensRequestBudget, burst: cfg.RequestBurst})
		if err != nil {
			return err
		}
		providers = append(providers, ns)
		envAccounts = append(envAccounts, api.CredentialAccount{Provider: netsapiens.Name,
			Account: api.AccountLabel(orchestrator.DefaultTenant, netsapiens.Name), Checker: ns.(api.CredentialChecker)})
		subscriptions[netsapiens.Name] = ns.(api.SubscriptionReceiver)
		unsubscribe = append(unsubscribe, ns.(*netsapiens.Client))
	}
	if cfg.BandwidthUserID != "" {
		bw, err := build(orchestrator.DefaultTenant, account{provider: bandwidth.Name, baseURL: cfg.BandwidthBaseURL,
			userID: cfg.BandwidthUserID, token: string(cfg.BandwidthAPIToken), secret: string(cfg.BandwidthAPISecret),
			budget: cfg.BandwidthRequestBudget, burst: cfg.RequestBurst})
		if err != nil {
			return err
		}
		providers = append(providers, bw)
		envAccounts = append(envAccounts, api.CredentialAccount{Provider: bandwidth.Name,
			Account: api.AccountLabel(orchestrator.DefaultTenant, bandwidth.Name), Checker: bw.(api.CredentialChecker)})
		callbacks[bandwidth.Name] = bw.(api.CallbackReceiver)
	}
	limits := api.Limits{StartRate: cfg.StartRate, StartBurst: cfg.StartBurst, MaxInFlight: cfg.MaxInFlight, MaxWaits: cfg.MaxWaits}
	var (
		keys     api.Authenticator
		registry *tenants.Registry
		// creds and eng are set before registry.Run starts, the only
		// caller of OnReload.
		creds *api.CredentialMonitor
		eng   *orchestrator.Engine
	)
	switch {
	case cfg.TenantsFile != "":
		registry, err = tenants.Open(tenants.Options{Path: cfg.TenantsFile, LookupEnv: os.LookupEnv, Defaults: limits, Log: log, Reg: reg,
			// An account a reload adds is checked now, not at the next
			// round (the monitor only runs outside demo mode; a poke it
			// never reads is dropped).
			OnReload: func(err error) {
				if err == nil {
					creds.CheckNew()
					eng.AccountsChanged()
				}
			},
			Build: func(a tenants.Account) (orchestrator.Provider, error) {
				return build(a.Tenant, tenantAccount(a, cfg.RequestBurst))
			},
			Rotate: rotateAccount, HandOver: handOverAccount,
			Refused: func(ctx context.Context, a tenants.Account) bool {
				return pairRefused(ctx, bandwidth.Config{BaseURL: a.BaseURL, UserID: a.UserID, APIToken: a.APIToken, APISecret: a.APISecret,
					Metrics: pm, StepTimeout: cfg.StepTimeout})
			},
			// An account a reload replaced is released once no transfer
			// here is driven with it any more (checked at every poll of
			// the file): a NetSapiens client's subscription keepers ran
			// on, and its subscriptions were deleted by nobody.
			InUse: func(p orchestrator.Provider) bool { return eng.DrivesWith(p) },
			Release: func(p orchestrator.Provider) {
				if c, ok := p.(*netsapiens.Client); ok {
					ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
					defer cancel()
					if err := c.Close(ctx); err != nil {
						log.Warn().Err(err).Msg("a replaced account's event subscriptions are left to expire")
					}
				}
			}})
		if err != nil {
			return err
		}
		keys = registry
		log.Info().Strs("tenants", registry.Tenants()).Msg("API keys and provider accounts from the tenants file")
		if cfg.AdminAddr == "" {
			// The operations routes take no key, so on the API listener
			// any tenant's client (or anyone who reaches it) learns of
			// every tenant. Warned, not refused: a deployment that keeps
			// them from clients in front of transferd starts as before.
			log.Warn().Strs("routes", []string{"/status/providers", "/metrics"}).
				Msg("the operations routes are served without a key on the API listener: /status/providers lists every tenant's provider accounts and their credential status, /metrics names them too; set TRANSFERD_ADMIN_ADDR to serve them on a listener of their own")
		}
	case cfg.APIKeys != "":
		ks, err := api.ParseKeyList(string(cfg.APIKeys), orchestrator.DefaultTenant)
		if err != nil {
			return fmt.Errorf("TRANSFERD_API_KEYS: %w", err)
		}
		keys = ks
		log.Info().Int("keys", ks.Len()).Msg("API keys required (TRANSFERD_API_KEYS)")
	case demo:
		log.Warn().Msg("THE API IS OPEN: demo mode without TRANSFERD_API_KEYS; anyone who reaches it can move the simulated calls")
	default:
		log.Warn().Msg("THE API IS OPEN: TRANSFERD_AUTH=none; anyone who reaches it can move calls. Put an authenticating gateway in front, or set TRANSFERD_API_KEYS")
	}

	clock, err := testClock(os.Getenv("TRANSFERD_TEST_CLOCK_SKEW"), log)
	if err != nil {
		return err
	}
	store, closeStore, err := openStore(ctx, &cfg, clock, log)
	if err != nil {
		return err
	}
	defer closeStore()
	// The replicas of one database tell time by its server's clock
	// (postgres.Store.Now): every time the engine and the webhook
	// dispatcher store, and judge a stored one by, is then the same for
	// all of them, whatever their hosts' clocks say.
	if c, ok := store.(serverClock); ok {
		clock = c.Now
	}
	instance := cfg.InstanceID
	if instance == "" {
		if instance, err = os.Hostname(); err != nil || instance == "" {
			instance = "transferd"
		}
	}
	var accounts orchestrator.Accounts
	var tenantPolicy api.Tenants
	if registry != nil {
		accounts, tenantPolicy = registry, registry
	}
	var hookDir webhooks.Directory
	if registry != nil {
		hookDir = registry
	}
	hooks, runHooks, err := newWebhooks(&cfg, store, hookDir, instance, clock, log, reg)
	if err != nil {
		return err
	}
	// Each save that writes events wakes this replica's open event
	// streams of its tenant, and has the dispatcher read the outbox at
	// once (within its EnqueueGap), rather than at their next poll and its
	// next scan.
	streams := new(wake.Tenants)
	eventsSaved := streams.Notify
	var nudge func()
	if runHooks {
		nudge = hooks.Nudge
		eventsSaved = func(tenant string) {
			hooks.Nudge()
			streams.Notify(tenant)
		}
	}
	// Other replicas' saves wake them too, where the store tells of them.
	eventsHeard := hearOtherReplicas(store, streams, nudge, log)
	eng, err = orchestrator.New(orchestrator.Config{
		ConsultTimeout: cfg.ConsultTimeout, MaxConsultTimeout: cfg.MaxConsultTimeout,
		PollInterval: cfg.PollInterval, PollMaxInterval: cfg.PollMaxInterval,
		VisibilityWindow: cfg.VisibilityWindow, TombstoneTTL: cfg.TombstoneTTL, VerifyTimeout: cfg.VerifyTimeout,
		StepTimeout: cfg.StepTimeout, Owner: instance, LeaseTTL: cfg.LeaseTTL, Retention: cfg.Retention, Accounts: accounts,
		CrashPoint: crashPoint(os.Getenv("TRANSFERD_TEST_CRASH_AT"), log), Clock: clock, EventsSaved: eventsSaved,
		NotesSaved: notesSaved(store, cfg.PublicURL),
	}, store, providers, log, reg)
	if err != nil {
		return err
	}
	hearNotesSaved(store, eng)
	// Every configured account is checked: the environment's and, asked
	// again after each reload, the tenants file's. A file tenant named
	// default with its own account at a provider is the account its
	// requests use, so it takes the label over.
	creds = api.NewCredentialMonitor(func() []api.CredentialAccount {
		if registry == nil {
			return envAccounts
		}
		fromFile := registry.CredentialAccounts()
		out := slices.Clone(fromFile)
		for _, a := range envAccounts {
			if !slices.ContainsFunc(fromFile, func(f api.CredentialAccount) bool { return f.Account == a.Account }) {
				out = append(out, a)
			}
		}
		return out
	}, credentialsCheckInterval, 10*time.Second, log, reg)
	// Closed as the servers shut down: open event streams end then.
	closing := make(chan struct{})
	// Closed when the shutdown delay begins: /readyz fails from then on.
	draining := make(chan struct{})
	// Closed as the engine's shutdown begins: long polls on other
	// replicas' transfers answer then.
	stopping := make(chan struct{})
	handlers := api.NewHandlers(api.Config{OpenAPI: transferd.OpenAPI, TrustedProxies: cfg.TrustedProxies, Callbacks: callbacks, Subscriptions: subscriptions,
		Idempotency: store, Replica: instance, Credentials: creds, Keys: keys, Tenants: tenantPolicy, Limits: limits,
		Accounts: accounts, CallbackSigner: signer, WriteTimeout: cfg.WriteTimeout, BodyReadTimeout: cfg.BodyReadTimeout, Deliveries: hooks,
		EventsSaved: streams, EventStreamPoll: eventStreamPoll(store), EventsHeard: eventsHeard, Forwarder: callbackForwarder(store),
		Closing: closing, Stopping: stopping, Draining: draining},
		eng, log, reg, reg, api.Split{Callbacks: cfg.CallbackAddr != "", Admin: cfg.AdminAddr != ""})
	apiTLS, otherTLS, err := tlsConfigs(&cfg, log)
	if err != nil {
		return err
	}
	type listener struct {
		name string
		ln   net.Listener
		srv  *http.Server
	}
	var listeners []listener
	closeAll := func() {
		for _, l := range listeners {
			_ = l.ln.Close()
		}
	}
	for _, l := range []struct {
		name, setting, addr string
		h                   http.Handler
		tls                 *tls.Config
	}{
		{"api", "TRANSFERD_LISTEN_ADDR", cfg.ListenAddr, handlers.API, apiTLS},
		{"callbacks", "TRANSFERD_CALLBACK_ADDR", cfg.CallbackAddr, handlers.Callbacks, otherTLS},
		{"admin", "TRANSFERD_ADMIN_ADDR", cfg.AdminAddr, handlers.Admin, otherTLS},
	} {
		if l.h == nil {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			closeAll()
			// Named by its variable: a port already taken (a second
			// transferd, another service on :8080) is moved there.
			return fmt.Errorf("%s: listen on %s (%s): %w", l.setting, l.addr, l.name, err)
		}
		listeners = append(listeners, listener{l.name, ln, newHTTPServer(&cfg, l.h, l.tls, log, l.name)})
	}
	// Transfers a previous process left unfinished are resumed (or
	// compensated) before new ones are taken; from here on the engine runs
	// transfers, so every way out goes through its shutdown.
	if err := eng.Open(ctx); err != nil {
		closeAll()
		return fmt.Errorf("resuming unfinished transfers: %w", err)
	}
	// Webhooks go out while the engine runs, and whatever its shutdown
	// saves is drained before the process exits.
	stopHooks := func(context.Context) {}
	if runHooks {
		stopHooks = runWebhooks(hooks, log)
	}
	serveErr := make(chan error, len(listeners))
	for _, l := range listeners {
		log.Info().Str("listener", l.name).Str("addr", l.ln.Addr().String()).Bool("tls", l.srv.TLSConfig != nil).
			Strs("providers", eng.Providers()).Msg("listening")
		go func() {
			if l.srv.TLSConfig != nil {
				serveErr <- l.srv.ServeTLS(l.ln, "", "")
			} else {
				serveErr <- l.srv.Serve(l.ln)
			}
		}()
	}
	if registry != nil {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		regCtx, stopReg := context.WithCancel(ctx)
		regDone := make(chan struct{})
		go func() { registry.Run(regCtx, hup, tenantsPoll); close(regDone) }()
		defer func() { signal.Stop(hup); stopReg(); <-regDone }()
	}
	// Credential checks are for operators only (a metric and
	// /status/providers), never readiness.
	// In demo mode the credentials are the simulator's own: there is
	// nothing to learn, and the simulator's request log stays the
	// transfers' alone.
	if demo {
		creds.NotChecked("demo mode: the simulator's built-in credentials are not checked")
	} else {
		credCtx, stopCreds := context.WithCancel(ctx)
		credsDone := make(chan struct{})
		go func() { creds.Run(credCtx); close(credsDone) }()
		defer func() { stopCreds(); <-credsDone }()
	}

	var runErr error
	select {
	case err := <-serveErr:
		runErr = fmt.Errorf("serve: %w", err)
	case <-eng.Superseded():
		// Not drained: the process that took the name over serves the
		// name's transfers, and this one can send nothing for them.
		runErr = fmt.Errorf("another transferd process started with TRANSFERD_INSTANCE_ID=%q and took this one's transfers over: "+
			"give each replica a name of its own (two containers with one host name, a cloned VM, a fixed id in a Deployment's manifest?)", instance)
	case <-ctx.Done():
		drain(forced(ctx), cfg.ShutdownDelay, draining, log)
	}
	log.Info().Dur("timeout_ms", cfg.ShutdownTimeout).Msg("shutting down: finishing, handing over or compensating in-flight transfers")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	// A second signal ends the shutdown as its timeout would: provider
	// calls are cancelled, and what is open stays in the store for the
	// next owner.
	stopForce := context.AfterFunc(forced(ctx), func() {
		log.Warn().Msg("second signal: stopping now; what is not finished stays in the store for the next owner")
		cancel()
	})
	// Transfers first, while the HTTP server still answers status reads;
	// then the server. Long polls on transfers the engine's shutdown does
	// not change answer now: the servers may have no time left after it.
	close(stopping)
	engErr := eng.Shutdown(sctx)
	stopHooks(sctx)
	for _, c := range unsubscribe {
		if err := c.Close(sctx); err != nil {
			log.Warn().Err(err).Msg("event subscriptions left to expire")
		}
	}
	pending := len(listeners)
	if runErr != nil {
		pending-- // the listener that failed has returned
	}
	// Event streams end now, once the engine's shutdown has saved its
	// events: Shutdown waits for every request, and a stream's client
	// never leaves by itself.
	close(closing)
	if serversStopping != nil {
		serversStopping()
	}
	// Every wait has ended (closing) and the answers of those woken are
	// decided: they are let out within answerGrace should the shutdown's
	// time be over (a second signal, or an engine that took it all). The
	// servers' Shutdown on an ended context closed every connection at
	// once: a create that waited was cut before its 202, its client left
	// not knowing whether its transfer was made.
	var grace context.Context
	for _, l := range listeners {
		if err := l.srv.Shutdown(sctx); err == nil {
			continue
		}
		if grace == nil {
			log.Warn().Dur("grace_ms", answerGrace).Msg("the shutdown's time is over: requests still running have a last moment to answer, then are cut")
			var cancelGrace context.CancelFunc
			grace, cancelGrace = context.WithTimeout(context.WithoutCancel(ctx), answerGrace)
			defer cancelGrace()
		}
		if err := l.srv.Shutdown(grace); err != nil {
			_ = l.srv.Close()
		}
	}
	for range pending {
		if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) && runErr == nil {
			runErr = fmt.Errorf("serve: %w", err)
		}
	}
	var forceErr error
	if !stopForce() {
		forceErr = errors.New("a second signal cut the shutdown short")
	}
	if err := errors.Join(runErr, engErr, forceErr); err != nil {
		return err
	}
	log.Info().Msg("stopped")
	return nil
}

// drain runs the shutdown delay (TRANSFERD_SHUTDOWN_DELAY): /readyz
// reports not ready while every listener serves as before, so that a load
// balancer stops sending requests here before they are refused. Behind a
// Kubernetes Service the pod's endpoint is removed only after the kubelet
// has sent SIGTERM, and kube-proxy and ingress controllers follow seconds
// later: closing at once refused what they still sent. A second signal
// (force) ends the delay.
func drain(force context.Context, delay time.Duration, draining chan<- struct{}, log zerolog.Logger) {
	if delay <= 0 {
		return
	}
	close(draining)
	log.Info().Dur("delay_ms", delay).Msg("draining: /readyz reports not ready while the API serves on, before the shutdown")
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-force.Done():
	}
}
