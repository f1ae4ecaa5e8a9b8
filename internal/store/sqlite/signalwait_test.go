package sqlite_test

import (
	"context"
	"errors"
	"runtime"
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/sqlite"
)

// A PutSignal whose caller leaves (its context ends) while it waits for
// the writer stops waiting, and records nothing. Found by review: since
// the insert ran on a context of its own, so did the wait for the writer,
// which went on for up to 10 s after the caller had left (a long batch of
// saves, a slow disk), and then recorded the signal all the same, or ended
// for the store's own deadline.
func TestPutSignalStopsWaitingForTheWriterWhenItsCallerLeaves(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	tr := newTransfer("1000")
	if err := s.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	release, err := sqlite.HoldWriter(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	waits := sqlite.WriterWaits(s)
	callerCtx, leave := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.PutSignal(callerCtx, tr.ID, orchestrator.SignalCancel, tr.Version) }()
	// Until the PutSignal waits for the writer (or has returned).
	for sqlite.WriterWaits(s) == waits && len(done) == 0 {
		runtime.Gosched()
	}
	leave()
	err = <-done // the writer still held
	release()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("PutSignal whose caller left while it waited for the writer = %v, want its caller's context.Canceled", err)
	}
	if sig, err := s.PeekSignal(ctx, tr.ID); err != nil || sig != orchestrator.SignalNone {
		t.Errorf("PeekSignal = %q, %v; want none: the caller had left before anything was written", sig, err)
	}
}
