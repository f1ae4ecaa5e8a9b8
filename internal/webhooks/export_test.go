package webhooks

import (
	"context"
	"time"
)

// OnFinish makes d call f after each attempt it recorded, so that tests
// wait for results instead of polling the store.
func OnFinish(d *Dispatcher, f func(Delivery)) { d.finished = f }

// OnScan makes d call f after each scan of Run.
func OnScan(d *Dispatcher, f func()) { d.scanned = f }

// OnAttemptEnd makes d call f after each attempt (of Run or Drain) has
// ended and given its slot back, before Run or Drain hears of it.
func OnAttemptEnd(d *Dispatcher, f func()) { d.gaveBack = f }

// SetClock makes d read the time from now.
func SetClock(d *Dispatcher, now func() time.Time) { d.now = now }

// SetMonoClock makes d time its EnqueueGap, and how long a claim's
// attempt may be sent, by now.
func SetMonoClock(d *Dispatcher, now func() time.Time) { d.mono = now }

// Gauge runs what a scan of Run does to the backlog metrics.
func Gauge(ctx context.Context, d *Dispatcher) { d.gauge(ctx) }

// EnqueueAll copies every endpoint's new outbox events into deliveries,
// as each scan of Run does first.
func EnqueueAll(ctx context.Context, d *Dispatcher) error {
	d.enqueueAll(ctx)
	return nil
}

// Repair runs what a scan of Run does first to the deliveries an older
// replica left unready.
func Repair(ctx context.Context, d *Dispatcher) { d.repair(ctx) }

// SetBodyDrain makes d read what is left of an answer's body after its
// status for at most wait before it closes the connection.
func SetBodyDrain(d *Dispatcher, wait time.Duration) { d.bodyDrain = wait }

// OnBodyDrained makes d call f after the body of each answer was read
// and closed.
func OnBodyDrained(d *Dispatcher, f func()) { d.drained = f }
