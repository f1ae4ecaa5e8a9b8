package orchestrator

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// clockedQueue is a queue whose wake-ups fall due by a clock the test
// moves (advance), never by real time: advance makes due what its time
// has come for, as the queue's timer would (its real firings, set by the
// test's clock, find nothing due that advance did not make so).
func clockedQueue() (q *queue, advance func(time.Duration)) {
	var mu sync.Mutex
	now := time.Now()
	q = newQueue()
	q.now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	return q, func(d time.Duration) {
		mu.Lock()
		now = now.Add(d)
		mu.Unlock()
		q.wake()
	}
}

// wantNoneReady fails unless no id is ready: nothing fell due early.
func wantNoneReady(t *testing.T, q *queue, when string) {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.ready) != 0 {
		t.Fatalf("%s: %v ready, want none", when, q.ready)
	}
}

// get takes the next ready id and releases it at once.
func get(t *testing.T, q *queue) string {
	t.Helper()
	id, ok := q.Get()
	if !ok {
		t.Fatal("the queue closed")
	}
	q.Done(id)
	return id
}

// Wake-ups come out in the order they are due, whatever the order they
// were asked for in, each when it is due, and all of them: one timer
// serves the whole heap.
func TestQueueWakeUpsInTheirOrder(t *testing.T) {
	q, advance := clockedQueue()
	defer q.Close()
	delays := map[string]time.Duration{"c": 30 * time.Millisecond, "a": time.Millisecond, "d": 40 * time.Millisecond, "b": 20 * time.Millisecond}
	for _, id := range []string{"c", "a", "d", "b"} {
		q.AddAfter(id, delays[id])
	}
	var got []string
	var at time.Duration
	for _, due := range []time.Duration{time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond, 40 * time.Millisecond} {
		advance(due - time.Microsecond - at)
		wantNoneReady(t, q, fmt.Sprintf("a microsecond before %v", due))
		advance(time.Microsecond)
		at = due
		got = append(got, get(t, q))
	}
	if want := []string{"a", "b", "c", "d"}; !slices.Equal(got, want) {
		t.Fatalf("woke %v, want %v", got, want)
	}
	if len(q.waiting) != 0 || len(q.wakeUps) != 0 {
		t.Fatalf("%d waiting, %d in the heap after every wake-up", len(q.waiting), len(q.wakeUps))
	}
}

// The earliest wake-up asked for an id wins: a later one does not put it
// off, an earlier one brings it forward.
func TestQueueEarliestWakeUpWins(t *testing.T) {
	q, advance := clockedQueue()
	defer q.Close()
	q.AddAfter("a", time.Hour)
	q.AddAfter("a", 2*time.Hour)
	if at := q.waiting["a"].at; at.Sub(q.now()) > time.Hour {
		t.Fatalf("a later wake-up put the earlier one off, to %v", at)
	}
	q.AddAfter("x", 30*time.Millisecond)
	q.AddAfter("a", time.Millisecond)
	advance(time.Millisecond)
	if got := get(t, q); got != "a" {
		t.Fatalf("woke %s first, want a, brought forward", got)
	}
	wantNoneReady(t, q, "once a woke")
	advance(29 * time.Millisecond)
	if got := get(t, q); got != "x" {
		t.Fatalf("woke %s, want x", got)
	}
}

// A forgotten wake-up leaves the heap, and the timer serves the others.
func TestQueueForget(t *testing.T) {
	q, advance := clockedQueue()
	defer q.Close()
	q.AddAfter("gone", time.Millisecond)
	q.AddAfter("kept", 20*time.Millisecond)
	q.AddAfter("far", time.Hour)
	q.Forget("gone")
	if _, ok := q.waiting["gone"]; ok || len(q.wakeUps) != 2 {
		t.Fatalf("forgotten wake-up still pending: %d in the heap", len(q.wakeUps))
	}
	advance(20 * time.Millisecond)
	if got := get(t, q); got != "kept" {
		t.Fatalf("woke %s, want kept", got)
	}
	q.Forget("far")
	if len(q.waiting) != 0 || len(q.wakeUps) != 0 {
		t.Fatalf("%d waiting, %d in the heap", len(q.waiting), len(q.wakeUps))
	}
}

// A wake-up due for an id a worker holds makes it ready again once the
// worker is done, as Add does; a closed queue takes none.
func TestQueueWakeUpWhileProcessing(t *testing.T) {
	q := newQueue()
	q.Add("a")
	id, _ := q.Get()
	q.AddAfter("a", time.Millisecond)
	q.Add("b")
	if got := get(t, q); got != "b" {
		t.Fatalf("got %s, want b", got)
	}
	// a's wake-up has come or will: a is handed out again once Done,
	// and not before.
	q.Done(id)
	if got := get(t, q); got != "a" {
		t.Fatalf("got %s, want a again", got)
	}
	q.Close()
	q.AddAfter("c", time.Millisecond)
	if len(q.waiting) != 0 {
		t.Fatal("a closed queue took a wake-up")
	}
	if _, ok := q.Get(); ok {
		t.Fatal("Get on a closed queue handed out an id")
	}
}
