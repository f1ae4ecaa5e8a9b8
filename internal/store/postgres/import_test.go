package postgres_test

import (
	"testing"

	"github.com/transferd/transferd/internal/store/storetest"
)

func TestImport(t *testing.T) { storetest.RunImport(t, open(t)) }
