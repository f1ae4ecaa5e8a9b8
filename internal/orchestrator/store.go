package orchestrator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrVersionConflict is returned by Store.Update when the record changed
// since it was read: another writer owns it now.
var ErrVersionConflict = errors.New("transfer version conflict")

// ErrSuperseded is returned by Store.Heartbeat when another process took
// the replica's name over while this one's heartbeat was live: two
// processes were given one name, or this one was stopped (a paused VM)
// while a new one started in its place. That one drives the name's
// transfers now.
var ErrSuperseded = errors.New("another process took this replica's name over")

// ErrSupersededSave is the cause of a save refused because it carried its
// process's token (Transfer.Token) and the heartbeat of the record's Owner
// was written since by another process under that name (see
// Store.Update): nothing was written. It matches ErrSuperseded, and
// ErrVersionConflict too, for to the saver the record is another
// writer's now. Stores return it with KindConflict.
var ErrSupersededSave = fmt.Errorf("%w; %w", ErrSuperseded, ErrVersionConflict)

// NewToken returns a random incarnation token, one per process (see
// Store.Heartbeat).
func NewToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// ListFilter selects transfers for Store.List. Empty fields select all.
type ListFilter struct {
	// Tenant selects one tenant's transfers (the engine always sets it).
	Tenant     string
	States     []State
	Provider   string
	ExternalID string
	// Domain and User, or CallID, select the transfers of one call
	// (Request.Call); Target those to one target. Domain and User match
	// in any letter case, as CallKey and the PBX do.
	Domain, User, CallID string
	Target               string
	// CreatedAfter (inclusive) and CreatedBefore (exclusive) bound the
	// creation time, compared to CreatedResolution (see CreatedBounds).
	CreatedAfter, CreatedBefore time.Time
	// After is an exclusive cursor: the id of the last transfer of the
	// previous page. Transfers are listed newest first.
	After string
	Limit int
}

// CreatedResolution is the precision at which a transfer's creation time
// is kept and compared. PostgreSQL's timestamptz keeps microseconds (pgx
// drops the rest), the other stores nanoseconds; the engine creates
// transfers at this precision and every store compares the list's bounds
// at it, so that one query answers the same on every store.
const CreatedResolution = time.Microsecond

// CreatedBounds returns CreatedAfter and CreatedBefore truncated to
// CreatedResolution, as every store compares them. A creation time t is
// then listed when after <= t < before; with t a whole number of
// microseconds, as the engine makes it, that is what PostgreSQL compares
// too. Without it a bound within a microsecond of a transfer's creation
// (a client adding 1 ns to the last created_at it saw) included that
// transfer on PostgreSQL and excluded it on the others, or the reverse.
func (f ListFilter) CreatedBounds() (after, before time.Time) {
	return f.CreatedAfter.Truncate(CreatedResolution), f.CreatedBefore.Truncate(CreatedResolution)
}

