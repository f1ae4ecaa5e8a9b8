// Command transferd performs attended call transfers through telephony
// providers' REST APIs. All configuration comes from TRANSFERD_*
// environment variables; run with -h to list them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	transferd "github.com/transferd/transferd"
	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/pbxsim"
	"github.com/transferd/transferd/internal/providers/apiclient"
	"github.com/transferd/transferd/internal/providers/bandwidth"
	"github.com/transferd/transferd/internal/providers/netsapiens"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
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

const usageHeader = `transferd performs attended call transfers through telephony providers.

Usage: transferd [-h]

With no provider configured it runs in demo mode against its built-in
simulator. Configuration comes from these environment variables:

`

// run is the whole program: it returns when ctx is cancelled (SIGINT,
// SIGTERM) and every in-flight transfer is finished or compensated.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			fmt.Fprint(stdout, usageHeader)
			return envconfig.Usagef("TRANSFERD", &config{}, stdout, usageTable)
		default:
			return fmt.Errorf("unknown argument %q; run with -h for the configuration variables", a)
		}
	}
	var cfg config
	if err := envconfig.Process("TRANSFERD", &cfg); err != nil {
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

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pm := apiclient.NewMetrics(reg)

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
	callbacks := map[string]api.CallbackReceiver{}
	var checkers []api.CredentialChecker
	if cfg.NetSapiensBaseURL != "" {
		ns, err := netsapiens.New(netsapiens.Config{
			BaseURL: cfg.NetSapiensBaseURL, APIKey: string(cfg.NetSapiensAPIKey),
			AutoAnswer: &cfg.NetSapiensAutoAnswer, Metrics: pm,
		})
		if err != nil {
			return err
		}
		providers = append(providers, ns)
		checkers = append(checkers, ns)
	}
	if cfg.BandwidthUserID != "" {
		bw, err := bandwidth.New(bandwidth.Config{
			BaseURL: cfg.BandwidthBaseURL, UserID: cfg.BandwidthUserID,
			APIToken: string(cfg.BandwidthAPIToken), APISecret: string(cfg.BandwidthAPISecret),
			MaxRateLimitWait: cfg.BandwidthMaxRateLimitWait, PublicURL: cfg.PublicURL, Metrics: pm,
		})
		if err != nil {
			return err
		}
		providers = append(providers, bw)
		checkers = append(checkers, bw)
		callbacks[bandwidth.Name] = bw
	}

	store, closeStore, err := openStore(ctx, &cfg, log)
	if err != nil {
		return err
	}
	defer closeStore()
	instance := cfg.InstanceID
	if instance == "" {
		if instance, err = os.Hostname(); err != nil || instance == "" {
			instance = "transferd"
		}
	}
	eng, err := orchestrator.New(orchestrator.Config{
		ConsultTimeout: cfg.ConsultTimeout, MaxConsultTimeout: cfg.MaxConsultTimeout,
		PollInterval: cfg.PollInterval, PollMaxInterval: cfg.PollMaxInterval,
		VisibilityWindow: cfg.VisibilityWindow, TombstoneTTL: cfg.TombstoneTTL, VerifyTimeout: cfg.VerifyTimeout,
		Owner: instance, LeaseTTL: cfg.LeaseTTL, Retention: cfg.Retention,
		CrashPoint: crashPoint(os.Getenv("TRANSFERD_TEST_CRASH_AT"), log),
	}, store, providers, log, reg)
	if err != nil {
		return err
	}
	creds := api.NewCredentialMonitor(checkers, credentialsCheckInterval, 10*time.Second, log, reg)
	handler := api.NewServer(api.Config{OpenAPI: transferd.OpenAPI, TrustedProxies: cfg.TrustedProxies, Callbacks: callbacks,
		Idempotency: store, Replica: instance, Credentials: creds},
		eng, log, reg, reg)
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: stdlog.New(log.With().Str("component", "http").Logger(), "", 0)}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.ListenAddr, err)
	}
	// Transfers a previous process left unfinished are resumed (or
	// compensated) before new ones are taken; from here on the engine runs
	// transfers, so every way out goes through its shutdown.
	if err := eng.Open(ctx); err != nil {
		_ = ln.Close()
		return fmt.Errorf("resuming unfinished transfers: %w", err)
	}
	log.Info().Str("addr", ln.Addr().String()).Strs("providers", eng.Providers()).Msg("listening")

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	// Credential checks are for operators only (a metric and
	// /status/providers), never readiness.
	// In demo mode the credentials are the simulator's own: there is
	// nothing to learn, and the simulator's request log stays the
	// transfers' alone.
	if !demo {
		credCtx, stopCreds := context.WithCancel(ctx)
		credsDone := make(chan struct{})
		go func() { creds.Run(credCtx); close(credsDone) }()
		defer func() { stopCreds(); <-credsDone }()
	}

	var runErr error
	select {
	case err := <-serveErr:
		runErr = fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info().Dur("timeout", cfg.ShutdownTimeout).Msg("shutting down: finishing or compensating in-flight transfers")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	// Transfers first, while the HTTP server still answers status reads;
	// then the server.
	engErr := eng.Shutdown(sctx)
	if runErr == nil {
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
		if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("serve: %w", err)
		}
	}
	if err := errors.Join(runErr, engErr); err != nil {
		return err
	}
	log.Info().Msg("stopped")
	return nil
}
