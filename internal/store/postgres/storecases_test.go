package postgres_test

import (
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/storetest"
)

func TestSupersededOnceTheTakerStopped(t *testing.T) {
	baseURL(t)
	storetest.RunSupersededOnceTheTakerStopped(t, func(t *testing.T) orchestrator.Store { return open(t) })
}

func TestPurgeTakesTheKeyOfAKeptEndedTransfer(t *testing.T) {
	baseURL(t)
	storetest.RunPurgeTakesTheKeyOfAKeptEndedTransfer(t, func(t *testing.T) orchestrator.Store { return open(t) })
}
