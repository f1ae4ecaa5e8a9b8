// Package webhooks delivers the outbox's events to each tenant's
// endpoints per the Standard Webhooks specification
// (https://www.standardwebhooks.com): a POST signed with HMAC-SHA256 over
// "id.timestamp.body", the event id as webhook-id on every attempt.
//
// Any replica may deliver. The Dispatcher copies each endpoint's share of
// the outbox into deliveries (moving the endpoint's cursor in the same
// write, so that two replicas never copy an event twice), then claims due
// deliveries with a lease, as the engine claims transfers: a replica that
// dies mid-attempt leaves a lease that expires, and another replica sends
// the same delivery again (at least once). Each attempt's result is
// stored with the claim that refills its slot. Only the first undelivered
// delivery of each transfer and endpoint can be claimed, so a receiver
// sees a transfer's events in sequence order; a delivery still failing
// after MaxAge becomes a dead letter and stops holding back the later
// ones (the receiver sees the gap in seq). Delivery runs on its own
// goroutines and store rows: it never slows a transfer.
package webhooks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// Endpoint is one receiver of a tenant's events.
type Endpoint struct {
	// ID names the endpoint within its tenant ("default" for the one of
	// TRANSFERD_WEBHOOK_URL). Its deliveries and cursor are keyed by it:
	// renaming an endpoint starts it from the beginning of the outbox.
	ID  string
	URL string
	// Secrets are whsec_ secrets; every one signs each attempt (the
	// webhook-signature header lists a signature per secret), so that a
	// receiver can rotate: add the new secret, move the receiver, drop
	// the old one.
	Secrets []string
	// Types, when not empty, selects the event types sent; the others
	// move the cursor and are not delivered.
	Types []orchestrator.EventType
}

// wants reports whether e sends events of type t.
func (e Endpoint) wants(t orchestrator.EventType) bool {
	if len(e.Types) == 0 {
		return true
	}
	for _, x := range e.Types {
		if x == t {
			return true
		}
	}
	return false
}

// Directory tells the dispatcher whose events go where. The tenants file
// implements it; Static serves a deployment without one. Answers may
// change over time (a reloaded file).
type Directory interface {
	// Tenants lists the tenants that have endpoints.
	Tenants() []string
	// Endpoints returns a tenant's endpoints.
	Endpoints(tenant string) []Endpoint
}

// Static is a fixed Directory.
type Static map[string][]Endpoint

// Tenants implements Directory.
func (s Static) Tenants() []string {
	out := make([]string, 0, len(s))
	for t := range s {
		out = append(out, t)
	}
	return out
}

// Endpoints implements Directory.
func (s Static) Endpoints(tenant string) []Endpoint { return s[tenant] }

// Status is where a delivery is in its life.
type Status string

const (
	// StatusPending: not delivered yet; it is tried at NextAttempt.
	StatusPending Status = "pending"
	// StatusDelivered: the endpoint answered 2xx.
	StatusDelivered Status = "delivered"
	// StatusDead: it kept failing until its Deadline; a dead letter no
	// longer holds back the transfer's later events. Redeliver revives
	// it.
	StatusDead Status = "dead"
)

// Delivery is one event on its way to one endpoint.
type Delivery struct {
	// ID is DeliveryID(EndpointKey(Tenant, Endpoint), EventID).
	ID       string
	Tenant   string
	Endpoint string // Endpoint.ID
	// EventID is the webhook-id of every attempt.
	EventID    string
	TransferID string
	Seq        int64
	Pos        int64
	Type       orchestrator.EventType
	// Payload is the body of every attempt, rendered when the delivery
	// was made, so that each retry sends the same bytes. The stores keep
	// it apart from the rest, written once: a claim returns it, their
	// other reads may leave it out. Left out of the stored record.
	Payload []byte `json:",omitempty"`
	Status  Status
	// Attempts counts claims (an attempt cut short by a crash counts). It
	// is also the claim's fencing token: FinishDelivery applies only while the
	// stored Attempts equals the claimed one. It never goes back, so that
	// a claim's token is never reused.
	Attempts int
	// Redelivered is Attempts when the delivery was last redelivered (0
	// if never). The back-off counts the attempts since, so that a
	// redelivered dead letter that fails again is retried soon; and a
	// claim made before a redelivery carries a lower value than the
	// stored one, which tells FinishDelivery that the redelivery came
	// while the attempt was in flight.
	Redelivered int
	// Resend is set by a redelivery and cleared by the result of the
	// next attempt made: while it is set, the delivery is sent even to an
	// endpoint that answered 410 Gone (an operator asked for it). Apart
	// from Redelivered, which cannot tell a redelivery before any attempt
	// (Attempts 0) from none: such a delivery, waiting behind its
	// transfer's head, was given up unsent once it was the head. An
	// attempt whose claim ran out before it was written (sendgate) leaves
	// it set. Left out of the stored record when false, so that a record
	// reads as it did before; a replica of an older version ignores it
	// and writes its records without it.
	Resend bool `json:",omitempty"`
	// Unconfigured is when the replicas that claimed it began to find its
	// endpoint configured at none of them (a tenants file or setting that
	// dropped it), zero once an attempt, a redelivery or an enqueue of a
	// replica that has the endpoint comes after; such a replica sends it
	// whatever the mark says. A delivery whose mark is
	// Config.UnconfiguredGrace old is given up unsent. Left out of the
	// stored record when zero, as Resend is.
	Unconfigured time.Time `json:",omitzero"`
	NextAttempt  time.Time
	// Owner and LeaseUntil are the replica attempting it now, if any.
	Owner      string
	LeaseUntil time.Time
	// Deadline is when a still failing delivery becomes dead: MaxAge
	// after it was made, or after a redelivery.
	Deadline  time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
	// LastCode is the HTTP status of the last attempt (0: none, or no
	// response) and LastError what went wrong with it.
	LastCode  int
	LastError string
}

