package orchestrator

import (
	"context"
	"errors"
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
