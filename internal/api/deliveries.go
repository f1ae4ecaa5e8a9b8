package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog/hlog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/webhooks"
)

// Deliveries lets operators see and redeliver webhook deliveries; the
// webhook dispatcher implements it. Both methods are scoped to the
// tenant they are given.
type Deliveries interface {
	Deliveries(ctx context.Context, f webhooks.DeliveryFilter) ([]webhooks.Delivery, bool, error)
	Redeliver(ctx context.Context, tenant, id string) (webhooks.Delivery, error)
}

// deliveryJSON is a webhook delivery as operators see it.
type deliveryJSON struct {
	ID          string                 `json:"id"`
	Endpoint    string                 `json:"endpoint"`
	EventID     string                 `json:"event_id"`
	TransferID  string                 `json:"transfer_id"`
	Seq         int64                  `json:"seq"`
	Type        orchestrator.EventType `json:"type"`
	Status      webhooks.Status        `json:"status"`
	Attempts    int                    `json:"attempts"`
	NextAttempt *time.Time             `json:"next_attempt,omitempty"`
	Deadline    time.Time              `json:"deadline"`
	LastCode    int                    `json:"last_code,omitempty"`
	LastError   string                 `json:"last_error,omitempty"`
	CreatedAt   time.Time              `json:"created_at"`
	UpdatedAt   time.Time              `json:"updated_at"`
}

func toDeliveryJSON(d webhooks.Delivery) deliveryJSON {
	j := deliveryJSON{ID: d.ID, Endpoint: d.Endpoint, EventID: d.EventID, TransferID: d.TransferID, Seq: d.Seq,
		Type: d.Type, Status: d.Status, Attempts: d.Attempts, Deadline: d.Deadline, LastCode: d.LastCode,
		LastError: d.LastError, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
	if d.Status == webhooks.StatusPending {
		n := d.NextAttempt
		j.NextAttempt = &n
	}
	return j
}

// deliveryStatuses are the values of ?status=; failing is a pending
// delivery whose last attempt failed.
var deliveryStatuses = []string{"pending", "failing", "delivered", "dead"}

// A deliveries list's cursor is "dlc_", the outbox position of the page's
// last delivery sealed as an id of the tenant's event stream (eventIDs),
// "." and that delivery's id: the list goes on from where the delivery
// stood even once it is purged, where a cursor of its id alone named
// nothing any more (a 400, and the client had to start over), and the
// position, sealed, tells nothing of other tenants' events. A bare
// delivery id, the cursor of the releases before, is still taken.
const deliveryCursorPrefix = "dlc_"

// deliveryCursor is the cursor that lists on after d.
func deliveryCursor(ids eventIDs, d webhooks.Delivery) string {
	return deliveryCursorPrefix + ids.id(d.Pos) + "." + d.ID
}

// parseDeliveryCursor reads a cursor into f's After and AfterPos; false
// for one this API did not make for the tenant (a sealed position of
// another tenant's among them).
func parseDeliveryCursor(ids eventIDs, c string, f *webhooks.DeliveryFilter) bool {
	if strings.HasPrefix(c, "dlv_") {
		f.After = c // a cursor of the releases before: looked up
		return true
	}
	rest, ok := strings.CutPrefix(c, deliveryCursorPrefix)
	if !ok {
		return false
	}
	sealed, id, ok := strings.Cut(rest, ".")
	if !ok || len(sealed) != idLen || digits(sealed) || !strings.HasPrefix(id, "dlv_") || len(id) > 64 {
		return false
	}
	pos, ok := ids.pos(sealed)
	if !ok {
		return false
	}
	f.After, f.AfterPos = id, pos
	return true
}

// handleListDeliveries serves GET /v1/webhook-deliveries, newest first.
// Without ?status= it lists the failed ones: failing and dead.
func handleListDeliveries(eng *orchestrator.Engine, dl Deliveries) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if dl == nil {
			writeProblem(w, r, noWebhooks())
			return
		}
		key, err := eng.EventIDKey(r.Context())
		if err != nil {
			writeReadError(w, r, err)
			return
		}
		ids := newEventIDs(key, orchestrator.TenantOf(r.Context()))
		bad := map[string]string{}
		q := query(r, bad)
		f := webhooks.DeliveryFilter{Tenant: orchestrator.TenantOf(r.Context()), TransferID: q.Get("transfer_id"), Limit: 50}
		statuses := q["status"]
		if len(statuses) == 0 {
			statuses = []string{"failing,dead"}
		}
		for _, v := range statuses {
			for _, s := range strings.Split(v, ",") {
				switch s = strings.TrimSpace(s); s {
				case "failing":
					f.Failing = true
				case "pending", "delivered", "dead":
					f.Statuses = append(f.Statuses, webhooks.Status(s))
				default:
					bad["status"] = fmt.Sprintf("unknown status %q; one of %v", s, deliveryStatuses)
				}
			}
		}
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 200 {
				bad["limit"] = "must be an integer from 1 to 200"
			}
			f.Limit = n
		}
		if f.TransferID != "" && !orchestrator.ValidID(f.TransferID) {
			// A typo must not read as "no failed deliveries".
			bad["transfer_id"] = "is not a transfer id"
		}
		if c := q.Get("cursor"); c != "" && !parseDeliveryCursor(ids, c, &f) {
			bad["cursor"] = "is not a cursor returned by this API to this tenant"
		}
		listParams(q, bad, "status", "transfer_id", "limit", "cursor")
		if len(bad) > 0 {
			writeProblem(w, r, fieldProblem(probValidation, bad))
			return
		}
		ds, more, err := dl.Deliveries(r.Context(), f)
		if errors.Is(err, webhooks.ErrUnknownCursor) {
			// Another tenant's delivery is answered as one that does
			// not exist: the cursor tells nothing of other tenants.
			writeProblem(w, r, fieldProblem(probValidation, map[string]string{
				"cursor": "is not a cursor returned by this API to this tenant, or its delivery is no longer kept"}))
			return
		}
		if err != nil {
			writeReadError(w, r, err)
			return
		}
		out := struct {
			Items      []deliveryJSON `json:"items"`
			NextCursor string         `json:"next_cursor,omitempty"`
		}{Items: make([]deliveryJSON, 0, len(ds))}
		for _, d := range ds {
			out.Items = append(out.Items, toDeliveryJSON(d))
		}
		if more && len(ds) > 0 {
			out.NextCursor = deliveryCursor(ids, ds[len(ds)-1])
		}
		encode(w, http.StatusOK, out)
	})
}

