package memory_test

import (
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/store/storetest"
)

func TestSupersededOnceTheTakerStopped(t *testing.T) {
	storetest.RunSupersededOnceTheTakerStopped(t, func(*testing.T) orchestrator.Store { return memory.New() })
}

func TestPurgeTakesTheKeyOfAKeptEndedTransfer(t *testing.T) {
	storetest.RunPurgeTakesTheKeyOfAKeptEndedTransfer(t, func(*testing.T) orchestrator.Store { return memory.New() })
}
