package api

import (
	"net/http"

	"github.com/go-chi/chi/v5"
)

// routes is the one place every route is declared; it matches openapi.yaml.
// Every /v1 route is authenticated, with scopes by method (read: GET and
// HEAD; write: everything else), so that routes added later inherit it.
func (s *shared) routes(r chi.Router, parts part) {
	cfg, eng := s.cfg, s.eng
	ends := waitEnds{closing: cfg.Closing, stopping: cfg.Stopping}
	if parts&partAPI != 0 {
		once := func(h http.Handler) http.Handler {
			return idempotent(cfg.Idempotency, cfg.Replica, eng, s.limit, cfg.WriteTimeout, ends.begun(), h)
		}
		r.Group(func(r chi.Router) {
			r.Use(authenticate(cfg.Keys, s.auth), textPath)
			r.Method("POST", "/v1/transfers", once(handleCreateTransfer(eng, s.permit, s.limit, cfg.WriteTimeout, ends)))
			r.Method("GET", "/v1/transfers", handleListTransfers(eng))
			r.Method("GET", "/v1/transfers/{id}", handleGetTransfer(eng, s.limit, cfg.WriteTimeout, ends))
			r.Method("POST", "/v1/transfers/{id}/complete", once(handleSignal(eng, "complete", eng.Complete, s.limit, cfg.WriteTimeout, ends)))
			r.Method("POST", "/v1/transfers/{id}/cancel", once(handleSignal(eng, "cancel", eng.Cancel, s.limit, cfg.WriteTimeout, ends)))
			r.Method("GET", "/v1/transfers/{id}/events", handleTransferEvents(eng))
			r.Method("GET", "/v1/events", handleEventStream(eng, s.limit, cfg.EventsSaved, cfg.streamPoll, cfg.WriteTimeout, cfg.Closing))
			r.Method("GET", "/v1/webhook-deliveries", handleListDeliveries(eng, cfg.Deliveries))
			r.Method("POST", "/v1/webhook-deliveries/{id}/redeliver", once(handleRedeliver(cfg.Deliveries)))
		})
		r.Method("GET", "/openapi.yaml", handleOpenAPI(cfg.OpenAPI))
	}
	if parts&partCallbacks != 0 {
		r.Method("POST", "/callbacks/{provider}/{transfer_id}/{token}", handleCallback(eng, s.receiver, s.forward, cfg.CallbackSigner, s.auth, cfg.keepTimeout(), ends))
		r.Method("POST", "/callbacks/{provider}/subscriptions/{key}/{token}", handleSubscriptionDelivery(eng, s))
	}
	if parts&partAdmin != 0 {
		r.Method("GET", "/healthz", handleHealthz())
		r.Method("GET", "/readyz", handleReadyz(eng, cfg.Draining))
		r.Method("GET", "/status/providers", handleProviderStatus(cfg.Credentials))
		r.Method("GET", "/metrics", handleMetrics(s.gath))
	}
}
