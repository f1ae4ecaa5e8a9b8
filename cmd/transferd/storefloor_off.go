//go:build !storefloor

package main

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/orchestrator"
)

// floorStore is nil in the shipped build: transferd always opens a
// durable store. See storefloor.go.
func floorStore(context.Context, zerolog.Logger) (orchestrator.Store, func()) { return nil, nil }
