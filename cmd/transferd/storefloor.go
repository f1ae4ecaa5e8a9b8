//go:build storefloor

package main

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/memory"
)

// floorStore is the store of a benchmark build (go build -tags
// storefloor): everything in memory, nothing durable, so that
// transferbench -floor can measure what transferd costs beside its store.
// The shipped build has no such store (storefloor_off.go).
//
// It forgets a transfer a second after it ends (the shipped stores keep
// them for TRANSFERD_RETENTION): kept, a run's finished transfers grew the
// heap to 400 MiB, and the collector and the memory store's own work
// were a quarter of the floor's CPU at 32 at a time, which the durable
// stores do not pay.
func floorStore(ctx context.Context, log zerolog.Logger) (orchestrator.Store, func()) {
	log.Warn().Str("store", "memory").Msg("BENCHMARK BUILD (-tags storefloor): the store is in memory, nothing survives a restart")
	s := memory.NewDeliveries(memory.New())
	ctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				_, _ = s.Purge(ctx, now.Add(-time.Second), 0)
			}
		}
	}()
	return s, func() { stop(); <-done }
}
