package webhooks_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// unavailableStore refuses the first write of results with an error that
// says nothing was written (KindUnavailable: not read back).
type unavailableStore struct {
	webhooks.Store
	failed atomic.Bool
}

func (s *unavailableStore) SettleDeliveries(ctx context.Context, results []webhooks.Delivery, owner string, now time.Time, lease time.Duration, limit int, skip []string) ([]webhooks.Finished, []webhooks.Delivery, error) {
	if len(results) == 0 || s.failed.Swap(true) {
		return s.Store.SettleDeliveries(ctx, results, owner, now, lease, limit, skip)
	}
	return nil, nil, orchestrator.E("test.SettleDeliveries", orchestrator.KindUnavailable, nil)
}

// A write of results the store refused saying nothing was made (not
// uncertain, so not read back) keeps them for the next scan too, as one
// whose answer was lost and that the read back does not find: the
// delivery the receiver took is not sent again after its lease.
func TestResultsAWriteRefusedOutrightAreWrittenAtTheNextScan(t *testing.T) {
	s := memory.New()
	st := &unavailableStore{Store: memory.NewDeliveries(s)}
	deliveredOnceAfterAFailedWrite(t, s, st, st.Store, &st.failed, "refused")
}
