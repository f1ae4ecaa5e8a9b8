package orchestrator

import (
	"container/heap"
	"sync"
	"time"
)

// queue is the engine's work queue of transfer ids, shaped like a
// Kubernetes controller's: an id is handed to one worker at a time; an id
// added while a worker holds it is handed out again once that worker is
// done, so no wake-up is lost and no transfer is reconciled twice at
// once; AddAfter schedules a wake-up (the earliest pending one wins).
// Wake-ups wait in a heap under one timer, set to the earliest, as
// client-go's delaying queue keeps them: a waiting transfer costs an
// entry of the heap, not a goroutine, nor a runtime timer and its
// closure (about 190 bytes more each, with 10,000 transfers parked).
type queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	ready      []string
	dirty      map[string]bool // in ready, or to be re-added when done
	processing map[string]bool
	waiting    map[string]*wakeUp
	wakeUps    wakeUpHeap
	timer      *time.Timer // fires at wakeUps[0].at; nil until the first
	closed     bool
	// now is the clock wake-ups fall due by: time.Now, the local clock
	// (a wake-up is a local wait, never judged against a stored time).
	// The queue's tests move one of their own and call wake as the timer
	// would, so that a loaded machine cannot reorder what falls due.
	now func() time.Time
}

// wakeUp is an id's pending wake-up, at its place in queue.wakeUps.
type wakeUp struct {
	id    string
	at    time.Time
	index int
}

// wakeUpHeap orders wake-ups by time, the earliest first (container/heap).
type wakeUpHeap []*wakeUp

func (h wakeUpHeap) Len() int           { return len(h) }
func (h wakeUpHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h wakeUpHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *wakeUpHeap) Push(x any) {
	w := x.(*wakeUp)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *wakeUpHeap) Pop() any {
	old := *h
	n := len(old) - 1
	w := old[n]
	old[n] = nil
	*h = old[:n]
	return w
}

func newQueue() *queue {
	q := &queue{dirty: map[string]bool{}, processing: map[string]bool{}, waiting: map[string]*wakeUp{}, now: time.Now}
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
	at := q.now().Add(d)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if w, ok := q.waiting[id]; ok {
		if !w.at.After(at) {
			return
		}
		w.at = at
		heap.Fix(&q.wakeUps, w.index)
	} else {
		w := &wakeUp{id: id, at: at}
		heap.Push(&q.wakeUps, w)
		q.waiting[id] = w
	}
	q.armLocked()
}

// armLocked sets the timer to the earliest wake-up. A firing that races a
// change only finds nothing due, or more than it was set for: wake
// takes whatever is due when it runs and sets the timer again.
func (q *queue) armLocked() {
	if len(q.wakeUps) == 0 {
		if q.timer != nil {
			q.timer.Stop()
		}
		return
	}
	d := q.wakeUps[0].at.Sub(q.now())
	if q.timer == nil {
		q.timer = time.AfterFunc(d, q.wake)
		return
	}
	q.timer.Reset(d)
}

// wake makes every wake-up that is due ready.
func (q *queue) wake() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	now := q.now()
	for len(q.wakeUps) > 0 && !q.wakeUps[0].at.After(now) {
		w := heap.Pop(&q.wakeUps).(*wakeUp)
		delete(q.waiting, w.id)
		q.addLocked(w.id)
	}
	q.armLocked()
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
	if w, ok := q.waiting[id]; ok {
		heap.Remove(&q.wakeUps, w.index)
		delete(q.waiting, id)
		q.armLocked()
	}
}

// Close wakes every Get with false and drops every pending wake-up.
func (q *queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	clear(q.waiting)
	q.wakeUps = nil
	if q.timer != nil {
		q.timer.Stop()
	}
	q.cond.Broadcast()
}
