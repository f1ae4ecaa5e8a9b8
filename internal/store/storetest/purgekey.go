package storetest

import (
	"testing"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// RunPurgeTakesTheKeyOfAKeptEndedTransfer runs the conformance case of an
// idempotency record past the cut-off whose transfer ended (closed) after
// it: the transfer is kept, its own retention not past, and the record
// goes all the same. Only a transfer still open keeps its key (it still
// answers a retry of the create); the README keeps keys for
// TRANSFERD_RETENTION. testPurge's ended transfers were all purged in the
// same call, so a store that kept the key of any transfer still stored, open
// or not, failed no test (mutations of the stores, sixty-fourth pass): a
// key reused after its retention replayed the old transfer for up to a
// retention more.
func RunPurgeTakesTheKeyOfAKeptEndedTransfer(t *testing.T, open func(t *testing.T) orchestrator.Store) {
	t.Parallel()
	f := &fixture{T: t, s: open(t), ctx: t.Context()}
	cutoff := t0.Add(24 * time.Hour).Truncate(time.Microsecond)
	idem := func(key string) orchestrator.IdempotencyRecord {
		return orchestrator.IdempotencyRecord{Scope: "s", Key: key, RequestHash: "h", CreatedAt: cutoff.Add(-time.Hour)}
	}
	reserve(f, idem("of-ended"))
	reserve(f, idem("of-open"))
	ended := f.transfer("1")
	ended.IdempotencyScope, ended.IdempotencyKey = "s", "of-ended"
	f.create(ended)
	f.setState(ended, orchestrator.StateCompleted, cutoff.Add(time.Minute))
	if ended.Open() {
		f.Fatalf("a completed transfer without cleanup is open")
	}
	active := f.transfer("2")
	active.IdempotencyScope, active.IdempotencyKey = "s", "of-open"
	f.create(active)
	f.setState(active, orchestrator.StateConsulting, cutoff.Add(-time.Minute))

	if n := f.purge(cutoff, 0); n != 0 {
		f.Errorf("Purge deleted %d transfers, want none", n)
	}
	f.equal("the ended transfer past the cut-off's end", f.get(ended.ID), ended)
	if _, ok := reserve(f, idem("of-ended")); !ok {
		f.Errorf("the key of an ended transfer kept survived Purge past its retention")
	}
	if _, ok := reserve(f, idem("of-open")); ok {
		f.Errorf("the key of an open transfer was purged")
	}
}
