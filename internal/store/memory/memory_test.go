package memory_test

import (
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) orchestrator.Store { return memory.New() })
}

func BenchmarkUpdate(b *testing.B) { storetest.BenchUpdate(b, memory.New()) }
func BenchmarkCreate(b *testing.B) { storetest.BenchCreate(b, memory.New()) }
func BenchmarkClaimIdle(b *testing.B) {
	storetest.BenchClaimIdle(b, memory.New(), 1000)
}
