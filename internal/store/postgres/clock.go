package postgres

import (
	"context"
	"time"
)

// Replicas on different hosts read different wall clocks. A heartbeat
// stamped by one replica's clock and judged expired by another's made
// skew part of the lease: a replica whose clock ran ahead of its peers'
// by more than a quarter of TRANSFERD_LEASE_TTL (what is left of a live
// replica's heartbeat just before its renewal; a host whose NTP had
// failed, a VM resumed from a pause) took over transfers their live
// owners were still driving,
// both then acting on one call, and one whose clock lagged had its own
// taken. Every other time one replica stores and another judges (a
// tombstone's end, a cleanup's patience, a consult's deadline after a
// takeover, an Idempotency-Key's age, a webhook's lease) was as wrong.
//
// So the replicas of one database tell time by its server's clock: each
// learns how far the server's clock is from its own (the offset), and
// Now is its own clock moved by it. cmd/transferd gives the engine and
// the webhook dispatcher Now as their clock, so that every time they
// store, and every time they judge a stored one by, is the server's. A
// lease is then a duration on one clock, whatever the hosts' clocks say.
// (Durations within a process still run on its monotonic clock.)
//
// The offset is measured at Open and again by every heartbeat, around one
// round trip on a connection already acquired, so that it is off by at
// most half of that exchange. It changes only when a measurement differs
// from it by more than clockSlack and that half: a clock stepped or
// drifted since, not the jitter of a round trip, which would move the
// replica's times against each other at every heartbeat.

// clockSlack is the change of offset a measurement must show, beyond its
// own uncertainty (half its round trip), to be taken: two replicas'
// reckonings of the server's clock then differ by a few tenths of a
// second at most, well within the margin a replica keeps before its
// heartbeat runs out (an eighth of TRANSFERD_LEASE_TTL: 1.9 s by default).
const clockSlack = 100 * time.Millisecond

// Now is the time on the database server's clock, as this replica
// reckons it: its own clock moved by the last offset taken. It keeps the
// monotonic reading of this replica's clock.
func (s *Store) Now() time.Time {
	return s.wall().Add(time.Duration(s.offset.Load()))
}

// measureClock reads the server's clock around one exchange and takes
// the offset it shows (see clockSlack).
func (s *Store) measureClock(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	before := s.wall()
	var server time.Time
	if err := conn.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&server); err != nil {
		return err
	}
	s.tookClock(before, server, s.wall())
	return nil
}

// tookClock takes the offset of server's clock reading made between this
// replica's readings before and after, if it moved by more than
// clockSlack beyond the reading's uncertainty (or none was taken yet).
func (s *Store) tookClock(before, server, after time.Time) {
	half := after.Sub(before) / 2
	off := server.Sub(before.Add(half))
	if cur := time.Duration(s.offset.Load()); !s.clocked.Load() || (off-cur).Abs() > clockSlack+half {
		s.offset.Store(int64(off))
		s.clocked.Store(true)
	}
}

// ClockOffset is how far the database server's clock is ahead of this
// replica's, as last measured (negative: behind).
func (s *Store) ClockOffset() time.Duration { return time.Duration(s.offset.Load()) }