// ApplyResult is what FinishDelivery stores: stored, the delivery as it is
// in the store, with the result of the attempt d, if stored is still
// pending with d's Attempts (the claim's fencing token); false if the
// claim was lost. A redelivery made since d was claimed (stored's
// Redelivered is not d's) wins over the result: the delivery stays
// pending, due when the redelivery made it due, and still to be resent
// (Resend). A claim in flight has Attempts of at least 1, so a
// redelivery during it always moves Redelivered. Every store applies a
// result so.
func ApplyResult(stored, d Delivery) (Delivery, bool) {
	if stored.Status != StatusPending || stored.Attempts != d.Attempts {
		return Delivery{}, false
	}
	if stored.Redelivered == d.Redelivered {
		stored.Status, stored.NextAttempt, stored.Resend, stored.Unconfigured = d.Status, d.NextAttempt, d.Resend, d.Unconfigured
	}
	stored.UpdatedAt, stored.LastCode, stored.LastError = d.UpdatedAt, d.LastCode, d.LastError
	stored.Owner, stored.LeaseUntil = "", time.Time{}
	return stored, true
}

// DeliveryFilter selects deliveries for Store.Deliveries.
type DeliveryFilter struct {
	Tenant string
	// Statuses selects by status; empty selects all. Failing selects
	// pending deliveries whose last attempt failed.
	Statuses   []Status
	Failing    bool
	TransferID string
	// After is an exclusive cursor: the ID of the last delivery of the
	// previous page, one of the tenant's. Deliveries are listed newest
	// (highest Pos) first.
	After string
	// AfterPos, when not zero, is the Pos of After's delivery, and the
	// cursor is the pair (AfterPos, After) itself: the delivery is not
	// looked up, so one purged since the previous page was read lists on
	// from where it stood, and no cursor is ErrUnknownCursor.
	AfterPos int64
	Limit    int
}

// ErrUnknownCursor is returned by Store.Deliveries when the filter's After
// (without AfterPos) names no delivery of its tenant: another tenant's is not told apart
// from one that does not exist (or no longer does), so that a cursor is
// no oracle of another tenant's deliveries, and neither lists anything.
var ErrUnknownCursor = errors.New("webhooks: the cursor names no delivery of the tenant")

// ErrEndpointNotConfigured is the error (kind KindConflict) of a
// redelivery to an endpoint the replica that serves it does not have
// configured: it could not be sent.
var ErrEndpointNotConfigured = errors.New("webhooks: the delivery's endpoint is no longer configured")

// ErrCursorMoved is returned by Store.EnqueueDeliveries when the cursor
// is no longer where the caller read it: another replica enqueued first.
var ErrCursorMoved = errors.New("webhooks: endpoint cursor moved")