// handleRedeliver serves POST /v1/webhook-deliveries/{id}/redeliver: the
// delivery is sent again (same webhook-id and body) with a fresh maximum
// age, whatever its status. It takes its input as the transfer actions do:
// none (see noInput), with an Idempotency-Key (routes).
func handleRedeliver(dl Deliveries) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !noInput(w, r) {
			return
		}
		if dl == nil {
			writeProblem(w, r, noWebhooks())
			return
		}
		d, err := dl.Redeliver(r.Context(), orchestrator.TenantOf(r.Context()), chi.URLParam(r, "id"))
		if orchestrator.KindOf(err) == orchestrator.KindNotFound {
			p := probNotFound
			p.Detail = "no webhook delivery with this id"
			writeProblem(w, r, p)
			return
		}
		if errors.Is(err, webhooks.ErrEndpointNotConfigured) {
			// It could not be sent: a redelivery accepted would only be
			// given up again, a 202 for nothing.
			p := probNoEndpoint
			p.Detail = "the delivery's endpoint is not in the tenant's configuration: it cannot be sent"
			writeProblem(w, r, p)
			return
		}
		if err != nil {
			writeRedeliverError(w, r, err)
			return
		}
		encode(w, http.StatusAccepted, toDeliveryJSON(d))
	})
}

// writeRedeliverError answers a redelivery the store failed for no kind
// (its connections ended: a database restarting or failing over) with a
// 503 telling the client to retry, as the reads and the transfer actions
// are answered: it was a 500, "a bug" to a client and a load balancer.
// Whether the store made the redelivery is not known, and need not be: one
// made twice only sends the delivery once more, which a receiver of
// at-least-once deliveries takes. A record not decodable (a bug) stays a
// 500.
func writeRedeliverError(w http.ResponseWriter, r *http.Request, err error) {
	if orchestrator.KindOf(err) != orchestrator.KindInternal || errors.Is(err, orchestrator.ErrUndecodable) || r.Context().Err() != nil {
		writeError(w, r, err)
		return
	}
	hlog.FromRequest(r).Error().Err(err).Msg("the store failed to record a redelivery")
	p := probUnavailable
	p.Detail = "the store failed to record the redelivery, which may or may not have been made: retry (a redelivery made twice sends the delivery once more)"
	w.Header().Set("Retry-After", "1")
	writeProblem(w, r, p)
}

func noWebhooks() Problem {
	p := probNotFound
	p.Detail = "webhooks are not configured"
	return p
}
