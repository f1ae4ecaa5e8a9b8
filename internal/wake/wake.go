// Package wake tells any number of waiters that something changed: the
// engine's saves that wrote events (orchestrator.Config.EventsSaved) wake
// the API's open event streams, which then read the outbox at once
// rather than at their next poll.
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
	return &Listener{b: b}
}

// Listeners returns how many listeners are open: the API's open event
// streams.
func (b *Broadcast) Listeners() int {
	return int(b.listeners.Load())
}

// Listener is one waiter of a Broadcast.
type Listener struct {
	b    *Broadcast
	once sync.Once
}

// Next returns a channel closed by the first Notify after this call. Call
// it before reading the state a Notify announces, and wait on its channel
// after the read.
func (l *Listener) Next() <-chan struct{} {
	return l.b.next()
}

// Close stops counting the listener; it may be called more than once.
func (l *Listener) Close() {
	l.once.Do(func() { l.b.listeners.Add(-1) })
}