// Store persists transfers. Implementations must be safe for concurrent
// use and must store copies (callers keep mutating their records).
type Store interface {
	// Create saves a new transfer (Version 1). It fails with KindConflict
	// and an ActiveTransferError when a non-terminal transfer of the same
	// provider call of the same tenant exists, or when another of the
	// call's transfers holds it (Transfer.HoldsCall: CleaningUp then):
	// any of them, not only the newest by id, for ids begin with their
	// replica's clock, which may be stepped back or run ahead of another
	// replica's. The look at the call's transfers is part of the create's
	// transaction: made by the engine before it, a read of its own, it
	// cost a round trip to the database a transfer, and a transfer that
	// ended owing the call between the two got by. When
	// t.IdempotencyKey is set, the same write links
	// the reservation (t.IdempotencyScope, t.IdempotencyKey) to t.ID, if
	// it exists. When t.IdempotencyReservedAt is set too, the create
	// holds that reservation (the one created then): it is saved only if
	// the reservation is still pending, unlinked and created then, and
	// otherwise saves nothing and fails with ErrReservationLost (its
	// request outlived ReservationTimeout, or its replica's heartbeat
	// lapsed: the reservation was settled, and the key may be a retry's
	// now; a create refused for this and for its call may get either
	// error). The events in t.Outbox are written in the same transaction
	// (see Update). The token check is Update's.
	Create(ctx context.Context, t *Transfer) error
	// Update saves t when the stored version equals t.Version and then
	// increments t.Version; otherwise it returns ErrVersionConflict. The
	// events in t.Outbox are written in the same transaction, each with
	// the record as saved and a new position (Event.Pos); the caller
	// empties the outbox after a successful save. When t.LookForSignal
	// is set, a successful Update also reads the transfer's pending
	// signal (as PeekSignal) in the same transaction, after its write, and
	// sets t.SignalLooked and t.PendingSignal: every signal put at a
	// version the write moved past is found, and none put later can be at
	// such a version (PutSignal). Nothing else of t changes.
	//
	// When t.Token is set and t.Owner is not "", the save is made only
	// while Owner's heartbeat, if there is one, holds that token: a
	// process whose name another process took over (Heartbeat with take)
	// saves nothing more once that heartbeat is written, and gets
	// ErrSupersededSave (KindConflict). Every provider request is
	// preceded by a save of its intent, so such a process sends nothing
	// that was not decided before the takeover. A save already under way
	// as the takeover commits may still be made (PostgreSQL judges the
	// heartbeat as of its statement's start): one request at most, as
	// one in flight at the takeover. A heartbeat that never was (a name
	// with no row), or one without a token (an older version's, which
	// Heartbeat takes over too), is no other process's.
	Update(ctx context.Context, t *Transfer) error
	// Get returns a copy, or an error of kind KindNotFound.
	Get(ctx context.Context, id string) (*Transfer, error)
	// List returns up to f.Limit transfers, newest first, and whether more
	// follow.
	List(ctx context.Context, f ListFilter) ([]*Transfer, bool, error)
	// Ping reports whether the store can serve requests.
	Ping(ctx context.Context) error

	// Heartbeat records that replica owner is alive until now+ttl: one
	// write per replica, whatever the number of transfers it owns. token
	// names the process writing it (its incarnation, random for each
	// process), and is stored with the heartbeat: the heartbeat is written
	// only when take is set (a process starting under owner's name, which
	// resumes at once what an earlier process left), when the stored one
	// is this token's, has none (written by an older version, which
	// keeps whatever token the row holds) or has expired. Otherwise
	// another process took owner's name over while this one's heartbeat
	// was live: it writes nothing and fails with ErrSuperseded. It
	// reports whether owner had no live heartbeat before (a new replica,
	// or one whose heartbeat expired: other replicas may have claimed
	// some of its transfers meanwhile).
	Heartbeat(ctx context.Context, owner, token string, now time.Time, ttl time.Duration, take bool) (expired bool, err error)
	// Release ends replica owner's heartbeat at `at`, only while it is
	// the one token wrote last, which ends at last: a replica that
	// stopped driving transfers has others claim what it left at their
	// next look, while a newer process under the same name keeps its own
	// heartbeat.
	Release(ctx context.Context, owner, token string, last, at time.Time) error
	// Peers returns how many replicas other than owner have a heartbeat
	// live at now. A replica shutting down hands its transfers in progress
	// over only when one may take them (Engine.Shutdown); the count
	// includes peers shutting down too, which take none, so the hand-over
	// is checked, never assumed.
	Peers(ctx context.Context, owner string, now time.Time) (int, error)
	// Claim takes up to limit open transfers (Transfer.Open) whose owner
	// has no live heartbeat at now (or no owner) and, when own is set,
	// those owned by owner itself (a process restarted under the same
	// name), for owner: Owner is set and Version incremented, so that the
	// previous owner's next Update fails with ErrVersionConflict. The
	// claimed records are returned, oldest first, each with Unowned set
	// when it had no owner at the claim (a hand-over), whatever it said
	// when it was read.
	//
	// When token is set, the claim is made only while owner's heartbeat,
	// if there is one, holds that token (or none), as a save is (see
	// Update): a process whose name another process took over claims
	// nothing, whether anything was claimable or not, and gets
	// ErrSuperseded (KindConflict). Claimed by it, a dead replica's
	// transfers and handed-over ones became the name's, each refused at
	// its first save, and waited for the name's live process to adopt
	// them (a heartbeat TTL after its takeover) where a live replica
	// claims them at its next claim.
	Claim(ctx context.Context, owner, token string, now time.Time, own bool, limit int) ([]*Transfer, error)
	// Owned returns the ids of the open transfers owned by owner, oldest
	// first: a replica whose claim may have been saved although its
	// answer was lost finds there the transfers it owns and drives none of.
	Owned(ctx context.Context, owner string) ([]string, error)
	// Signalled returns the ids of transfers owned by owner that have a
	// pending signal, so that the owner learns of signals put through
	// another replica with one query.
	Signalled(ctx context.Context, owner string) ([]string, error)

	// PutSignal records a client's signal for a transfer, so that the
	// replica that owns it sees it. With a version (> 0) it records it only
	// while the stored transfer is still at that version, the one whose
	// state the signal was checked against, and fails with ErrStale
	// (KindConflict) once a save has moved it on. It fails with
	// KindConflict when another signal is pending and KindNotFound when
	// there is no such transfer.
	PutSignal(ctx context.Context, id string, s Signal, version int64) error
	// PeekSignal returns the pending signal (SignalNone if none) and
	// leaves it pending: the engine clears it only once what it caused is
	// saved, so that a process that dies in between leaves it to the next.
	PeekSignal(ctx context.Context, id string) (Signal, error)
	// TakeSignal returns and clears the pending signal (SignalNone if none).
	TakeSignal(ctx context.Context, id string) (Signal, error)

	// ReserveIdempotency inserts rec when no record with its Scope and Key
	// exists and returns (rec, true); otherwise it returns the existing
	// record and false. The check and insert are atomic: of concurrent
	// callers with the same key exactly one gets true.
	ReserveIdempotency(ctx context.Context, rec IdempotencyRecord) (IdempotencyRecord, bool, error)
	// CompleteIdempotency stores the response of the reservation of
	// scope and key created at createdAt; it fails with KindNotFound when
	// there is none (it was settled, and the key may be a retry's now).
	CompleteIdempotency(ctx context.Context, scope, key string, createdAt time.Time, resp IdempotentResponse) error
	// DeleteIdempotency drops the reservation of scope and key created at
	// createdAt, whose request failed without a response worth replaying,
	// so that the client may retry. A reservation linked to a transfer
	// (the create was saved although its request failed) is answered
	// instead, as SettleIdempotency answers it: a retry must find that
	// transfer, not start another. Another reservation of the key (a
	// retry's, once the first was settled) is left alone.
	DeleteIdempotency(ctx context.Context, scope, key string, createdAt time.Time) error
	// SettleIdempotency settles reservations still waiting for their
	// response (Response nil) that no request serves any more: those whose
	// Owner has no live heartbeat at now (the request died with its
	// process), and those of owner itself created before ownBefore (the
	// zero time: none) — a request of owner's previous life, or one that
	// ended without its response recorded (CompleteIdempotency failed):
	// see ReservationTimeout. A reservation linked to a transfer (the
	// create was saved: see Transfer.IdempotencyKey) gets the response
	// {Status: 202, Location: "/v1/transfers/<id>", TransferID: <id>}; any
	// other is deleted, so that the client's retry runs afresh. It
	// returns how many it settled.
	SettleIdempotency(ctx context.Context, owner string, now, ownBefore time.Time) (int, error)

	// Purge deletes transfers that are terminal and not Open, last updated
	// before `before`, with their signals, and idempotency records created
	// before it. It deletes at most limit transfers per call (0: no
	// bound) and returns how many it deleted. A call that deleted limit
	// transfers may have left more, and leaves the idempotency records to
	// the call that deletes fewer: the retention purge calls it until
	// then, and the records' statement runs once, not once a call.
	Purge(ctx context.Context, before time.Time, limit int) (int, error)

	// Every store keeps the outbox readable; Purge deletes the events of
	// the transfers it deletes.
	EventStore
}

