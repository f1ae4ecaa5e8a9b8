// Package groupcommit is the group commit both durable stores use: saves
// that arrive while a batch is being written are written together in the
// next batch, one transaction for all of them, and each still gets its own
// verdict. A lone save is written at once: nothing waits for company.
//
// There is no committer goroutine. The save that finds no batch being
// written becomes the committer and writes every queued save, its own
// included, on its own goroutine; saves that queue meanwhile wait for
// their verdict or for the turn to commit, whichever comes first. A save
// so costs no hand-over to another goroutine and back: with a committer
// goroutine each save woke a parked thread twice (six saves per
// transfer), which was 5 % of transferd's CPU with one transfer at a time
// on SQLite (docs/benchmarks.md, sixth pass).
package groupcommit

import (
	"fmt"
	"sync"
)

// Queue holds the saves waiting for a batch and the one right to write
// one. R is a store's save request; its verdict travels on a channel of
// its own (see Commit).
type Queue[R any] struct {
	name  string
	max   int
	write func(batch []R)

	mu     sync.Mutex
	queue  []R
	closed bool
	queued func() // tests: called after each save queues
	// turn holds the right to write a batch: whoever takes it from the
	// channel writes, and puts it back when done.
	turn chan struct{}
}

// New returns a queue whose batches hold at most max saves, so that a
// flood of saves still commits in steps. write writes a batch and must
// send every save of it its verdict (the channel a save's Commit waits
// on), whatever happens; name is the store's, for the panic message of a
// failed commit.
func New[R any](name string, max int, write func(batch []R)) *Queue[R] {
	q := &Queue[R]{name: name, max: max, write: write, turn: make(chan struct{}, 1)}
	q.turn <- struct{}{}
	return q
}

// Commit queues r and waits for its verdict on done, which the write
// function of the batch that takes r sends: done must have room for it
// (a buffer of one). Once queued, a save happens or fails as a whole with
// its batch, so Commit waits for the verdict whatever the caller's
// context says: otherwise the caller could not know whether it was
// saved. After Close, Commit queues nothing and returns false.
func Commit[R, V any](q *Queue[R], r R, done <-chan V) (v V, ok bool) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return v, false
	}
	q.queue = append(q.queue, r)
	hook := q.queued
	q.mu.Unlock()
	if hook != nil {
		hook()
	}
	select {
	case v = <-done:
		return v, true
	case <-q.turn:
	}
	// The turn to commit: write batches until this save has its verdict.
	// A committer before us may have answered it already (it answers
	// every save of a batch before it gives the turn back); otherwise it
	// is still queued, and the batches taken reach it.
	defer q.crashOnPanic()
	for {
		select {
		case v = <-done:
			q.turn <- struct{}{}
			return v, true
		default:
		}
		q.write(q.take())
	}
}

// crashOnPanic ends the process on a panic in a commit, as the panic of a
// committer goroutine of its own would. The committing save may run on a
// goroutine that recovers panics (net/http serves each request so), and
// carrying on would leave the turn taken and the batch's other saves
// without a verdict: every later save would wait forever, and callers
// with it. A restart resumes from what was committed.
func (q *Queue[R]) crashOnPanic() {
	if p := recover(); p != nil {
		go panic(fmt.Sprintf("%s: panic in a commit: %v", q.name, p))
		select {}
	}
}

// take removes up to max queued saves, oldest first.
func (q *Queue[R]) take() []R {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.queue), q.max)
	// The batch keeps the front of the array; saves queued later go
	// after it (its capacity ends at n), and the array is let go once
	// both are done with.
	batch := q.queue[:n:n]
	q.queue = q.queue[n:]
	return batch
}

// Close refuses new saves, waits for the batch being written, and writes
// the saves still queued: every queued save gets its verdict. Nothing is
// written after Close returns.
func (q *Queue[R]) Close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	<-q.turn // kept: no save commits after this
	defer q.crashOnPanic()
	for {
		batch := q.take()
		if len(batch) == 0 {
			return
		}
		q.write(batch)
	}
}

// Hold takes the turn to commit, as a committer writing a batch holds it,
// until release is called: for tests, which write batches of their own
// choosing with it held, or queue saves behind it. queued, if not nil, is
// called after each save queues from now on.
func (q *Queue[R]) Hold(queued func()) (release func()) {
	q.mu.Lock()
	q.queued = queued
	q.mu.Unlock()
	<-q.turn
	return func() { q.turn <- struct{}{} }
}
