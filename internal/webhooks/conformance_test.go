package webhooks_test

import (
	"context"
	"testing"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/store/sqlite"
	"github.com/transferd/transferd/internal/webhooks"
	"github.com/transferd/transferd/internal/webhooks/webhookstest"
)

// The dispatcher relies on the same Store behaviour from every store;
// PostgreSQL runs the suite in its own package (it needs a database).
func TestStoreMemory(t *testing.T) {
	webhookstest.Run(t, func(*testing.T) webhooks.Store { return memory.NewDeliveries(memory.New()) })
}

func TestStoreSQLite(t *testing.T) {
	webhookstest.Run(t, func(t *testing.T) webhooks.Store {
		s, err := sqlite.Open(context.Background(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
