package api

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/transferd/transferd/internal/orchestrator"
)

// SubscriptionReceiver is a provider account with event subscriptions per
// view (NetSapiens: per domain), posting to
// /callbacks/{provider}/subscriptions/{key}/{token}. ReceiveSubscription
// checks a delivery's shape (KindInvalid naming the field, "(body)" for the
// whole body, when it is not one: a validation-error lists its fields);
// the server then makes the account's watcher of the view read it. A
// delivery never changes a transfer by itself.
type SubscriptionReceiver interface {
	orchestrator.Provider
	ReceiveSubscription(r *http.Request, key string) error
}

// maxDeliveryBody bounds a delivery: one tick's changes of a busy domain
// are an object of about a kilobyte per session.
const maxDeliveryBody = 4 << 20

// handleSubscriptionDelivery receives one post of a provider's event
// subscription for the view key. The token authenticates it: an HMAC of
// the tenant and key under the callback secret (TokenSubscription). Any
// failure of the token is a 404, as for callbacks.
func handleSubscriptionDelivery(eng *orchestrator.Engine, s *shared) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := chi.URLParam(r, "key")
		var tenant string
		ok := s.cfg.CallbackSigner != nil
		if ok {
			tenant, ok = s.cfg.CallbackSigner.Verify(TokenSubscription, chi.URLParam(r, "token"), key)
		}
		if !ok {
			s.auth.refused.WithLabelValues(refusedCallback).Inc()
			p := probNotFound
			p.Detail = "no callback is expected here"
			writeProblem(w, r, p)
			return
		}
		rcv, ok := s.subscriptionReceiver(tenant, chi.URLParam(r, "provider"))
		if !ok {
			p := probNotFound
			p.Detail = "no configured provider receives subscription events here"
			writeProblem(w, r, p)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxDeliveryBody)
		if err := rcv.ReceiveSubscription(r, key); err != nil {
			writeError(w, r, err)
			return
		}
		eng.PokeView(rcv, key)
		w.WriteHeader(http.StatusNoContent)
	})
}

// subscriptionReceiver is the account whose subscriptions tenant's token
// names: the tenant's own, else the default one (as the engine chooses).
func (s *shared) subscriptionReceiver(tenant, provider string) (SubscriptionReceiver, bool) {
	if a := s.cfg.Accounts; a != nil {
		if p, ok := a.Provider(tenant, provider); ok {
			rcv, ok := p.(SubscriptionReceiver)
			return rcv, ok
		}
		if len(a.Names(tenant)) > 0 {
			return nil, false
		}
	}
	if tenant != orchestrator.DefaultTenant {
		return nil, false
	}
	rcv, ok := s.cfg.Subscriptions[provider]
	return rcv, ok
}
