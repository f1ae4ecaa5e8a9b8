// Package wake tells any number of waiters that something changed: the
// engine's saves that wrote events (orchestrator.Config.EventsSaved), and
// the PostgreSQL store's word of other replicas' saves, wake the API's
// open event streams of the tenant whose events they wrote, which then
// read the outbox at once rather than at their next poll.
package wake

import (
	"sync"
	"sync/atomic"
)

// Broadcast wakes every waiter at each Notify. Its zero value is ready to
// use. A waiter takes the channel of the next Notify (Listener.Next)
// before it reads what the notifications announce, and waits on it after:
// a Notify between its read and its wait has then closed the channel
// already, and nothing is missed.
//
// Notify never blocks and allocates nothing: it closes the channel that
// waiters hold, if any waiter took one since the last Notify, and leaves
// the next to the first waiter that asks. With no waiter it is one atomic
// load. Waiters share one channel, whatever their number: a Notify is one
// close, with no goroutine and no list of waiters.
type Broadcast struct {
	ch        atomic.Pointer[chan struct{}]
	listeners atomic.Int64
}

// Notify wakes every waiter that took its channel before it.
func (b *Broadcast) Notify() {
	if b.ch.Load() == nil {
		return // nobody took a channel since the last Notify
	}
	if c := b.ch.Swap(nil); c != nil {
		close(*c)
	}
}

// next returns the channel the next Notify closes.
func (b *Broadcast) next() <-chan struct{} {
	for {
		if c := b.ch.Load(); c != nil {
			return *c
		}
		c := make(chan struct{})
		if b.ch.CompareAndSwap(nil, &c) {
			return c
		}
	}
}

// Listen returns a listener of b, counted among its Listeners until it
// is closed.
func (b *Broadcast) Listen() *Listener {
	b.listeners.Add(1)
	return &Listener{b: b, close: func() { b.listeners.Add(-1) }}
}

// Listeners returns how many listeners are open: the API's open event
// streams.
func (b *Broadcast) Listeners() int {
	return int(b.listeners.Load())
}

// Listener is one waiter of a Broadcast (of its tenant's, for Tenants).
type Listener struct {
	b     *Broadcast
	close func()
	once  sync.Once
}

// Next returns a channel closed by the first Notify after this call. Call
// it before reading the state a Notify announces, and wait on its channel
// after the read.
func (l *Listener) Next() <-chan struct{} {
	return l.b.next()
}

// Close stops counting the listener; it may be called more than once.
func (l *Listener) Close() {
	l.once.Do(l.close)
}

// Tenants wakes the waiters of one tenant at each Notify: an event stream
// is scoped to its tenant, and a save that wrote another tenant's events
// has nothing for it. Waking every stream at every save cost each a read
// of the outbox that found nothing (with 100 streams of many tenants, a
// fifth of a core at 20 transfers a second). Its zero value is ready to
// use.
//
// With no listener Notify is one atomic load, as Broadcast's. With some,
// it looks its tenant up under a read lock and closes that tenant's
// channel, if a waiter of the tenant took it.
type Tenants struct {
	listeners atomic.Int64
	mu        sync.RWMutex
	by        map[string]*tenantWaiters // guarded by mu
}

// tenantWaiters are the listeners of one tenant, n of them (guarded by
// Tenants.mu); the entry is dropped with the last.
type tenantWaiters struct {
	b Broadcast
	n int
}

// Notify wakes the waiters of tenant that took their channel before it.
func (t *Tenants) Notify(tenant string) {
	if t.listeners.Load() == 0 {
		return
	}
	t.mu.RLock()
	w := t.by[tenant]
	t.mu.RUnlock()
	if w != nil {
		// Should its last listener close meanwhile, this closes a channel
		// nobody waits on.
		w.b.Notify()
	}
}

// NotifyAll wakes every waiter, whatever its tenant: what it announces
// may concern any of them (notifications from other replicas that may
// have been missed).
func (t *Tenants) NotifyAll() {
	if t.listeners.Load() == 0 {
		return
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, w := range t.by {
		w.b.Notify()
	}
}

// Listen returns a listener of tenant's notifications, counted among
// Listeners until it is closed.
func (t *Tenants) Listen(tenant string) *Listener {
	t.mu.Lock()
	w := t.by[tenant]
	if w == nil {
		if t.by == nil {
			t.by = map[string]*tenantWaiters{}
		}
		w = &tenantWaiters{}
		t.by[tenant] = w
	}
	w.n++
	t.mu.Unlock()
	// Counted once it can be found: a Notify that sees the count finds
	// the tenant's waiters.
	t.listeners.Add(1)
	return &Listener{b: &w.b, close: func() {
		t.listeners.Add(-1)
		t.mu.Lock()
		defer t.mu.Unlock()
		if w.n--; w.n == 0 {
			delete(t.by, tenant)
		}
	}}
}

// Listeners returns how many listeners are open, of every tenant: the
// API's open event streams.
func (t *Tenants) Listeners() int {
	return int(t.listeners.Load())
}
