//go:build storefloor

package main

import (
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/memory"
)

// floorStore is the store of a benchmark build (go build -tags
// storefloor): everything in memory, nothing durable, so that
// transferbench -floor can measure what transferd costs beside its store.
// The shipped build has no such store (storefloor_off.go).
func floorStore(log zerolog.Logger) orchestrator.Store {
	log.Warn().Str("store", "memory").Msg("BENCHMARK BUILD (-tags storefloor): the store is in memory, nothing survives a restart")
	return memory.NewDeliveries(memory.New())
}