// EventStore is the reading side of the outbox, on its own for consumers
// that need nothing else of a Store (webhook delivery).
type EventStore interface {
	// Events returns up to f.Limit events, oldest (lowest Pos) first, of
	// f.Tenant after f.After, optionally of one transfer, each with its
	// Transfer snapshot.
	Events(ctx context.Context, f EventFilter) ([]Event, error)
	// LastEventPos returns the position of the newest event of f.Tenant,
	// of f.TransferID's only when it is set, or 0 when there is none; it
	// ignores f.After and f.Limit. It costs one index lookup, whatever the
	// history: a stream opened "from now" starts there.
	LastEventPos(ctx context.Context, f EventFilter) (int64, error)
	// EventIDKey returns the key the event stream's ids are made with:
	// the same for every replica of the store, for as long as it lasts.
	EventIDKey(ctx context.Context) (EventIDKey, error)
}

// EventIDKey is what the event stream (api) makes its event ids with. The
// ids name outbox positions, which every tenant's events share: a tenant
// that saw the positions of its own events would learn from the gaps how
// many events the others made, and when. So the ids are the positions
// sealed with Secret, bound to the tenant, and tell nothing.
type EventIDKey struct {
	Secret [32]byte
	// LegacyBelow is the outbox's last position when the store first made
	// its key. An older version sent positions as ids (plain numbers): a
	// client resumes after one up to LegacyBelow, and after LegacyBelow
	// past it (a position purged before the upgrade, or sent by an older
	// replica still running), so that it misses nothing.
	LegacyBelow int64
}

