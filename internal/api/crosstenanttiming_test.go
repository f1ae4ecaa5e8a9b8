package api_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/memory"
)

// slowGets is a store whose reads of one transfer take readDelay, as a
// read of a database across a network does, and counts them.
type slowGets struct {
	*memory.Store
	gets atomic.Int64
}

const readDelay = 80 * time.Millisecond

func (s *slowGets) Get(ctx context.Context, id string) (*orchestrator.Transfer, error) {
	s.gets.Add(1)
	select {
	case <-time.After(readDelay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Store.Get(ctx, id)
}

// Another tenant's transfer, even one this replica drives and holds in
// memory, is answered by complete and cancel as a missing one is: the
// same status and body, and after the same work (a read of the store),
// so that neither the answer nor its time tells tenant B that tenant A
// has a transfer in flight under that id.
func TestAnotherTenantsLiveTransferTakesAsLongAsAMissingOne(t *testing.T) {
	store := &slowGets{Store: memory.New()}
	e := newEnvStore(t, zerolog.Nop(), testSigner(t), store)
	mine := e.do(t, exchange{method: "POST", path: "/v1/transfers", header: jsonHeader(), body: createBody("7000", "manual")}, false)
	if mine.status != http.StatusAccepted {
		t.Fatalf("create: %d %s", mine.status, mine.body)
	}
	id := mine.transfer(t).ID
	e.wait(t, id, answered)
	missing := orchestrator.NewID(time.Now())
	for _, action := range []string{"cancel", "complete"} {
		answer := func(target string) (*result, time.Duration, int64) {
			before := store.gets.Load()
			start := time.Now()
			r := e.do(t, exchange{method: "POST", path: "/v1/transfers/" + target + "/" + action,
				header: map[string]string{"Authorization": "Bearer " + otherWriteKey}}, false)
			return r, time.Since(start), store.gets.Load() - before
		}
		theirs, theirsTook, theirsReads := answer(id)
		none, noneTook, noneReads := answer(missing)
		if theirs.status != http.StatusNotFound || none.status != http.StatusNotFound {
			t.Fatalf("%s: another tenant's transfer %d, a missing one %d; want 404 for both", action, theirs.status, none.status)
		}
		if a, b := strings.ReplaceAll(string(theirs.body), id, "ID"), strings.ReplaceAll(string(none.body), missing, "ID"); a != b {
			t.Errorf("%s: bodies differ:\n%s\n%s", action, a, b)
		}
		if theirsReads != noneReads {
			t.Errorf("%s: another tenant's transfer read the store %d times, a missing one %d", action, theirsReads, noneReads)
		}
		if noneTook >= readDelay && theirsTook < readDelay {
			t.Errorf("%s: another tenant's live transfer answered in %s, a missing one in %s: the time tells it exists", action, theirsTook, noneTook)
		}
	}
	// The transfer is still the default tenant's, untouched.
	if tr := e.wait(t, id, answered); tr.State != orchestrator.StateConsulting {
		t.Errorf("state %s, want consulting", tr.State)
	}
}
