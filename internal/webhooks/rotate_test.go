package webhooks_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// rotating is a Directory whose endpoint's secrets can change, as a
// reloaded tenants file changes them.
type rotating struct {
	mu sync.Mutex
	ep webhooks.Endpoint
}

func (r *rotating) Tenants() []string { return []string{"acme"} }

func (r *rotating) Endpoints(tenant string) []webhooks.Endpoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	if tenant != "acme" {
		return nil
	}
	return []webhooks.Endpoint{r.ep}
}

func (r *rotating) set(secrets ...string) {
	r.mu.Lock()
	r.ep.Secrets = secrets
	r.mu.Unlock()
}

// An endpoint's secrets rotated in the tenants file sign the next
// attempt: the dispatcher keeps an endpoint's parsed secrets while they
// stay the same, and parses them again once they change. Kept whatever
// they became (a mutation no test caught), every webhook after a
// rotation was signed with the secret withdrawn, which a receiver that
// took the new one, and dropped the old after a leak, refuses.
func TestARotatedSecretSignsTheNextAttempt(t *testing.T) {
	type signed struct {
		h    http.Header
		body []byte
	}
	got := make(chan signed, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- signed{r.Header.Clone(), body}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	s := memory.New()
	dir := &rotating{ep: webhooks.Endpoint{ID: "crm", URL: srv.URL, Secrets: []string{secretOld}}}
	d := webhooks.New(webhooks.Config{}, memory.NewDeliveries(s), dir, render, zerolog.Nop(), prometheus.NewRegistry())
	ctx := context.Background()

	seed(t, s, "acme", 0, 1, 1)
	if err := d.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if a := <-got; !verify(secretOld, a.h, a.body) {
		t.Fatalf("the first webhook is not signed with the secret in force: %q", a.h.Get("webhook-signature"))
	}
	dir.set(secretNew)
	seed(t, s, "acme", 1, 1, 1)
	if err := d.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !verify(secretNew, b.h, b.body) || verify(secretOld, b.h, b.body) {
		t.Errorf("the webhook after the rotation is signed %q: want the new secret's signature alone (new %t, old %t)",
			b.h.Get("webhook-signature"), verify(secretNew, b.h, b.body), verify(secretOld, b.h, b.body))
	}
}