// NewEventIDKey returns a fresh key, with legacyBelow.
func NewEventIDKey(legacyBelow int64) (EventIDKey, error) {
	k := EventIDKey{LegacyBelow: legacyBelow}
	_, err := rand.Read(k.Secret[:])
	return k, err
}

// ReservationTimeout bounds how long a request with an Idempotency-Key
// is served, counted from its reservation's CreatedAt: past it the
// request has recorded its response or never will (the recording failed),
// and its own replica, alive, settles the reservation in its maintenance
// loop (Store.SettleIdempotency), so that the key is never left "in
// progress". The API keeps every such request within it: it may wait for
// an earlier request with the key (idempotencyWait, 65 s), then hold the
// longest Prefer: wait (60 s), write the response within the longest
// write timeout (api.MaxWriteTimeout, 2 min) and record it (10 s); the
// 45 s left cover validating and saving the transfer. A reservation is
// thus never settled under the request that holds it — except when a save
// the store has taken waits longer for its verdict than the store's own
// bounds should allow (the group commit waits for it whatever the
// deadline). The writes of a reservation's request are therefore made
// only while the reservation is still its own: the create's save (see
// Store.Create: ErrReservationLost), the response's record and its
// deletion each name the reservation by its CreatedAt.
const ReservationTimeout = 5 * time.Minute

// ErrReservationLost is the cause of a create refused because its
// request's Idempotency-Key reservation is no longer its own (see
// Store.Create): nothing was saved. Stores return it with KindUnavailable.
var ErrReservationLost = errors.New("the Idempotency-Key reservation of this request was settled before its transfer was saved; nothing was saved")

// ErrNotSaved is the cause of a create the store failed to save, and knows
// it did not (its transaction never began, or the create's writes were
// taken back and the rest of its transaction committed): the engine need
// not look for the transfer afterwards, as it does for a failure that
// leaves the save unknown. Stores return it with KindUnavailable.
var ErrNotSaved = errors.New("the store failed to save the transfer; nothing was saved")

// ErrSaveUnknown is the cause of a create whose save the store neither
// confirmed nor refused (a connection that ended around the commit, a
// write the disk refused mid-commit), and whose record could not be read
// back at once: it may have been saved. The engine goes on looking for
// it, and drives it if it was; a retry with the create's Idempotency-Key
// then answers with it. Engine.Start returns it with KindUnavailable.
var ErrSaveUnknown = errors.New("the store's answer to the save was lost; the transfer may have been saved")

// ErrSignalUnknown is the cause of a /complete or /cancel whose signal the
// store neither confirmed nor refused: it may have been recorded, and
// then the owner acts on it. The same action made again is accepted while
// it is pending (Engine.Complete, Engine.Cancel), and refused as a
// conflict once the transfer has moved on. Returned with KindUnavailable.
var ErrSignalUnknown = errors.New("the store's answer to the action was lost; it may have been recorded")

