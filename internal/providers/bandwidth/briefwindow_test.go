package bandwidth_test

import (
	"time"

	"github.com/transferd/transferd/internal/orchestrator"
)

// briefWindow is an engine option (options.engine) giving the engine a
// visibility window of 50 ms, and the adapter with it (as the harness
// wires it; its waits for an update to show keep their floor,
// bandwidth.MinLeaveWait), for a test whose simulator shows every action
// at once, so that what it checks holds whatever the window's length.
// With the default of 5 s such a test waited that long in real time: a
// recovery judges the caller back by a reading started a window after
// its last action, and a call not found is looked for through a window.
func briefWindow(c *orchestrator.Config) { c.VisibilityWindow = 50 * time.Millisecond }
