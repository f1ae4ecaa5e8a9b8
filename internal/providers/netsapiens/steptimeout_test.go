package netsapiens_test

import (
	"sync"
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// aheadClock is the engine's and the adapter's clock in a test of a step
// the engine tries again until its step timeout has passed: real time,
// moved ahead by the test, so that the timeout passes without being
// waited out.
type aheadClock struct {
	mu    sync.Mutex
	ahead time.Duration
}

func (c *aheadClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.ahead)
}

// lapseAfter returns a CrashPoint that moves c a step timeout ahead each
// time a request of step has come back (its ":effect" point, before the
// engine judges the failure): the engine's patience (from the first
// failure) has run out at the second, whatever the machine's speed, and
// the step's own requests, the adapter's retries included, were all
// made before the clock moved.
func (c *aheadClock) lapseAfter(step string, stepTimeout time.Duration) func(*orchestrator.Transfer, string) {
	return func(_ *orchestrator.Transfer, point string) {
		if point != step+":effect" {
			return
		}
		c.mu.Lock()
		c.ahead += stepTimeout
		c.mu.Unlock()
	}
}
