package memory_test

import (
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/store/storetest"
)

func TestClaimCarriesTheToken(t *testing.T) {
	storetest.RunClaimCarriesTheToken(t, func(*testing.T) orchestrator.Store { return memory.New() })
}

func TestASupersededCreateIsRefusedForItsToken(t *testing.T) {
	storetest.RunASupersededCreateIsRefusedForItsToken(t, func(*testing.T) orchestrator.Store { return memory.New() })
}

func TestAClaimWithNothingClaimableIsRefusedForTheToken(t *testing.T) {
	storetest.RunAClaimWithNothingClaimableIsRefusedForTheToken(t, func(*testing.T) orchestrator.Store { return memory.New() })
}
