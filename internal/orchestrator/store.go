package orchestrator

import (
	"context"
	"errors"
	"time"
)

// ErrVersionConflict is returned by Store.Update when the record changed
// since it was read: another writer owns it now.
var ErrVersionConflict = errors.New("transfer version conflict")

// ListFilter selects transfers for Store.List.
type ListFilter struct {
	States   []State
	Provider string
	// After is an exclusive cursor: the id of the last transfer of the
	// previous page. Transfers are listed newest first.
	After string
	Limit int
}

// Store persists transfers. Implementations must be safe for concurrent
// use and must store copies (callers keep mutating their records).
type Store interface {
	// Create saves a new transfer (Version 1). It fails with KindConflict
	// when a non-terminal transfer of the same provider call exists.
	Create(ctx context.Context, t *Transfer) error
	// Update saves t when the stored version equals t.Version and then
	// increments t.Version; otherwise it returns ErrVersionConflict.
	Update(ctx context.Context, t *Transfer) error
	// Get returns a copy, or an error of kind KindNotFound.
	Get(ctx context.Context, id string) (*Transfer, error)
	// List returns up to f.Limit transfers, newest first, and whether more
	// follow.
	List(ctx context.Context, f ListFilter) ([]*Transfer, bool, error)
	// Ping reports whether the store can serve requests.
	Ping(ctx context.Context) error

	// Acquire claims up to limit non-terminal transfers that have no owner
	// or whose lease expired before now, for owner until now+ttl. Each
	// claimed record's Version is incremented (so the previous owner's next
	// Update fails with ErrVersionConflict) and the claimed records are
	// returned, oldest first.
	Acquire(ctx context.Context, owner string, now time.Time, ttl time.Duration, limit int) ([]*Transfer, error)
	// Renew extends owner's leases on ids to now+ttl without changing
	// versions, and returns the ids owner no longer holds (taken over, or
	// terminal). Renewing a lease also keeps it even if it had expired but
	// was not yet taken over.
	Renew(ctx context.Context, owner string, ids []string, now time.Time, ttl time.Duration) (lost []string, err error)

	// PutSignal records a client's signal for a transfer, so that the
	// replica that owns it sees it. It fails with KindConflict when another
	// signal is pending and KindNotFound when there is no such transfer.
	PutSignal(ctx context.Context, id string, s Signal) error
	// TakeSignal returns and clears the pending signal (SignalNone if none).
	TakeSignal(ctx context.Context, id string) (Signal, error)

	// ReserveIdempotency inserts rec when no record with its Scope and Key
	// exists and returns (rec, true); otherwise it returns the existing
	// record and false. The check and insert are atomic: of concurrent
	// callers with the same key exactly one gets true.
	ReserveIdempotency(ctx context.Context, rec IdempotencyRecord) (IdempotencyRecord, bool, error)
	// CompleteIdempotency stores the response of a reserved key.
	CompleteIdempotency(ctx context.Context, scope, key string, resp IdempotentResponse) error
	// DeleteIdempotency drops a reservation whose request failed without a
	// response worth replaying, so that the client may retry.
	DeleteIdempotency(ctx context.Context, scope, key string) error

	// Purge deletes terminal transfers last updated before `before`, their
	// signals, and idempotency records created before it. It returns how
	// many transfers were deleted.
	Purge(ctx context.Context, before time.Time) (int, error)
}

// IdempotencyRecord remembers one request made with an Idempotency-Key.
type IdempotencyRecord struct {
	Scope       string // the action, e.g. "POST /v1/transfers" or "POST /v1/transfers/{id}/cancel" with the id
	Key         string // the client's Idempotency-Key
	RequestHash string // a hash of the request body, to refuse a reused key with another body
	CreatedAt   time.Time
	// Response is nil while the first request is still being served.
	Response *IdempotentResponse
}

// IdempotentResponse is the response replayed for a repeated request.
type IdempotentResponse struct {
	Status   int
	Location string
	Body     []byte
}

// CallKey identifies the provider call a transfer moves, for the rule that
// a call has at most one active transfer.
// A user-addressed call (NetSapiens) is keyed by its user, since an agent
// can take part in one transfer at a time; otherwise by the call id.
func CallKey(r *Request) string {
	if r.Call.User != "" {
		return r.Provider + "|" + r.Call.Domain + "|" + r.Call.User
	}
	return r.Provider + "||" + r.Call.CallID
}

// ActiveTransferError says which transfer already moves the call.
type ActiveTransferError struct{ ID string }

func (e *ActiveTransferError) Error() string {
	return "the call already has an active transfer " + e.ID
}