// Store keeps deliveries and each endpoint's cursor over the outbox.
// Implementations must be safe for concurrent use by several replicas.
type Store interface {
	orchestrator.EventStore
	// DeliveryCursor returns the outbox position (Event.Pos) of the last event
	// enqueued for the endpoint key, 0 if none.
	DeliveryCursor(ctx context.Context, endpoint string) (int64, error)
	// EnqueueDeliveries inserts ds and moves the endpoint's cursor from `from` to
	// `to`, in one transaction, or fails with ErrCursorMoved when the
	// cursor is not at `from`.
	EnqueueDeliveries(ctx context.Context, endpoint string, from, to int64, ds []Delivery) error
	// ClaimDeliveries leases, for owner until now+lease, up to limit pending
	// deliveries due at now whose lease (if any) expired, and that are the
	// first pending delivery of their endpoint and transfer (lowest Seq).
	// Attempts is incremented. Earliest claimable first (ReadyAt: the
	// later of NextAttempt and the expiry of the last lease), then lowest
	// Pos. Deliveries to the endpoint keys in skip are left alone (the
	// dispatcher's share of attempts for an endpoint is taken). What a
	// claim reads must not grow with the deliveries it cannot take: those
	// waiting behind another of their transfer, in back-off, or to a
	// skipped endpoint (PickDue). The deliveries claimed carry their
	// Payload; those the other methods return may not (its body is
	// written once, and read to be sent).
	ClaimDeliveries(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]Delivery, error)
	// FinishDelivery stores the result of an attempt (Status, NextAttempt,
	// Resend, LastCode, LastError, UpdatedAt of d), releases the lease and
	// returns the delivery as stored, if the stored delivery is still
	// pending with d's Attempts; otherwise it does nothing and reports
	// false (the claim was lost). A redelivery made since d was claimed
	// (the stored Redelivered is not d's) wins over the attempt's
	// result: LastCode, LastError and UpdatedAt are recorded, and the
	// delivery stays pending, due when the redelivery made it due, Resend
	// set (ApplyResult).
	FinishDelivery(ctx context.Context, d Delivery) (Delivery, bool, error)
	// SettleDeliveries stores the results of attempts, each as
	// FinishDelivery does, in order, and then, if limit is above 0,
	// claims as ClaimDeliveries does, all in one transaction: nothing is
	// stored if it fails. It returns the verdict on each result, in
	// order, and the deliveries claimed. Run writes so: the attempts that
	// ended since its last scan and the claim that refills their slots
	// are one write of the store's, not one each, and the claim sees the
	// heads their results made (a transfer's next delivery goes at once).
	SettleDeliveries(ctx context.Context, results []Delivery, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]Finished, []Delivery, error)
	// Deliveries lists a tenant's deliveries, newest first, and whether
	// more follow; ErrUnknownCursor (kind KindInvalid) when f.After names
	// no delivery of f.Tenant.
	Deliveries(ctx context.Context, f DeliveryFilter) ([]Delivery, bool, error)
	// Redeliver makes a tenant's delivery pending again, due at now, with
	// a new deadline, sets Redelivered to Attempts, sets Resend and clears
	// Unconfigured; KindNotFound if the tenant has no such delivery. When
	// allow is not nil it is given the delivery as stored first, and an
	// error of it is returned as it is, nothing written (the dispatcher
	// refuses a redelivery to an endpoint it does not have). A delivery in
	// flight keeps its claim (FinishDelivery then keeps it pending).
	Redeliver(ctx context.Context, tenant, id string, now time.Time, deadline time.Time, allow func(Delivery) error) (Delivery, error)
	// DeliveryBacklog counts pending deliveries and returns the creation time of
	// the oldest (zero if none).
	DeliveryBacklog(ctx context.Context) (int, time.Time, error)
	// PurgeDeliveries deletes up to limit (all if limit <= 0) delivered
	// and dead deliveries that stopped being pending before `before`,
	// oldest first, and returns how many; never a pending one, whatever
	// its age. When a delivery stopped being pending is the UpdatedAt of
	// the attempt that ended it (FinishDelivery), not CreatedAt: a
	// delivery stays pending up to MaxAge, which may outlast the
	// retention, and a redelivery makes one of any age pending again, so
	// that by CreatedAt a dead letter could go the moment it died, or a
	// redelivered one the moment it was delivered, before an operator
	// saw either. It deletes in short transactions, so that it never
	// holds back deliveries or saves for long, and replicas may run it
	// at once. The engine's retention purge calls it (through
	// orchestrator.DeliveryPurger).
	PurgeDeliveries(ctx context.Context, before time.Time, limit int) (int, error)
}

// HeadRepairer is a Store that several processes share, where one of an
// older version may leave deliveries in a state no claim of this version
// would take, or would take wrongly: a PostgreSQL store whose schema marks
// the first pending delivery of each endpoint and transfer ready
// (ClaimDeliveries reads only those), while an older replica of a rolling
// upgrade still enqueues deliveries unmarked, delivers heads without
// marking the next, and finishes, claims or redelivers one without
// touching its mark. An unmarked delivery would wait for good once its
// transfer made no more events. The dispatcher calls RepairHeads every
// repairEvery.
type HeadRepairer interface {
	// RepairHeads sets the marks right, under the same locks as an
	// enqueue: the first pending delivery of each endpoint and transfer
	// marked ready from when it is due, every other delivery unmarked. It
	// returns how many deliveries it changed.
	RepairHeads(ctx context.Context) (int, error)
}

// Every Store can be purged by the engine's retention purge.
var _ orchestrator.DeliveryPurger = Store(nil)

// EndpointKey is the key of a tenant's endpoint in the store.
func EndpointKey(tenant, endpoint string) string { return tenant + "/" + endpoint }

// DeliveryID is the id of the delivery of an event to an endpoint key:
// opaque and safe in a URL path whatever the endpoint is called.
func DeliveryID(endpointKey, eventID string) string {
	sum := sha256.Sum256([]byte(endpointKey + "\x00" + eventID))
	return "dlv_" + hex.EncodeToString(sum[:12])
}
