package postgres_test

import (
	"testing"

	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/storetest"
)

func TestClaimCarriesTheToken(t *testing.T) {
	baseURL(t)
	storetest.RunClaimCarriesTheToken(t, func(t *testing.T) orchestrator.Store { return open(t) })
}

func TestASupersededCreateIsRefusedForItsToken(t *testing.T) {
	baseURL(t)
	storetest.RunASupersededCreateIsRefusedForItsToken(t, func(t *testing.T) orchestrator.Store { return open(t) })
}
