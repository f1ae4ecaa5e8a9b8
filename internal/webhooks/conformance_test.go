package webhooks_test

import (
	"testing"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
	"github.com/transferd/transferd/internal/webhooks/webhookstest"
)

// The dispatcher relies on the same Store behaviour from every store; the
// SQLite and PostgreSQL stores run the suite in their own packages.
func TestStoreMemory(t *testing.T) {
	webhookstest.Run(t, func(*testing.T) webhooks.Store { return memory.NewDeliveries(memory.New()) })
}
