package orchestrator_test

import (
	"context"

	"github.com/transferd/transferd/internal/orchestrator"
)

// stopAtOnce shuts e down with no time left to give its callers back or
// to wait for a peer's claim: the teardown of a replica whose transfers
// cannot settle by then (a process the test killed, windows of an hour on
// a clock running at real pace, a hand-over nobody will claim), whose
// shutdown otherwise waited out its deadline of ten seconds. What it
// leaves stays in the store, as a shutdown cut short leaves it; nothing
// is checked after it. Called again (a helper's own cleanup), Shutdown
// finds nothing left to wait for.
func stopAtOnce(e *orchestrator.Engine) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = e.Shutdown(ctx)
}
