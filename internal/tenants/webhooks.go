package tenants

import (
	"net/url"
	"slices"
	"strings"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/webhooks"
)

// webhookSpec is one entry of a tenant's webhooks: list. Secrets are by
// reference like every other secret; a referenced value may hold two
// secrets separated by a comma (a rotation in progress).
type webhookSpec struct {
	Name    string      `yaml:"name"`
	URL     string      `yaml:"url"`
	Secrets []secretRef `yaml:"secrets"`
	Types   []string    `yaml:"types"`
}

var _ webhooks.Directory = (*Registry)(nil)

// Endpoints implements webhooks.Directory: the tenant's webhooks as the
// configuration in force says (a reload that rotates a secret or adds an
// endpoint takes effect at the dispatcher's next attempt).
func (r *Registry) Endpoints(tenant string) []webhooks.Endpoint {
	if t := r.tenant(tenant); t != nil {
		return slices.Clone(t.cfg.webhooks)
	}
	return nil
}

// parseWebhooks validates tenant i's webhooks; errors name the line and
// never quote a secret or the URL (which may carry a token).
func parseWebhooks(specs []webhookSpec, i int, at func(...any) int, errs *errorList, secret func(secretRef, string) string) []webhooks.Endpoint {
	var out []webhooks.Endpoint
	names := map[string]bool{}
	for j, w := range specs {
		path := []any{"tenants", i, "webhooks", j}
		line := at(path...)
		if !api.NameRE.MatchString(w.Name) {
			errs.add(line, "webhook name %q: lower-case letters, digits, '-' or '_', at most 63", w.Name)
		} else if names[w.Name] {
			errs.add(line, "webhook %s is declared twice", w.Name)
		}
		names[w.Name] = true
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs.add(at(append(path, "url")...), "webhook url must be an absolute http(s) URL")
		} else if u.User != nil {
			errs.add(at(append(path, "url")...), "webhook url must not carry credentials")
		}
		ep := webhooks.Endpoint{ID: w.Name, URL: w.URL}
		if len(w.Secrets) == 0 {
			errs.add(line, "webhook %s has no secret (secrets: [{env: NAME}] or [{file: /path}])", w.Name)
		}
		reported := len(*errs)
		for _, ref := range w.Secrets {
			for _, s := range strings.Split(secret(ref, "webhook secret"), ",") {
				s = strings.TrimSpace(s)
				if s == "" {
					continue
				}
				if err := webhooks.ValidSecret(s); err != nil {
					errs.add(ref.line, "webhook secret: %v", err)
					continue
				}
				ep.Secrets = append(ep.Secrets, s)
			}
		}
		if len(w.Secrets) > 0 && len(ep.Secrets) == 0 && len(*errs) == reported {
			// References that named only separators (a value of ","): an
			// endpoint with no secret could sign nothing, and every
			// delivery to it would fail until it became a dead letter.
			errs.add(line, "webhook %s has no usable secret: its references hold no secret between their commas", w.Name)
		}
		for k, typ := range w.Types {
			if !slices.Contains(orchestrator.EventTypes, orchestrator.EventType(typ)) {
				errs.add(at(append(path, "types", k)...), "event type %q is not one of %v", typ, orchestrator.EventTypes)
				continue
			}
			ep.Types = append(ep.Types, orchestrator.EventType(typ))
		}
		out = append(out, ep)
	}
	return out
}
