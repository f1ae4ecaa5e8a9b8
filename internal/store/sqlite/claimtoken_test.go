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

func TestAClaimWhoseTokenCannotBeReadIsNoRefusal(t *testing.T) {
	storetest.RunAClaimWhoseTokenCannotBeReadIsNoRefusal(t, func(t *testing.T) (orchestrator.Store, func(bool)) {
		dir := t.TempDir()
		s := open(t, dir)
		db := rawDB(t, dir)
		return s, func(cut bool) {
			q := `ALTER TABLE replicas RENAME TO replicas_away`
			if !cut {
				q = `ALTER TABLE replicas_away RENAME TO replicas`
			}
			if _, err := db.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestAClaimWithNothingClaimableIsRefusedForTheToken(t *testing.T) {
	storetest.RunAClaimWithNothingClaimableIsRefusedForTheToken(t, func(t *testing.T) orchestrator.Store { return open(t, t.TempDir()) })
}
