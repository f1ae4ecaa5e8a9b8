//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd || solaris

package sqlite_test

import (
	"context"
	"testing"
	"time"

	"github.com/transferd/transferd/internal/store/sqlite"
)

// A process that opens the store holds the data directory's lock, so
// every process that wrote a heartbeat before it has ended: its
// transfers are claimable at once, by a process under another name (the
// default name is the host's, which a container's restart changes), and
// whatever the host's clock says. Found by review: the earlier process's
// heartbeat counted as live until it ran out by the host's clock, so that
// its transfers, callers perhaps on hold, waited out the lease after the
// restart, and far longer when the clock had been stepped back in between
// (NTP correcting it, a VM restored).
func TestOpenEndsTheHeartbeatsOfEarlierProcesses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	at := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	s, err := sqlite.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Heartbeat(ctx, "old-host", "token-old", at, 15*time.Second, true); err != nil {
		t.Fatal(err)
	}
	tr := newTransfer("1000")
	tr.Owner = "old-host"
	if err := s.Create(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // the process ends, its heartbeat live
		t.Fatal(err)
	}

	s = open(t, dir)
	// The host's clock was stepped back an hour meanwhile.
	now := at.Add(-time.Hour)
	if n, err := s.Peers(ctx, "new-host", now); err != nil || n != 0 {
		t.Errorf("Peers after the earlier process ended = %d, %v; want 0", n, err)
	}
	claimed, err := s.Claim(ctx, "new-host", "", now, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 1 || claimed[0].ID != tr.ID {
		t.Fatalf("Claim by the next process = %d transfers, want the earlier process's %s", len(claimed), tr.ID)
	}
	// The earlier process's name, should it come back, is a new heartbeat.
	if expired, err := s.Heartbeat(ctx, "old-host", "token-again", now, 15*time.Second, false); err != nil || !expired {
		t.Errorf("Heartbeat under the earlier process's name = %v, %v; want expired, no error", expired, err)
	}
}
