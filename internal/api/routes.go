package api

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/transferd/transferd/internal/orchestrator"
)

// routes is the one place every route is declared; it matches openapi.yaml.
func routes(r chi.Router, cfg Config, eng *orchestrator.Engine, gath prometheus.Gatherer) {
	once := func(h http.Handler) http.Handler { return idempotent(cfg.Idempotency, cfg.Replica, eng, h) }
	r.Method("POST", "/v1/transfers", once(handleCreateTransfer(eng)))
	r.Method("GET", "/v1/transfers", handleListTransfers(eng))
	r.Method("GET", "/v1/transfers/{id}", handleGetTransfer(eng))
	r.Method("POST", "/v1/transfers/{id}/complete", once(handleSignal(eng, eng.Complete)))
	r.Method("POST", "/v1/transfers/{id}/cancel", once(handleSignal(eng, eng.Cancel)))
	r.Method("GET", "/healthz", handleHealthz())
	r.Method("GET", "/readyz", handleReadyz(eng))
	r.Method("GET", "/status/providers", handleProviderStatus(cfg.Credentials))
	r.Method("GET", "/metrics", handleMetrics(gath))
	r.Method("GET", "/openapi.yaml", handleOpenAPI(cfg.OpenAPI))
	r.Method("POST", "/v1/callbacks/{provider}/{transfer_id}", handleCallback(eng, cfg.Callbacks))
	r.Method("GET", "/v1/callbacks/{provider}/{transfer_id}", handleCallback(eng, cfg.Callbacks))
}
