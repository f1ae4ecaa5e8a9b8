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
// reads the server's clock now and then, and Now is the server's time at
// the last reading taken, moved on by this replica's monotonic clock
// since. cmd/transferd gives the engine and the webhook dispatcher Now as
// their clock, so that every time they store, and every time they judge a
// stored one by, is the server's. A lease is then a duration on one
// clock, whatever the hosts' clocks say. (Durations within a process
// still run on its monotonic clock.)
//
// Now counts from a reading on the monotonic clock, not from the host's
// wall clock moved by an offset: a step of the host's clock (NTP
// correcting a clock far off, an operator) moved the offset's Now with it
// until the next heartbeat measured it again. Stepped back by more than
// a lease's margin, the first heartbeat after the step was stamped to
// expire that much early, and another replica could claim this one's
// live transfers; stepped forward, this replica judged others' live
// heartbeats expired and could claim theirs.
//
// The server's clock is read at Open and again by every heartbeat, around
// one round trip on a connection already acquired, so that a reading is
// off by at most half of that exchange. A reading is taken only when it
// differs from what Now reckons by more than clockSlack and that half:
// the server's clock stepped, or the two clocks drifted apart, not the
// jitter of a round trip, which would move the replica's times against
// each other at every heartbeat.

// clockSlack is the difference between a reading of the server's clock
// and Now that a reading must show, beyond its own uncertainty (half its
// round trip), to be taken: two replicas' reckonings of the server's
// clock then differ by a few tenths of a second at most, well within the
// margin a replica keeps before its heartbeat runs out (an eighth of
// TRANSFERD_LEASE_TTL: 1.9 s by default).
const clockSlack = 100 * time.Millisecond

// reading is a reading of the server's clock that Now counts from: at is
// the process's clock (time.Now, with its monotonic reading) in the
// middle of the reading's round trip, server the server's time then,
// with at's monotonic reading moved by as much; offset is how far the
// server's clock was ahead of this replica's host clock (wall) then.
type reading struct {
	at, server time.Time
	offset     time.Duration
}

// Now is the time on the database server's clock, as this replica
// reckons it: the last reading taken, moved on by the process's
// monotonic clock since. It has a monotonic reading, so that the times
// the engine takes compare by it within the process.
func (s *Store) Now() time.Time {
	r := s.reading.Load()
	if r == nil {
		return s.wall()
	}
	return r.server.Add(time.Since(r.at))
}

// measureClock reads the server's clock around one exchange and takes
// the reading if it shows Now astray (see clockSlack).
func (s *Store) measureClock(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	before := time.Now()
	var server time.Time
	if err := conn.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&server); err != nil {
		return err
	}
	s.tookClock(before, server, time.Now(), s.hostSkew())
	return nil
}

// hostSkew is how far this replica's host clock (wall) is from the
// process's: nothing in production; a test's or the storm's skew, or
// step, otherwise. It only tells ClockOffset.
func (s *Store) hostSkew() time.Duration { return s.wall().Sub(time.Now()) }

// tookClock takes server, a reading of the server's clock made between
// the process's readings before and after, if it differs from what Now
// reckons for that moment by more than clockSlack beyond the reading's
// uncertainty (or none was taken yet); skew is the host clock's
// (hostSkew).
func (s *Store) tookClock(before, server, after time.Time, skew time.Duration) {
	half := after.Sub(before) / 2
	mid := before.Add(half)
	r := s.reading.Load()
	if r != nil && server.Sub(r.server.Add(mid.Sub(r.at))).Abs() <= clockSlack+half {
		return
	}
	s.reading.Store(&reading{at: mid, server: mid.Add(server.Sub(mid)), offset: server.Sub(mid) - skew})
}

// ClockOffset is how far the database server's clock was ahead of this
// replica's host clock at the last reading taken (negative: behind).
func (s *Store) ClockOffset() time.Duration {
	if r := s.reading.Load(); r != nil {
		return r.offset
	}
	return 0
}
