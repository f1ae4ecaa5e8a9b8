//go:build !storefloor

package main

import (
	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
)

// floorStore is nil in the shipped build: transferd always opens a
// durable store. See storefloor.go.
func floorStore(zerolog.Logger) orchestrator.Store { return nil }
