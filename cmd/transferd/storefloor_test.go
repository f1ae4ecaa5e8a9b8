//go:build storefloor

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/webhooks"
)

// The benchmark build keeps its store in memory, says so in its log, and
// its store serves the webhook dispatcher as a durable one does
// (transferbench -floor; CI runs this with -tags storefloor).
func TestFloorBuildKeepsItsStoreInMemory(t *testing.T) {
	var log bytes.Buffer
	s, closeStore, err := openStore(context.Background(), &config{DataDir: t.TempDir()}, time.Now, zerolog.New(&log))
	if err != nil {
		t.Fatal(err)
	}
	defer closeStore()
	if _, ok := s.(*memory.Deliveries); !ok {
		t.Fatalf("openStore opened a %T, want the memory store", s)
	}
	if _, ok := s.(webhooks.Store); !ok {
		t.Fatalf("%T keeps no webhook deliveries: transferd would refuse to start", s)
	}
	if !strings.Contains(log.String(), "BENCHMARK BUILD") {
		t.Fatalf("the log does not say the store is in memory: %s", log.String())
	}
}
