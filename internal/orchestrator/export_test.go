package orchestrator

import "context"

// AdoptOrphans runs the engine's look for the open transfers it owns and
// drives none of, as its maintenance loop does after a claim whose answer
// was lost.
func AdoptOrphans(ctx context.Context, e *Engine) bool { return e.adoptOrphans(ctx) }
