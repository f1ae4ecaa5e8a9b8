package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/webhooks"
)

// webhookURL is TRANSFERD_WEBHOOK_URL. It prints as its scheme and host
// only, with the length of what follows: a receiver's URL often carries a
// token, in the query or in the path (Slack's and Discord's webhook URLs
// are a token).
type webhookURL string

func (u webhookURL) String() string {
	if u == "" {
		return ""
	}
	p, err := url.Parse(string(u))
	if err != nil || p.Scheme == "" || p.Host == "" {
		return "(not an absolute URL)"
	}
	out := p.Scheme + "://" + p.Host
	// What follows the host (user information is left out altogether).
	rest := (&url.URL{Path: p.Path, RawPath: p.RawPath, RawQuery: p.RawQuery, ForceQuery: p.ForceQuery,
		Fragment: p.Fragment, RawFragment: p.RawFragment}).String()
	if rest != "" && rest != "/" {
		out += fmt.Sprintf(" (path and query hidden: %d characters)", len(rest))
	}
	return out
}

// webhookSecrets splits TRANSFERD_WEBHOOK_SECRET: one whsec_ secret, or
// two separated by a comma while a receiver rotates.
func (c *config) webhookSecrets() []string {
	var out []string
	for _, s := range strings.Split(string(c.WebhookSecret), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// validateWebhooks checks the webhook settings; no error quotes a secret
// or the URL.
func (c *config) validateWebhooks() []error {
	var errs []error
	// 0 is refused too: the dispatcher would read it as its 24h default,
	// while the configuration log shows 0s.
	if c.WebhookMaxAge < time.Minute {
		errs = append(errs, errors.New("TRANSFERD_WEBHOOK_MAX_AGE: must be at least 1m"))
	}
	if c.WebhookTimeout < time.Second || c.WebhookTimeout > 2*time.Minute {
		errs = append(errs, errors.New("TRANSFERD_WEBHOOK_TIMEOUT: must be from 1s to 2m"))
	}
	// 0 would be the dispatcher's 10m default. Under a minute, a reload
	// still on its way to a replica that has the endpoint is not waited
	// for; over a day, the default TRANSFERD_WEBHOOK_MAX_AGE ends the
	// delivery first anyway.
	if c.WebhookUnconfiguredGrace < time.Minute || c.WebhookUnconfiguredGrace > 24*time.Hour {
		errs = append(errs, errors.New("TRANSFERD_WEBHOOK_UNCONFIGURED_GRACE: must be from 1m to 24h"))
	}
	if c.WebhookURL == "" {
		if c.WebhookSecret != "" {
			errs = append(errs, errors.New("TRANSFERD_WEBHOOK_URL: required with TRANSFERD_WEBHOOK_SECRET"))
		}
		return errs
	}
	if c.TenantsFile != "" {
		errs = append(errs, errors.New("TRANSFERD_WEBHOOK_URL: with TRANSFERD_TENANTS_FILE, declare webhooks per tenant in the file (webhooks: [...])"))
	}
	if u, err := url.Parse(string(c.WebhookURL)); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, errors.New("TRANSFERD_WEBHOOK_URL: must be an absolute http(s) URL"))
	} else if u.User != nil {
		errs = append(errs, errors.New("TRANSFERD_WEBHOOK_URL: must not carry credentials"))
	}
	secrets := c.webhookSecrets()
	if len(secrets) == 0 || len(secrets) > 2 {
		errs = append(errs, errors.New("TRANSFERD_WEBHOOK_SECRET: required with TRANSFERD_WEBHOOK_URL: one whsec_ secret, or two separated by a comma during a rotation"))
	}
	for i, s := range secrets {
		if err := webhooks.ValidSecret(s); err != nil {
			errs = append(errs, fmt.Errorf("TRANSFERD_WEBHOOK_SECRET: secret %d: %w", i+1, err))
		}
	}
	return errs
}

// newWebhooks makes the webhook dispatcher: the default tenant's endpoint
// from TRANSFERD_WEBHOOK_URL, or each tenant's from the tenants file
// (dir). Its metrics exist whether or not any endpoint is configured, so
// that dashboards and alerts find them. run reports whether it needs to
// run at all (no endpoint can appear without a tenants file).
func newWebhooks(cfg *config, store orchestrator.Store, dir webhooks.Directory, owner string, clock func() time.Time, log zerolog.Logger, reg prometheus.Registerer) (*webhooks.Dispatcher, bool, error) {
	ws, ok := store.(webhooks.Store)
	if !ok {
		return nil, false, fmt.Errorf("webhooks: the %T store keeps no deliveries", store)
	}
	run := dir != nil
	if dir == nil {
		static := webhooks.Static{}
		if cfg.WebhookURL != "" {
			static[orchestrator.DefaultTenant] = []webhooks.Endpoint{{ID: "default", URL: string(cfg.WebhookURL), Secrets: cfg.webhookSecrets()}}
			run = true
			log.Info().Stringer("url", cfg.WebhookURL).Int("secrets", len(cfg.webhookSecrets())).Msg("webhooks to TRANSFERD_WEBHOOK_URL")
		}
		dir = static
	}
	d := webhooks.New(cfg.webhookConfig(owner, clock), ws, dir, api.EventPayload,
		log.With().Str("component", "webhooks").Logger(), reg)
	return d, run, nil
}

// webhookConfig is the dispatcher's configuration: this replica's name in
// its delivery leases, the clock it stores and judges them by, and the
// operator's settings.
func (c *config) webhookConfig(owner string, clock func() time.Time) webhooks.Config {
	return webhooks.Config{Owner: owner, MaxAge: c.WebhookMaxAge, Timeout: c.WebhookTimeout,
		UnconfiguredGrace: c.WebhookUnconfiguredGrace, Clock: clock}
}

// runWebhooks delivers until stop is called; stop then waits for the
// attempts in flight and drains what is due, bounded by ctx (the shutdown
// timeout): events the engine's shutdown just saved go out before the
// process exits, and what is left stays in the store for any replica.
func runWebhooks(d *webhooks.Dispatcher, log zerolog.Logger) (stop func(ctx context.Context)) {
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(rctx); close(done) }()
	return func(ctx context.Context) {
		cancel()
		select {
		case <-done:
		case <-ctx.Done():
			// An attempt still in flight (an endpoint that does not
			// answer) keeps its lease: the delivery is sent again by
			// whichever replica claims it once the lease has passed.
			log.Warn().Msg("webhooks: the shutdown timeout passed with attempts in flight; they are retried after their lease")
			return
		}
		if err := d.Drain(ctx); err != nil && ctx.Err() == nil {
			log.Error().Err(err).Msg("webhooks: drain at shutdown")
		}
	}
}
