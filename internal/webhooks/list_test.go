package webhooks_test

import (
	"slices"
	"testing"

	"github.com/transferd/transferd/internal/webhooks"
)

// ListKinds splits a filter that excludes delivered deliveries into
// kinds that share no delivery, and leaves the others (one transfer's,
// every delivery, any list of delivered ones) to a read of the tenant's
// or the transfer's in list order.
func TestListKinds(t *testing.T) {
	const (
		pending   = webhooks.StatusPending
		delivered = webhooks.StatusDelivered
		dead      = webhooks.StatusDead
	)
	for _, c := range []struct {
		statuses []webhooks.Status
		failing  bool
		transfer string
		want     []webhooks.ListKind
	}{
		{nil, false, "", nil},
		{[]webhooks.Status{dead}, true, "", []webhooks.ListKind{webhooks.ListDead, webhooks.ListFailing}}, // the API's default
		{nil, true, "", []webhooks.ListKind{webhooks.ListFailing}},
		{[]webhooks.Status{dead}, false, "", []webhooks.ListKind{webhooks.ListDead}},
		{[]webhooks.Status{pending}, false, "", []webhooks.ListKind{webhooks.ListPending}},
		// Failing deliveries are pending ones: one kind, not two that
		// overlap.
		{[]webhooks.Status{pending}, true, "", []webhooks.ListKind{webhooks.ListPending}},
		{[]webhooks.Status{dead, pending, dead}, true, "", []webhooks.ListKind{webhooks.ListPending, webhooks.ListDead}},
		{[]webhooks.Status{delivered}, false, "", nil},
		{[]webhooks.Status{dead, delivered}, true, "", nil},
		{[]webhooks.Status{dead}, true, "tr_1", nil},
		{[]webhooks.Status{"bogus"}, false, "", nil},
	} {
		f := webhooks.DeliveryFilter{Tenant: "acme", Statuses: c.statuses, Failing: c.failing, TransferID: c.transfer}
		if got := webhooks.ListKinds(f); !slices.Equal(got, c.want) || (got == nil) != (c.want == nil) {
			t.Errorf("ListKinds(%v, failing %v, transfer %q) = %v, want %v", c.statuses, c.failing, c.transfer, got, c.want)
		}
	}
}
