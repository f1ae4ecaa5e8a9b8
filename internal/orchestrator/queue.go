package orchestrator

import (
	"sync"
	"time"
)

// queue is the engine's work queue of transfer ids, shaped like a
// Kubernetes controller's: an id is handed to one worker at a time; an id
// added while a worker holds it is handed out again once that worker is
// done, so no wake-up is lost and no transfer is reconciled twice at
// once; AddAfter schedules a wake-up with a timer (the earliest pending
// one wins), so a waiting transfer costs a timer, not a goroutine.
type queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	ready      []string
	dirty      map[string]bool // in ready, or to be re-added when done
	processing map[string]bool
	timers     map[string]*queueTimer
	closed     bool
}

type queueTimer struct {
	t  *time.Timer
	at time.Time
}

func newQueue() *queue {
	q := &queue{dirty: map[string]bool{}, processing: map[string]bool{}, timers: map[string]*queueTimer{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add makes id ready now.
func (q *queue) Add(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(id)
}

func (q *queue) addLocked(id string) {
	if q.closed || q.dirty[id] {
		return
	}
	q.dirty[id] = true
	if q.processing[id] {
		return // Done re-adds it
	}
	q.ready = append(q.ready, id)
	q.cond.Signal()
}

// AddAfter makes id ready after d, unless an earlier wake-up is pending.
func (q *queue) AddAfter(id string, d time.Duration) {
	if d <= 0 {
		q.Add(id)
		return
	}
	at := time.Now().Add(d)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if old, ok := q.timers[id]; ok {
		if !old.at.After(at) {
			return
		}
		old.t.Stop()
	}
	qt := &queueTimer{at: at}
	qt.t = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.timers[id] == qt {
			delete(q.timers, id)
		}
		q.addLocked(id)
	})
	q.timers[id] = qt
}

// Get blocks until an id is ready and hands it to the caller, who must
// call Done with it. It returns false once the queue is closed.
func (q *queue) Get() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.ready) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", false
	}
	id := q.ready[0]
	q.ready[0] = ""
	q.ready = q.ready[1:]
	delete(q.dirty, id)
	q.processing[id] = true
	return id, true
}

// Done releases id; if it was added meanwhile it is ready again.
func (q *queue) Done(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, id)
	if q.dirty[id] && !q.closed {
		q.ready = append(q.ready, id)
		q.cond.Signal()
	}
}

// Forget drops id's pending wake-up (the transfer left this replica).
func (q *queue) Forget(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if qt, ok := q.timers[id]; ok {
		qt.t.Stop()
		delete(q.timers, id)
	}
}

// Close wakes every Get with false and stops every timer.
func (q *queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for id, qt := range q.timers {
		qt.t.Stop()
		delete(q.timers, id)
	}
	q.cond.Broadcast()
}