// ErrSignalNotRecorded is the cause of a /complete or /cancel whose
// transfer the store could not read to check the action against (a
// database restarting or failing over ends every connection at once):
// nothing was recorded, and the same action made again is checked
// afresh. Returned with KindUnavailable.
var ErrSignalNotRecorded = errors.New("the store could not be read to check the action; nothing was recorded")

// ErrUndecodable matches (errors.Is) the error of a read whose stored
// record was read but could not be decoded: a corrupt record, a bug, not
// a store that could not be read (whose reads the API answers with a 503
// inviting a retry).
var ErrUndecodable = errors.New("a stored record could not be decoded")

// IdempotencyRecord remembers one request made with an Idempotency-Key.
type IdempotencyRecord struct {
	Scope       string // the action, e.g. "POST /v1/transfers" or "POST /v1/transfers/{id}/cancel" with the id
	Key         string // the client's Idempotency-Key
	RequestHash string // a hash of the request body, to refuse a reused key with another body
	// CreatedAt names this reservation among the key's (see
	// ReservationTimeout); whole in microseconds, the resolution every
	// store keeps.
	CreatedAt time.Time
	// Owner is the replica serving the request; see SettleIdempotency.
	Owner string
	// Response is nil while the first request is still being served.
	Response *IdempotentResponse
}

// IdempotentResponse is the response replayed for a repeated request.
type IdempotentResponse struct {
	Status   int
	Location string
	Body     []byte
	// TransferID, with an empty Body, asks the API to replay the transfer
	// as it is now (a reservation settled after its process died).
	TransferID string
}

// CallKey identifies the provider call a transfer moves, for the rule that
// a call has at most one active transfer.
// A user-addressed call (NetSapiens) is keyed by its user, since an agent
// can take part in one transfer at a time; otherwise by the call id. The
// domain and the user are folded to lower case, as the PBX matches them
// (and the tenants' allowed domains, the watch key and the list filter):
// ACME.example/Sales and acme.example/sales are one agent's call, and two
// transfers of it would hold, dial and join one live call at once. The
// stores' migrations fold the keys of transfers begun before.
func CallKey(r *Request) string {
	if r.Call.User != "" {
		return r.Provider + "|" + strings.ToLower(r.Call.Domain+"|"+r.Call.User)
	}
	return r.Provider + "||" + r.Call.CallID
}

// TenantCallKey is CallKey within a tenant: two tenants' PBXs may both
// have a user 1000 in a domain TEST.
func TenantCallKey(t *Transfer) string {
	return tenantOf(t) + "|" + CallKey(&t.Request)
}

// ErrStale says that a transfer was saved since the version a signal was
// checked against (Store.PutSignal).
var ErrStale = errors.New("the transfer was saved since it was read")

// HoldsCall reports whether t keeps its call from a new transfer
// (Store.Create): it is active, or it ended with an unverified outcome
// that still owes the call its end state (cleaningUp). Such a transfer's
// sweeper takes a caller it sees held off hold, and would take a new
// transfer's hold off in the middle of its consult; the call is free
// again once the sweeper verifies the outcome (or finds the caller's
// call ended). A verified outcome's tombstone owes only its own consult
// leg, never the caller.
func (t *Transfer) HoldsCall() (holds, cleaningUp bool) {
	switch {
	case !t.State.Terminal():
		return true, false
	case t.Cleanup != nil && (t.Outcome == nil || !t.Outcome.Verified):
		return true, true
	}
	return false, false
}

// ActiveTransferError says which transfer already moves the call.
// CleaningUp: it has ended, but its outcome is unverified and it still
// owes the call its end state (see Transfer.HoldsCall).
type ActiveTransferError struct {
	ID         string
	CleaningUp bool
}

func (e *ActiveTransferError) Error() string {
	if e.CleaningUp {
		return "the call's transfer " + e.ID + " still owes it its end state (its outcome is unverified)"
	}
	return "the call already has an active transfer " + e.ID
}
