package postgres_test

import (
	"context"
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

func TestAClaimWhoseTokenCannotBeReadIsNoRefusal(t *testing.T) {
	baseURL(t)
	storetest.RunAClaimWhoseTokenCannotBeReadIsNoRefusal(t, func(t *testing.T) (orchestrator.Store, func(bool)) {
		s, url := openWithURL(t)
		conn := connect(t, url)
		return s, func(cut bool) {
			q := `ALTER TABLE replicas RENAME TO replicas_away`
			if !cut {
				q = `ALTER TABLE replicas_away RENAME TO replicas`
			}
			if _, err := conn.Exec(context.Background(), q); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestAClaimWithNothingClaimableIsRefusedForTheToken(t *testing.T) {
	baseURL(t)
	storetest.RunAClaimWithNothingClaimableIsRefusedForTheToken(t, func(t *testing.T) orchestrator.Store { return open(t) })
}
