package postgres_test

import (
	"testing"

	"github.com/transferd/transferd/internal/webhooks"
	"github.com/transferd/transferd/internal/webhooks/webhookstest"
)

// TestDeliveries runs the webhook store suite the memory and SQLite stores
// pass, so that the dispatcher behaves the same on every store.
func TestDeliveries(t *testing.T) {
	webhookstest.Run(t, func(t *testing.T) webhooks.Store { return open(t) })
}
