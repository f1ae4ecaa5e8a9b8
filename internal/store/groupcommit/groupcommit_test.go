package groupcommit_test

import (
	"slices"
	"sync"
	"testing"

	"github.com/transferd/transferd/internal/store/groupcommit"
)

// save is a test's save request: its verdict is its own number.
type save struct {
	n    int
	done chan int
}

// recorder writes batches by answering each save with its number, and
// records the batches' sizes.
type recorder struct {
	mu      sync.Mutex
	batches [][]int
}

func (w *recorder) write(batch []*save) {
	ns := make([]int, len(batch))
	for i, s := range batch {
		ns[i] = s.n
	}
	w.mu.Lock()
	w.batches = append(w.batches, ns)
	w.mu.Unlock()
	for _, s := range batch {
		s.done <- s.n
	}
}

func newSave(n int) *save { return &save{n: n, done: make(chan int, 1)} }

// commit is one save through q, which must be answered with its number.
func commit(t *testing.T, q *groupcommit.Queue[*save], n int) {
	s := newSave(n)
	v, ok := groupcommit.Commit(q, s, s.done)
	if !ok || v != n {
		t.Errorf("save %d: verdict %d, %v", n, v, ok)
	}
}

// A save with nothing else queued is written at once, alone, on the
// caller's goroutine.
func TestLoneSaveIsWrittenAtOnce(t *testing.T) {
	var w recorder
	q := groupcommit.New("test", 8, w.write)
	commit(t, q, 1)
	commit(t, q, 2)
	if want := [][]int{{1}, {2}}; !slices.EqualFunc(w.batches, want, slices.Equal) {
		t.Errorf("batches %v, want %v", w.batches, want)
	}
}

// queueBehind queues n saves (numbered from 1) while the turn is held and
// returns once all of them are queued, with the release and a wait for
// their verdicts.
func queueBehind(t *testing.T, q *groupcommit.Queue[*save], n int) (release func(), wait func()) {
	queued := make(chan struct{}, n)
	release = q.Hold(func() { queued <- struct{}{} })
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { commit(t, q, i+1) })
	}
	for range n {
		<-queued
	}
	return release, wg.Wait
}

// Saves that queue while a batch is being written are written together in
// the next one, each with its own verdict; a batch holds at most the
// queue's maximum.
func TestSavesQueuedBehindACommitShareTheNextBatch(t *testing.T) {
	var w recorder
	q := groupcommit.New("test", 4, w.write)
	release, wait := queueBehind(t, q, 10)
	release()
	wait()
	var sizes []int
	var all []int
	for _, b := range w.batches {
		sizes = append(sizes, len(b))
		all = append(all, b...)
	}
	if !slices.Equal(sizes, []int{4, 4, 2}) {
		t.Errorf("batch sizes %v, want [4 4 2]", sizes)
	}
	if len(all) != 10 {
		t.Errorf("batches %v: want each of the 10 saves once", w.batches)
	}
	seen := map[int]bool{}
	for _, n := range all {
		if seen[n] {
			t.Errorf("save %d written twice: %v", n, w.batches)
		}
		seen[n] = true
	}
}

// Close writes the saves already queued, each gets its verdict, and a
// save after Close is refused without being written.
func TestCloseAnswersEveryQueuedSave(t *testing.T) {
	var w recorder
	q := groupcommit.New("test", 128, w.write)
	release, wait := queueBehind(t, q, 5)
	closed := make(chan struct{})
	go func() {
		q.Close()
		close(closed)
	}()
	release()
	wait()
	<-closed
	written := 0
	for _, b := range w.batches {
		written += len(b)
	}
	if written != 5 {
		t.Errorf("%d saves written, want 5: %v", written, w.batches)
	}
	batches := len(w.batches)
	s := newSave(6)
	if v, ok := groupcommit.Commit(q, s, s.done); ok {
		t.Errorf("a save after Close was answered %d", v)
	}
	if len(w.batches) != batches || len(s.done) != 0 {
		t.Errorf("a save after Close was written: %v", w.batches)
	}
}

// Many savers at once: each save is written exactly once and gets its own
// verdict (run with -race).
func TestConcurrentSavesEachWrittenOnce(t *testing.T) {
	var w recorder
	q := groupcommit.New("test", 16, w.write)
	var wg sync.WaitGroup
	const savers, each = 16, 200
	for g := range savers {
		wg.Go(func() {
			for i := range each {
				commit(t, q, g*each+i+1)
			}
		})
	}
	wg.Wait()
	seen := make([]bool, savers*each+1)
	for _, b := range w.batches {
		if len(b) > 16 {
			t.Errorf("a batch of %d saves, above the maximum 16", len(b))
		}
		for _, n := range b {
			if seen[n] {
				t.Errorf("save %d written twice", n)
			}
			seen[n] = true
		}
	}
	if slices.Contains(seen[1:], false) {
		t.Errorf("a save was never written")
	}
}
