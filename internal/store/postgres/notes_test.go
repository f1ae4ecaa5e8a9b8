package postgres_test

import (
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/storetest"
)

func TestProviderNotesKept(t *testing.T) {
	baseURL(t)
	storetest.RunProviderNotesKept(t, func(t *testing.T) orchestrator.Store { return open(t) })
}
