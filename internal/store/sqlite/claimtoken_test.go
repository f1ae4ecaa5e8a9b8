package sqlite_test

import (
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/storetest"
)

func TestClaimCarriesTheToken(t *testing.T) {
	storetest.RunClaimCarriesTheToken(t, func(t *testing.T) orchestrator.Store { return open(t, t.TempDir()) })
}

func TestASupersededCreateIsRefusedForItsToken(t *testing.T) {
	storetest.RunASupersededCreateIsRefusedForItsToken(t, func(t *testing.T) orchestrator.Store { return open(t, t.TempDir()) })
}
