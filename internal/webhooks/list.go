package webhooks

import "slices"

// ListKind is a set of deliveries that the stores index apart for
// Store.Deliveries, newest first. A store with webhooks keeps every
// delivery for the retention, nearly all of them delivered: millions,
// where a tenant's failed ones (the API's default list) are a handful. A
// list of those that read the tenant's deliveries in list order and
// filtered them read every one of them to fill a page it could not fill.
type ListKind string

const (
	// ListPending: pending deliveries, failing or not.
	ListPending ListKind = "pending"
	// ListDead: dead letters.
	ListDead ListKind = "dead"
	// ListFailing: pending deliveries whose last attempt failed.
	ListFailing ListKind = "failing"
)

// ListKinds returns the kinds whose union is what f selects, no two of
// them sharing a delivery, for a store to read each from its index and
// merge them. It returns nil when f selects one transfer's deliveries
// (few: a store reads them by transfer, with every other filter a
// condition) or may select delivered ones (most of a tenant's, so that a
// read of the tenant's in list order, filtered, finds a page at once).
func ListKinds(f DeliveryFilter) []ListKind {
	if f.TransferID != "" || len(f.Statuses) == 0 && !f.Failing || slices.Contains(f.Statuses, StatusDelivered) {
		return nil
	}
	var kinds []ListKind
	pending := slices.Contains(f.Statuses, StatusPending)
	if pending {
		kinds = append(kinds, ListPending)
	}
	if slices.Contains(f.Statuses, StatusDead) {
		kinds = append(kinds, ListDead)
	}
	if f.Failing && !pending {
		// Failing deliveries are pending ones: pending covers them.
		kinds = append(kinds, ListFailing)
	}
	// Statuses that name no kind (none the API lets through) select
	// nothing: the plain read says so.
	return kinds
}
