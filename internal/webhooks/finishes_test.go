package webhooks_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/transferd/transferd/internal/webhooks"
)

// Results queued together are written in one batch, each answered with
// its own verdict; a batch's error fails each of its results; after
// Close a result fails at once.
func TestFinishesWriteResultsTogether(t *testing.T) {
	var batches [][]string
	failing := false
	f := webhooks.NewFinishes("test", 16, func(ds []webhooks.Delivery) ([]webhooks.Finished, error) {
		var ids []string
		vs := make([]webhooks.Finished, len(ds))
		for i, d := range ds {
			ids = append(ids, d.ID)
			vs[i] = webhooks.Finished{Delivery: d, OK: d.ID != "lost"}
		}
		batches = append(batches, ids)
		if failing {
			return nil, errors.New("the store failed")
		}
		return vs, nil
	})
	finishAll := func(ids ...string) []error {
		queued := make(chan struct{}, len(ids))
		release := f.Hold(func() { queued <- struct{}{} })
		errs := make([]error, len(ids))
		var wg sync.WaitGroup
		for i, id := range ids {
			wg.Go(func() {
				got, ok, err := f.Finish(webhooks.Delivery{ID: id})
				if err == nil && (got.ID != id || ok != (id != "lost")) {
					t.Errorf("%s: verdict %s, %v", id, got.ID, ok)
				}
				errs[i] = err
			})
		}
		for range ids {
			<-queued
		}
		release()
		wg.Wait()
		return errs
	}
	for _, err := range finishAll("a", "lost", "b") {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(batches) != 1 || len(batches[0]) != 3 {
		t.Fatalf("batches %v, want the three results in one", batches)
	}
	failing = true
	for i, err := range finishAll("c", "d") {
		if err == nil {
			t.Errorf("result %d of a failed batch: no error", i)
		}
	}
	f.Close()
	if _, _, err := f.Finish(webhooks.Delivery{ID: "e"}); !errors.Is(err, webhooks.ErrFinishesClosed) {
		t.Errorf("after Close: %v, want ErrFinishesClosed", err)
	}
}
