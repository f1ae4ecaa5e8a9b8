package orchestrator

import (
	"fmt"
	"time"
)

// EventType names what happened to a transfer, as webhooks and the event
// stream publish it.
type EventType string

// Event types.
const (
	EventCreated        EventType = "transfer.created"
	EventStateChanged   EventType = "transfer.state_changed"
	EventTargetAnswered EventType = "transfer.target_answered"
	EventCompleted      EventType = "transfer.completed"
	EventFailed         EventType = "transfer.failed"
	EventCancelled      EventType = "transfer.cancelled"
	// EventNeedsAttention: the outcome needs a human: the caller was not
	// given back (for a reason other than hanging up), or the outcome is
	// not verified.
	EventNeedsAttention EventType = "transfer.needs_attention"
	// EventOutcomeVerified: the sweeper discharged a terminal transfer's
	// cleanup obligation: it saw the provider confirm an outcome that
	// ended unverified (caller_restored may be corrected), or a
	// tombstone's watch ended. After it the outcome is final.
	EventOutcomeVerified EventType = "transfer.outcome_verified"
)

// EventTypes lists every event type.
var EventTypes = []EventType{EventCreated, EventStateChanged, EventTargetAnswered, EventCompleted,
	EventFailed, EventCancelled, EventNeedsAttention, EventOutcomeVerified}

// Event is one thing that happened to a transfer. The engine puts the
// events a save records in Transfer.Outbox; the store writes them in the
// same transaction as the record (an outbox), so that an event exists
// exactly when the change it reports was saved.
type Event struct {
	// ID is unique: the webhook-id of every delivery of the event.
	ID         string    `json:"id"`
	Tenant     string    `json:"tenant"`
	TransferID string    `json:"transfer_id"`
	Seq        int64     `json:"seq"` // per transfer: 1, 2, 3, …
	Type       EventType `json:"type"`
	At         time.Time `json:"at"`
	// From and To are the states of a transfer.state_changed.
	From State `json:"from,omitempty"`
	To   State `json:"to,omitempty"`
	// Pos is the event's position among all events of the store, assigned
	// when it is written; it orders the stream (Last-Event-ID).
	Pos int64 `json:"-"`
	// Transfer is the record as saved with the event; stores fill it when
	// they read events back.
	Transfer *Transfer `json:"-"`
}

// EventFilter selects events for Store.Events.
type EventFilter struct {
	Tenant string
	// TransferID, when set, selects one transfer's events.
	TransferID string
	// After is an exclusive position (Event.Pos); 0 reads from the start.
	After int64
	Limit int
}

// emit appends an event to t's outbox.
func emit(t *Transfer, typ EventType, at time.Time, from, to State) {
	t.EventSeq++
	t.Outbox = append(t.Outbox, Event{
		ID: fmt.Sprintf("evt_%s_%d", t.ID[len("tr_"):], t.EventSeq), Tenant: tenantOf(t), TransferID: t.ID,
		Seq: t.EventSeq, Type: typ, At: at, From: from, To: to,
	})
}

// needsAttention reports an outcome a human should look at.
func needsAttention(t *Transfer) bool {
	o := t.Outcome
	return o != nil && (!o.Verified || (t.State != StateCompleted && !o.CallerRestored && o.Reason != ReasonCallerHungUp))
}
