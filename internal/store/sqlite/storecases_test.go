package sqlite_test

import (
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/storetest"
)

func TestSupersededOnceTheTakerStopped(t *testing.T) {
	storetest.RunSupersededOnceTheTakerStopped(t, func(t *testing.T) orchestrator.Store { return open(t, t.TempDir()) })
}

func TestPurgeTakesTheKeyOfAKeptEndedTransfer(t *testing.T) {
	storetest.RunPurgeTakesTheKeyOfAKeptEndedTransfer(t, func(t *testing.T) orchestrator.Store { return open(t, t.TempDir()) })
}
