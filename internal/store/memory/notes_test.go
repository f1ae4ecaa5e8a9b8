package memory_test

import (
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/store/storetest"
)

func TestProviderNotesKept(t *testing.T) {
	storetest.RunProviderNotesKept(t, func(*testing.T) orchestrator.Store { return memory.New() })
}
