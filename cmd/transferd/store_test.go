//go:build !storefloor

package main

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/store/sqlite"
)

// The shipped build always opens a durable store: the in-memory store of
// the benchmark build (-tags storefloor) must never reach it.
func TestTheShippedBuildOpensADurableStore(t *testing.T) {
	s, closeStore, err := openStore(context.Background(), &config{DataDir: t.TempDir()}, time.Now, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore()
	if _, ok := s.(*sqlite.Store); !ok {
		t.Fatalf("openStore opened a %T, want the SQLite store", s)
	}
}
