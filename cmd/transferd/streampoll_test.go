package main

import (
	"testing"
	"time"

	"github.com/transferd/transferd/internal/api"
	"github.com/transferd/transferd/internal/orchestrator"
	"github.com/transferd/transferd/internal/store/memory"
	"github.com/transferd/transferd/internal/store/postgres"
	"github.com/transferd/transferd/internal/store/sqlite"
)

// Event streams poll PostgreSQL as often as before, for the events other
// replicas save (they wake only their own replica's streams); a store no
// other process writes (SQLite, the benchmark build's memory) is polled
// seldom, every save of this process waking the streams.
func TestEventStreamPollByStore(t *testing.T) {
	for _, c := range []struct {
		store orchestrator.Store
		want  time.Duration
	}{
		{(*postgres.Store)(nil), api.DefaultEventStreamPoll},
		{(*sqlite.Store)(nil), soleWriterStreamPoll},
		{memory.NewDeliveries(memory.New()), soleWriterStreamPoll},
	} {
		if got := eventStreamPoll(c.store); got != c.want {
			t.Errorf("%T: streams poll every %v, want %v", c.store, got, c.want)
		}
	}
	if soleWriterStreamPoll <= api.DefaultEventStreamPoll {
		t.Errorf("a store this process alone writes is polled every %v, no less often than PostgreSQL's %v", soleWriterStreamPoll, api.DefaultEventStreamPoll)
	}
}
